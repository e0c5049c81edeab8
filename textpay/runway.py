"""Runway: how many days of calls an account's balance buys at the family's usual pace.

Pure: no database, no clock. Owns the definition of "usual pace" and of the estimate.

**Usual pace.** The call charges (usage entries) of the last `WINDOW` (30 days) before the
moment asked about, summed, over the time they were made in: the whole window for an account
that was charged before it, else from its oldest charge to that moment, but never less than
`SHORTEST_SPAN` (7 days). So

- steady use paces at what it costs a day;
- a burst (one evening of long calls) counts in full but is spread over the whole observed span,
  so it shortens the runway without making it a matter of hours;
- two weeks without calls count as two weeks at no cost: the pace falls, the runway grows;
- a new account's first days are spread over at least a week: a first day of calls is not
  taken as what every day will cost;
- with fewer than `MIN_ENTRIES` (5) charges in the window there is no estimate at all.

The pace is a fraction, `cents` over `hours`, kept as two integers (no floats, no rounding):
`days_left` is `balance * hours // (cents * 24)`, whole days, rounded down. An account stores
the fraction worked out at its latest usage posting (`Account.usage_pace_*`), and until when
it holds (`until`: the moment the window would hold fewer than 5 charges if no other came),
so the scan and the texts read three columns instead of the account's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(days=30)
MIN_ENTRIES = 5
SHORTEST_SPAN = timedelta(days=7)
HOUR = timedelta(hours=1)
# The largest runway a text names as a number of days; beyond it, "over a year".
MOST_DAYS_SAID = 365


@dataclass(frozen=True)
class Pace:
    """Usual pace: `cents` of calls per `hours` hours, valid until `until` (see the module)."""

    cents: int
    hours: int
    until: datetime


def pace(entries: Iterable[tuple[datetime, int]], *, now: datetime) -> Pace | None:
    """The usual pace as of `now` from usage entries `(when, cents)` (cents positive or
    negative: a usage entry's amount is a debit). Only entries of the last `WINDOW` count; one
    older than that says only that the account was charged before it (its pace is then over
    the whole window); fewer than `MIN_ENTRIES` in the window: None."""
    start = now - WINDOW
    established = False
    recent: list[tuple[datetime, int]] = []
    for when, cents in entries:
        if when <= start:
            established = True
        elif when <= now and cents:
            recent.append((when, abs(cents)))
    if len(recent) < MIN_ENTRIES:
        return None
    recent.sort()
    total = sum(cents for _, cents in recent)
    span = WINDOW if established else min(max(now - recent[0][0], SHORTEST_SPAN), WINDOW)
    # The estimate lapses when the fifth-newest charge leaves the window.
    until = recent[-MIN_ENTRIES][0] + WINDOW
    return Pace(cents=total, hours=max(1, span // HOUR), until=until)


def days_left(balance_cents: int, pace_cents: int, pace_hours: int) -> int:
    """Whole days of calls `balance_cents` buys at `pace_cents` per `pace_hours` hours."""
    return max(0, balance_cents) * pace_hours // (pace_cents * 24)


def estimate(
    entries: Iterable[tuple[datetime, int]], balance_cents: int, *, now: datetime
) -> int | None:
    """Days of calls left at the usual pace as of `now`, or None without an estimate."""
    found = pace(entries, now=now)
    return None if found is None else days_left(balance_cents, found.cents, found.hours)


def stored_days_left(
    balance_cents: int,
    pace_cents: int | None,
    pace_hours: int | None,
    pace_until: datetime | None,
    *,
    now: datetime,
) -> int | None:
    """`days_left` from an account's stored pace, or None when it has none or it lapsed."""
    if pace_cents is None or pace_hours is None or pace_until is None or pace_until <= now:
        return None
    return days_left(balance_cents, pace_cents, pace_hours)


def below(days: int | None, runway_days: int | None) -> bool:
    """Whether an estimate (`days`, whole days rounded down) is under the `runway_days`
    setting (None: off). Rounding down keeps the comparison exact: `floor(x) < n` exactly when
    `x < n` for a whole `n`."""
    return runway_days is not None and days is not None and days < runway_days
