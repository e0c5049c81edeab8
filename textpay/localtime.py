"""The recipient's local time: which zone a subscriber lives in, and how we write a time to them.

The account's own time zone wins when an operator set one; otherwise the zone comes from the
phone number's area code (libphonenumber's geocoding). Times are written the way people text them:
`2:05pm`, `2:05pm tomorrow`, `Nov 28 2:05pm`.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

FALLBACK_ZONE = "America/New_York"


def zone_names_for_phone(e164: str) -> tuple[str, ...]:
    """Every IANA zone the number's area code spans (several for some area codes)."""
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ()
    names = phone_timezones.time_zones_for_number(parsed)
    return tuple(n for n in names if n != phone_timezones.UNKNOWN_TIMEZONE)


def display_zone(account_timezone: str | None, e164: str) -> str:
    """One zone to write times in: the account's, else the number's first, else a default."""
    if account_timezone:
        return account_timezone
    zones = zone_names_for_phone(e164)
    return zones[0] if zones else FALLBACK_ZONE


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
