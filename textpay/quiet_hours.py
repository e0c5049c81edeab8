"""Quiet hours: when TextPay may start a conversation with a number, in the recipient's local time.

Owns the sending window (default 08:00-21:00), the stricter windows some states' telemarketing
laws set (FL, OK, MD, MS, NJ 08:00-20:00; CT 09:00-20:00; operators can change the table), which
zones a number may be in, and the next allowed moment. When the account's time zone is unknown
and the number's area code spans several zones, a moment is allowed only if it is allowed in all
of them: the most restrictive reading wins. Replies to a subscriber's own text are never held.

A window can leave no time at all: a state's law can shut it (20:00-21:00 in Florida, whose law
stops at 20:00), and so can the zones a number may be in (09:00-17:00 local in every zone from
Guam to American Samoa is never true at once). `open_minutes` measures that, so that such a
window is refused when an operator sets it instead of failing when a text is due.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from phonenumbers import timezone as phone_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

from textpay.localtime import place_of

_DAY_MINUTES = 24 * 60

# State windows stricter than the default, by USPS code (state mini-TCPA laws).
DEFAULT_STATE_WINDOWS: dict[str, tuple[str, str]] = {
    "FL": ("08:00", "20:00"),
    "OK": ("08:00", "20:00"),
    "MD": ("08:00", "20:00"),
    "MS": ("08:00", "20:00"),
    "NJ": ("08:00", "20:00"),
    "CT": ("09:00", "20:00"),
}


class EmptyWindow(ValueError):
    """No moment is inside the sending window in every zone the number may be in."""


def state_of(e164: str) -> str | None:
    """The US state of a number's area code (`+13055550100` → `FL`), when known."""
    return place_of(e164)[0]


def window_for(
    start: str, end: str, state: str | None, state_windows: dict[str, tuple[str, str]]
) -> tuple[time, time]:
    """The operator's window narrowed by the recipient's state law, if any."""
    window_start, window_end = _clock(start), _clock(end)
    if state and state in state_windows:
        law_start, law_end = state_windows[state]
        window_start = max(window_start, _clock(law_start))
        window_end = min(window_end, _clock(law_end))
    return window_start, window_end


def allowed(moment: datetime, zones: tuple[str, ...], window: tuple[time, time]) -> bool:
    start, end = window
    for zone in zones:
        local = moment.astimezone(ZoneInfo(zone)).time()
        if not start <= local < end:
            return False
    return True


def next_allowed(now: datetime, zones: tuple[str, ...], window: tuple[time, time]) -> datetime:
    """The earliest moment at or after `now` that is inside the window in every zone."""
    start, end = window
    if start >= end:
        raise EmptyWindow("the sending window is empty")
    candidate = now
    for _ in range(16):  # zones differ by hours, windows last hours: this settles in a few steps
        if allowed(candidate, zones, window):
            return candidate
        for zone in zones:
            tz = ZoneInfo(zone)
            local = candidate.astimezone(tz)
            if not start <= local.time() < end:
                day = local.date() if local.time() < start else local.date() + timedelta(days=1)
                opening = datetime.combine(day, start, tzinfo=tz)
                candidate = max(candidate, opening.astimezone(candidate.tzinfo))
    raise EmptyWindow(f"no moment is allowed in all of {zones} within {window}")


def open_minutes(window: tuple[time, time], zones: tuple[str, ...], *, year: int) -> int:
    """The fewest minutes a day that `window` (local time) is open in all of `zones` at once,
    over `year` (offsets move with daylight saving time); zero or less means never on some
    days. A window of L minutes is open in all zones for L minus the shortest arc of the
    24-hour clock holding every zone's UTC offset."""
    start, end = window
    length = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    return length - _widest_spread(zones, year) if length > 0 else length


@lru_cache(maxsize=256)
def _widest_spread(zones: tuple[str, ...], year: int) -> int:
    """The largest, over the days of `year`, of the shortest arc of the clock (in minutes)
    that holds all of `zones`' UTC offsets on that day."""
    if len(zones) < 2:
        return 0
    infos = [ZoneInfo(zone) for zone in zones]
    day = datetime(year, 1, 1, 12, tzinfo=UTC)
    seen: set[tuple[int, ...]] = set()
    while day.year == year:
        offsets = []
        for info in infos:
            offset = day.astimezone(info).utcoffset()
            assert offset is not None
            offsets.append(int(offset.total_seconds() // 60) % _DAY_MINUTES)
        seen.add(tuple(sorted(set(offsets))))
        day += timedelta(days=1)
    return max(_spread(points) for points in seen)


def _spread(points: tuple[int, ...]) -> int:
    """The shortest arc of the clock holding all `points` (sorted minutes of the day): the
    whole clock less the widest gap between neighbours."""
    gaps = [b - a for a, b in pairwise(points)]
    gaps.append(points[0] + _DAY_MINUTES - points[-1])
    return _DAY_MINUTES - max(gaps)


@lru_cache(maxsize=1)
def multi_zone_places() -> tuple[tuple[str | None, tuple[str, ...]], ...]:
    """Every (state, zones) a North American number with an area code can have when its area
    code spans several zones (Alaska's 907, Idaho, Arizona's Navajo Nation, ...)."""
    places: set[tuple[str | None, tuple[str, ...]]] = set()
    for prefix, zones in TIMEZONE_DATA.items():
        if not prefix.startswith("1") or len(prefix) < 4 or len(zones) < 2:
            continue
        # Any number under the prefix tells the state (states own whole area codes); 5s make
        # a valid exchange whatever length the prefix is.
        number = "+" + prefix + "5" * (11 - len(prefix))
        state, _ = place_of(number)
        places.add((state, tuple(z for z in zones if z != phone_timezones.UNKNOWN_TIMEZONE)))
    # US states first, by code; then the places outside the US (no state), by their zones.
    return tuple(sorted(places, key=lambda place: (place[0] is None, place[0] or "", place[1])))


def country_zones(country_code: int = 1) -> tuple[str, ...]:
    """Every zone a country's numbers without an area code (toll-free, non-geographic) may be
    in: the whole North American Numbering Plan, Guam to American Samoa, by default."""
    return tuple(
        z for z in TIMEZONE_DATA.get(str(country_code), ()) if z != phone_timezones.UNKNOWN_TIMEZONE
    )


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
