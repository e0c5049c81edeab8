"""Quiet hours: when TextPay may start a conversation with a number, in the recipient's local time.

Owns the sending window (default 08:00-21:00), the stricter windows some states' telemarketing
laws set (FL, OK, MD, MS, NJ 08:00-20:00; CT 09:00-20:00; operators can change the table), which
zones a number may be in, and the next allowed moment. When the account's time zone is unknown
and the number's area code spans several zones, a moment is allowed only if it is allowed in all
of them: the most restrictive reading wins. Replies to a subscriber's own text are never held.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from textpay.localtime import place_of

# State windows stricter than the default, by USPS code (state mini-TCPA laws).
DEFAULT_STATE_WINDOWS: dict[str, tuple[str, str]] = {
    "FL": ("08:00", "20:00"),
    "OK": ("08:00", "20:00"),
    "MD": ("08:00", "20:00"),
    "MS": ("08:00", "20:00"),
    "NJ": ("08:00", "20:00"),
    "CT": ("09:00", "20:00"),
}


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
        raise ValueError("the sending window is empty")
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
    raise ValueError(f"no moment is allowed in all of {zones} within {window}")


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
