"""Quiet hours: state windows, zones of a number, and the next allowed moment."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import phonenumbers
import pytest

from textpay.localtime import country_wide, geocoded_state, place_of
from textpay.quiet_hours import (
    DEFAULT_STATE_WINDOWS,
    allowed,
    country_zones,
    multi_zone_places,
    next_allowed,
    open_minutes,
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


def test_a_window_shorter_than_a_numbers_zones_span_leaves_no_time() -> None:
    # Alaska's 907 spans Adak and Anchorage, an hour apart: an hour-long window is never open
    # in both at once, a two-hour one is for an hour.
    _, alaska = place_of("+19075550100")
    assert open_minutes((time(20), time(21)), alaska, year=2026) <= 0
    assert open_minutes((time(19), time(21)), alaska, year=2026) == 60
    # Toll-free numbers may be anywhere from Guam to American Samoa: the default window is
    # open in all those zones at once for 90 minutes on summer days, 09:00-17:00 never.
    anywhere = country_zones()
    assert "Pacific/Guam" in anywhere
    assert "Pacific/Pago_Pago" in anywhere
    assert open_minutes((time(8), time(21)), anywhere, year=2026) == 90
    assert open_minutes((time(9), time(17)), anywhere, year=2026) <= 0
    assert open_minutes((time(9), time(17)), ("America/Chicago",), year=2026) == 8 * 60


def test_every_area_code_spanning_zones_is_known() -> None:
    places = dict(multi_zone_places())
    assert places["AK"] == ("America/Adak", "America/Anchorage")
    assert places["NV"] == ("America/Boise", "America/Los_Angeles")
    assert places["SD"] == ("America/Denver", "America/North_Dakota/Center")


@pytest.mark.parametrize(
    "day", [datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)]
)
def test_a_short_common_window_is_always_found(day: datetime) -> None:
    # The default window leaves toll-free numbers only 90 minutes a day in summer (and more in
    # winter); wherever the day starts, the next allowed moment is found and is allowed.
    window = window_for("08:00", "21:00", None, {})
    anywhere = country_zones()
    for hour in range(24):
        moment = day + timedelta(hours=hour, minutes=17)
        found = next_allowed(moment, anywhere, window)
        assert allowed(found, anywhere, window)
        assert moment <= found < moment + timedelta(days=1)


def test_place_of_names_the_geocoders_state_without_asking_it_for_toll_free_numbers() -> None:
    """`place_of` leaves libphonenumber's geocoder (half a second and 100 MB to import) unasked
    when a North American number's zones are every zone of the plan, as a toll-free number's
    are (and such an account's number is placed again on every text). Checked against every
    North American prefix the geocoder knows: the states are the geocoder's own."""
    from phonenumbers.geodata import GEOCODE_DATA  # noqa: PLC0415  (the 100 MB, here only)

    for prefix in GEOCODE_DATA:
        if prefix.startswith("1") and len(prefix) <= 11:
            for fill in "05":
                number = "+" + prefix + fill * (11 - len(prefix))
                state, _ = place_of(number)
                assert state == geocoded_state(phonenumbers.parse(number)), number
    for toll_free in ("+18005550100", "+18885550100", "+18335550100", "+15005550006"):
        state, zones = place_of(toll_free)
        assert country_wide(zones)
        assert state is None
        assert geocoded_state(phonenumbers.parse(toll_free)) is None
