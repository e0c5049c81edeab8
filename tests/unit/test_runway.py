"""The runway estimate (`textpay.runway`) as a table: steady use, a burst, two weeks without
calls, a new account, and the edges of its window and of its rule of five charges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from textpay import runway

NOW = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def daily(cents: int, days: range) -> list[tuple[datetime, int]]:
    """One charge of `cents` a day, `d` days before NOW for each `d` in `days`."""
    return [(NOW - d * DAY, -cents) for d in days]


CASES: list[tuple[str, list[tuple[datetime, int]], int, int | None]] = [
    # name, entries, balance, days left
    # Charged $1 every day for longer than the window: $30 over 30 days.
    ("steady: $1 a day, $3 left", daily(100, range(40)), 300, 3),
    ("steady: $1 a day, $3.99 left rounds down", daily(100, range(40)), 399, 3),
    ("steady: $1 a day, $30 left", daily(100, range(40)), 3000, 30),
    ("steady: nothing left", daily(100, range(40)), 0, 0),
    ("steady: 50 cents left is less than a day", daily(100, range(40)), 50, 0),
    # $1 a day, and one evening of $30 of calls: $59 over the month (about $1.97 a day), not
    # the pace of the hour the burst happened in.
    ("burst after a steady month", [*daily(100, range(1, 40)), (NOW, -3000)], 1000, 5),
    # Only a burst, in the last day, five calls: spread over the shortest span (a week).
    ("burst alone", [(NOW - timedelta(hours=h), -700) for h in range(5)], 1000, 2),
    # $2 a day, then two weeks without calls: $32 over 30 days, about $1.07 a day, not $2.
    ("no calls for two weeks", daily(200, range(14, 40)), 1000, 9),
    ("the same month had the calls kept on", daily(200, range(40)), 1000, 5),
    # A new account: four charges are no estimate; the fifth makes one, spread over a week.
    ("new account, four charges", daily(100, range(4)), 1000, None),
    ("new account, five charges in five days", daily(100, range(5)), 1000, 14),
    (
        "new account, five charges in an hour",
        [(NOW - timedelta(minutes=m), -100) for m in range(5)],
        1000,
        14,
    ),
    # Charges older than 30 days do not count; charges after NOW neither.
    ("old charges leave the window", daily(100, range(27, 40)), 1000, None),
    ("exactly 30 days old is out", [(NOW - 30 * DAY, -100), *daily(100, range(4))], 1000, None),
    ("future charges ignored", [(NOW + DAY, -100), *daily(100, range(4))], 1000, None),
    ("positive amounts read as charges too", [(t, -c) for t, c in daily(100, range(40))], 300, 3),
    ("no charges", [], 1000, None),
]


@pytest.mark.parametrize(
    ("entries", "balance", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_days_left(entries: list[tuple[datetime, int]], balance: int, expected: int | None) -> None:
    assert runway.estimate(entries, balance, now=NOW) == expected


def test_the_pace_is_a_fraction_of_whole_cents_and_hours() -> None:
    pace = runway.pace(daily(100, range(40)), now=NOW)
    assert pace is not None
    assert (pace.cents, pace.hours) == (3000, 30 * 24)  # charged before the window: all of it
    # An account whose first charge was 29 days ago: its pace is over those 29 days.
    young = runway.pace(daily(100, range(30)), now=NOW)
    assert young is not None
    assert (young.cents, young.hours) == (3000, 29 * 24)
    assert runway.days_left(300, young.cents, young.hours) == 2  # 2.9 days, rounded down


def test_the_estimate_lapses_when_the_fifth_newest_charge_leaves_the_window() -> None:
    entries = daily(100, range(10, 16))  # six charges, 10 to 15 days ago
    pace = runway.pace(entries, now=NOW)
    assert pace is not None
    assert pace.until == NOW - 14 * DAY + runway.WINDOW  # the fifth newest: 14 days ago
    # From the stored pace: known until then, unknown from then on, as from the entries.
    for moment in (pace.until - timedelta(seconds=1), pace.until):
        stored = runway.stored_days_left(1000, pace.cents, pace.hours, pace.until, now=moment)
        assert (stored is None) == (runway.pace(entries, now=moment) is None)


def test_stored_pace_without_an_estimate_is_unknown() -> None:
    assert runway.stored_days_left(1000, None, None, None, now=NOW) is None


@pytest.mark.parametrize(
    ("days", "setting", "below"),
    [(2, 3, True), (3, 3, False), (0, 1, True), (None, 3, False), (1, None, False)],
)
def test_below_the_setting(days: int | None, setting: int | None, below: bool) -> None:
    assert runway.below(days, setting) is below
