"""Quiet hours: state windows, zones of a number, and the next allowed moment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from textpay.localtime import place_of
from textpay.quiet_hours import (
    DEFAULT_STATE_WINDOWS,
    allowed,
    next_allowed,
    state_of,
    window_for,
)


@pytest.mark.parametrize(
    ("phone", "state"),
    [("+13055550100", "FL"), ("+12035550100", "CT"), ("+12125550147", "NY"),
     ("+14055550100", "OK"), ("+16015550100", "MS"), ("+525512345678", None)],
)  # fmt: skip
def test_state_of_a_number(phone: str, state: str | None) -> None:
    assert state_of(phone) == state


def test_state_law_narrows_the_window() -> None:
    fl = window_for("08:00", "21:00", "FL", DEFAULT_STATE_WINDOWS)
    ct = window_for("08:00", "21:00", "CT", DEFAULT_STATE_WINDOWS)
    ny = window_for("08:00", "21:00", "NY", DEFAULT_STATE_WINDOWS)
    assert [(w[0].hour, w[1].hour) for w in (fl, ct, ny)] == [(8, 20), (9, 20), (8, 21)]
    # An operator's narrower window wins over a looser law.
    assert window_for("10:00", "18:00", "CT", DEFAULT_STATE_WINDOWS)[0].hour == 10


def test_a_number_spanning_zones_is_only_texted_when_all_allow() -> None:
    _, zones = place_of("+16055550100")  # South Dakota: Mountain and Central
    assert set(zones) == {"America/Denver", "America/North_Dakota/Center"}
    window = window_for("08:00", "21:00", None, {})
    # 8:30pm Mountain is 9:30pm Central: not allowed.
    assert not allowed(datetime(2026, 11, 27, 3, 30, tzinfo=UTC), zones, window)
    # Next morning 8:00 Mountain = 9:00 Central is the first moment both allow.
    assert next_allowed(datetime(2026, 11, 27, 3, 30, tzinfo=UTC), zones, window) == datetime(
        2026, 11, 27, 15, 0, tzinfo=UTC
    )


def test_next_allowed_across_a_daylight_saving_change() -> None:
    window = window_for("08:00", "21:00", None, {})
    zones = ("America/New_York",)
    # Saturday 2026-03-07 10pm EST; clocks spring forward that night.
    late = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    assert next_allowed(late, zones, window) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 8am EDT


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        next_allowed(
            datetime(2026, 1, 1, tzinfo=UTC), ("UTC",), window_for("09:00", "09:00", None, {})
        )
