"""The recipient's local time: which zones a number may be in, and how we write a time to them.

The zones come from the phone number's area code (libphonenumber's geocoding); which of them a
text or the sending window uses is `textpay.policy`'s decision. Times are written the way people
text them: `2:05pm`, `2:05pm tomorrow`, `Nov 28 2:05pm`, and with the zone named (`8:00am CT`)
when the recipient's zone is only a guess.

libphonenumber's geocoder holds the names of places in every language (some 40 MB of Python:
half a second and 100 MB of memory to import), so it is imported the first time a number's state
is asked for: at enrolment or a change of number, never for an inbound text (accounts store
their number's place).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

FALLBACK_ZONE = "America/New_York"

# When a number may be in several zones and nothing says which, a text names the zone it tells
# times in: the one most such numbers are in (most of Alaska's 907 is on Anchorage time, not
# Adak's; most of Arizona keeps Phoenix time, most of Idaho Boise's). Zones not listed come after,
# alphabetically; a state whose people mostly live in a zone listed later says so.
_LIKELIEST_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/North_Dakota/Center",
    "America/Phoenix",
    "America/Boise",
    "America/Los_Angeles",
    "America/Denver",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
    "America/Halifax",
)
_LIKELIEST_ZONE_OF_STATE = {"NV": "America/Los_Angeles"}  # Reno, not West Wendover

# Every zone of a country, as libphonenumber gives them for its numbers that have no area
# (toll-free, non-geographic): such a list says nothing about where the subscriber is.
_COUNTRY_WIDE = frozenset(
    zones
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    if len(
        zones := tuple(
            z for z in TIMEZONE_DATA.get(str(code), ()) if z != phone_timezones.UNKNOWN_TIMEZONE
        )
    )
    > 1
)

# North American zone abbreviations without the standard/daylight letter, as people write
# them in a text: EST and EDT are both "ET".
_GENERIC_ABBREVIATION = re.compile(r"^(E|C|M|P|AK|H|A|N)[SD]T$")


_STATE_CODES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC",
    "Washington D.C.": "DC", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY",
    "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI",
    "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE",
    "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH",
    "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI",
    "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX",
    "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Puerto Rico": "PR",
}  # fmt: skip


@lru_cache(maxsize=65_536)
def place_of(e164: str) -> tuple[str | None, tuple[str, ...]]:
    """Where a number's area code is: its US state (if any) and every IANA zone it spans.
    One parse for both, remembered: the scan asks this for every low account.

    A North American number whose zones are every zone of the plan (toll-free, or no area code
    libphonenumber knows) has no state, and the geocoder is not asked: it would only name the
    country (`tests/unit/test_quiet_hours.py` checks this against its data). Accounts store
    their number's place, except such numbers' zones, which `policy.stored_place` asks again.
    """
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None, ()
    zones = tuple(
        name
        for name in phone_timezones.time_zones_for_number(parsed)
        if name != phone_timezones.UNKNOWN_TIMEZONE
    )
    state = None
    if parsed.country_code == 1 and not country_wide(zones):
        state = geocoded_state(parsed)
    return state, zones


def geocoded_state(parsed: phonenumbers.PhoneNumber) -> str | None:
    """The US state (two letters) libphonenumber's geocoder names for a North American number."""
    from phonenumbers import geocoder  # noqa: PLC0415  (see the module's docstring)

    place = geocoder.description_for_number(parsed, "en")
    if ", " in place:
        code = place.rsplit(", ", 1)[1]
        return code if len(code) == 2 else None
    return _STATE_CODES.get(place)


def country_wide(zones: tuple[str, ...]) -> bool:
    """Whether `zones` is every zone of a country: the number has no usable area code."""
    return zones in _COUNTRY_WIDE


def zones_column(zones: tuple[str, ...]) -> str:
    """How an account stores its number's zones: comma-separated, or empty for a number that
    may be anywhere in its country (toll-free: 42 names would not fit the column, and
    `policy.stored_place` works them out again from the number)."""
    return "" if country_wide(zones) else ",".join(zones)


def likeliest_zone(zones: tuple[str, ...], state: str | None = None) -> str:
    """The zone to tell times in when a number (in `state`, if known) may be in any of
    `zones` (see above)."""
    preferred = _LIKELIEST_ZONE_OF_STATE.get(state or "")
    if preferred in zones:
        return str(preferred)
    for zone in _LIKELIEST_ZONES:
        if zone in zones:
            return zone
    return min(zones) if zones else FALLBACK_ZONE


def zone_abbreviation(moment: datetime, zone: str) -> str:
    """How a text names `zone` at `moment`: `ET`, `CT`, `MT`, `PT`, `AKT`, `HT`; else the
    zone's own abbreviation (`GMT`), or its offset (`UTC-03`) where it has none."""
    name = moment.astimezone(ZoneInfo(zone)).tzname() or zone
    generic = _GENERIC_ABBREVIATION.match(name)
    if generic:
        return f"{generic.group(1)}T"
    return f"UTC{name}" if name[:1] in "+-" else name


_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
}


def clock_time(moment: datetime, zone: str, language: str, *, name_zone: bool = False) -> str:
    """`2:05pm` (`14:05` in Spanish), followed by the zone (`2:05pm CT`) when `name_zone`."""
    local = moment.astimezone(ZoneInfo(zone))
    if language == "es":
        written = f"{local.hour}:{local.minute:02d}"
    else:
        hour = local.hour % 12 or 12
        written = f"{hour}:{local.minute:02d}{'am' if local.hour < 12 else 'pm'}"
    return f"{written} {zone_abbreviation(moment, zone)}" if name_zone else written


def when(
    moment: datetime, now: datetime, zone: str, language: str, *, name_zone: bool = False
) -> str:
    """`moment` relative to `now` in the recipient's zone: a time today, tomorrow, or a date;
    with the zone named (`8:00am CT tomorrow`) when `name_zone`."""
    tz = ZoneInfo(zone)
    day = moment.astimezone(tz).date()
    today = now.astimezone(tz).date()
    time = clock_time(moment, zone, language, name_zone=name_zone)
    if day == today:
        return time
    if (day - today).days == 1:
        return f"{time} tomorrow" if language == "en" else f"mañana {time}"
    month = _MONTHS[language][day.month - 1]
    return f"{month} {day.day} {time}" if language == "en" else f"{day.day} {month} {time}"
