"""The recipient's local time: which zone a subscriber lives in, and how we write a time to them.

The account's own time zone wins when an operator set one; otherwise the zone comes from the
phone number's area code (libphonenumber's geocoding). Times are written the way people text them:
`2:05pm`, `2:05pm tomorrow`, `Nov 28 2:05pm`.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezones

FALLBACK_ZONE = "America/New_York"


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
    One parse for both, remembered: the scan asks this for every low account."""
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
    if parsed.country_code == 1:
        place = geocoder.description_for_number(parsed, "en")
        if ", " in place:
            code = place.rsplit(", ", 1)[1]
            state = code if len(code) == 2 else None
        else:
            state = _STATE_CODES.get(place)
    return state, zones


_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
}


def clock_time(moment: datetime, zone: str, language: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    if language == "es":
        return f"{local.hour}:{local.minute:02d}"
    hour = local.hour % 12 or 12
    return f"{hour}:{local.minute:02d}{'am' if local.hour < 12 else 'pm'}"


def when(moment: datetime, now: datetime, zone: str, language: str) -> str:
    """`moment` relative to `now` in the recipient's zone: a time today, tomorrow, or a date."""
    tz = ZoneInfo(zone)
    day = moment.astimezone(tz).date()
    today = now.astimezone(tz).date()
    time = clock_time(moment, zone, language)
    if day == today:
        return time
    if (day - today).days == 1:
        return f"{time} tomorrow" if language == "en" else f"mañana {time}"
    month = _MONTHS[language][day.month - 1]
    return f"{month} {day.day} {time}" if language == "en" else f"{day.day} {month} {time}"
