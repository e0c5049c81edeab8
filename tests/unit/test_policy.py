"""Settings resolution (global → facility → account), the rules settings must keep, and which
zone an account's sending window and texts use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from textpay import replies
from textpay.errors import ValidationFailed
from textpay.facts import account_facts_from
from textpay.localtime import clock_time, place_of, when
from textpay.models import Account, Facility, GlobalSettings, PaymentMethod
from textpay.policy import (
    closed_places,
    delivery_rules_for,
    resolve,
    text_zone,
    validate_settings,
)
from textpay.quiet_hours import DEFAULT_STATE_WINDOWS


def test_facility_overrides_global_and_account_overrides_both() -> None:
    defaults = GlobalSettings()
    facility = Facility(code="F1", low_balance_threshold_cents=800, deposit_fee_cents=195)
    account = Account(account_number="A", phone="+1", threshold_cents=300)

    assert resolve(defaults).low_balance_threshold_cents == 500
    at_facility = resolve(defaults, facility)
    assert at_facility.low_balance_threshold_cents == 800
    assert at_facility.deposit_fee_cents == 195
    assert at_facility.sources["deposit_fee_cents"] == "facility"
    assert at_facility.sources["max_deposit_cents"] == "global"

    for_account = resolve(defaults, facility, account)
    assert for_account.low_balance_threshold_cents == 300
    assert for_account.sources["low_balance_threshold_cents"] == "account"
    assert for_account.deposit_fee_cents == 195
    assert for_account.preset_amount_cents == 2500


def test_defaults_are_valid_and_allow_a_50_dollar_deposit() -> None:
    values = resolve(GlobalSettings()).as_dict()
    validate_settings(values)
    assert values["max_deposit_cents"] >= 5000
    assert (values["quiet_hours_start"], values["quiet_hours_end"]) == ("08:00", "21:00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_deposit_cents": 4999}, "max_deposit_cents"),
        ({"min_deposit_cents": 30_000}, "min_deposit_cents"),
        ({"preset_amount_cents": 100}, "preset_amount_cents"),
        ({"daily_deposit_limit_cents": 10_000}, "daily_deposit_limit_cents"),
        ({"quiet_hours_start": "25:00"}, "quiet_hours_start"),
        ({"quiet_hours_start": "22:00"}, "quiet_hours_end"),
        ({"daily_message_cap": 0}, "daily_message_cap"),
    ],
)
def test_settings_that_break_a_rule_are_refused(change: dict[str, object], field: str) -> None:
    values = {**resolve(GlobalSettings()).as_dict(), **change}
    with pytest.raises(ValidationFailed) as raised:
        validate_settings(values)
    assert field in {error.field for error in raised.value.errors}


def _account(phone: str, **fields: Any) -> Account:
    state, zones = place_of(phone)
    return Account(id=1, account_number="ACCT-4821", phone=phone, phone_state=state,
                   phone_zones=",".join(zones), **fields)  # fmt: skip


@pytest.mark.parametrize(
    ("phone", "account_zone", "facility_zone", "expected"),
    [
        ("+12125550147", None, "America/Chicago", ("America/New_York", False)),  # one zone
        ("+19075550100", None, None, ("America/Anchorage", True)),  # Alaska: a guess, named
        ("+19075550100", "America/Adak", None, ("America/Adak", False)),  # the account's own
        ("+19075550100", None, "America/Anchorage", ("America/Anchorage", False)),
        ("+19075550100", None, "America/Chicago", ("America/Anchorage", True)),  # not there
        ("+17755550100", None, None, ("America/Los_Angeles", True)),  # Nevada: Reno
        ("+12085550100", None, None, ("America/Boise", True)),  # Idaho: Boise
        ("+18005550100", None, "America/Chicago", ("America/Chicago", False)),  # toll-free
        ("+18005550100", None, None, ("America/New_York", True)),
    ],
)
def test_times_in_texts_use_the_likeliest_zone_and_name_it_when_unsure(
    phone: str, account_zone: str | None, facility_zone: str | None, expected: tuple[str, bool]
) -> None:
    assert text_zone(_account(phone, timezone=account_zone), facility_zone) == expected


def test_an_alaska_offer_tells_its_times_in_anchorage_time_and_says_so() -> None:
    account = _account("+19075550100", balance_cents=310,
                       balance_updated_at=datetime(2026, 11, 26, 23, 5, tzinfo=UTC))  # fmt: skip
    facts = account_facts_from(
        account, resolve(GlobalSettings()), PaymentMethod(account_id=1, last4="4242"),
        deposited_last_24h_cents=0,
    )  # fmt: skip
    now = datetime(2026, 11, 26, 23, 10, tzinfo=UTC)
    text = replies.offer(facts, 2500, 0, now + timedelta(days=1), now=now, voice=replies.Voice())
    # 2:05pm in Anchorage (AKST, UTC-9); in Adak, the zone first in the alphabet, it is 1:05pm.
    assert "2:05pm AKT" in text
    assert "2:10pm AKT tomorrow" in text


def test_times_name_their_zone_when_asked() -> None:
    moment = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    day_before = moment - timedelta(days=1)
    assert when(moment, day_before, "America/Chicago", "en", name_zone=True) == "8:00am CT tomorrow"
    assert when(moment, moment, "America/Chicago", "en") == "8:00am"
    assert when(moment, day_before, "America/Chicago", "es", name_zone=True) == "mañana 8:00 CT"
    summer = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    assert clock_time(summer, "America/New_York", "en", name_zone=True) == "12:00pm ET"
    assert clock_time(summer, "America/Anchorage", "en", name_zone=True) == "8:00am AKT"


def test_toll_free_numbers_keep_the_facilitys_hours_when_it_has_a_zone() -> None:
    toll_free = _account("+18005550100")
    in_chicago = resolve(GlobalSettings(), Facility(code="F1", timezone="America/Chicago"))
    assert delivery_rules_for(toll_free, in_chicago, {}).zones == ("America/Chicago",)
    # Without one, every zone the number may be in, as before; a number with an area code keeps
    # its own zones whatever the facility's.
    anywhere = resolve(GlobalSettings(), Facility(code="F2"))
    assert len(delivery_rules_for(toll_free, anywhere, {}).zones) > 20
    alaska = _account("+19075550100")
    assert delivery_rules_for(alaska, in_chicago, {}).zones == (
        "America/Adak",
        "America/Anchorage",
    )


def test_a_number_without_a_usable_area_code_is_texted_in_the_accounts_zone() -> None:
    """Issue 10 §4: numbers without a usable area code use the account's zone, else the
    facility's; the account's own zone wins for any number."""
    toll_free = _account("+18005550100", timezone="America/Denver")
    in_chicago = resolve(GlobalSettings(), Facility(code="F1", timezone="America/Chicago"))
    assert delivery_rules_for(toll_free, in_chicago, {}).zones == ("America/Denver",)
    anywhere = resolve(GlobalSettings(), Facility(code="F2"))
    assert delivery_rules_for(toll_free, anywhere, {}).zones == ("America/Denver",)
    alaska = _account("+19075550100", timezone="America/Adak")
    assert delivery_rules_for(alaska, in_chicago, {}).zones == ("America/Adak",)


def test_a_window_that_leaves_no_sending_time_is_named_where() -> None:
    table = dict(DEFAULT_STATE_WINDOWS)
    assert not closed_places("08:00", "21:00", table, facility_zone=None, year=2026)
    late = closed_places("20:00", "21:00", table, facility_zone=None, year=2026)
    assert late.states == ("CT", "FL", "MD", "MS", "NJ", "OK")
    assert {"AK", "AZ", "ID", "NV", "SD"} <= set(late.spanning)
    assert late.toll_free
    assert late.describe().startswith(
        "CT, FL, MD, MS, NJ, OK; area codes spanning two zones in AK, AZ, ID, ND, NV, SD, "
    )
    office = closed_places("09:00", "17:00", table, facility_zone=None, year=2026)
    assert office.describe() == (
        "toll-free and non-geographic numbers, which may be in any North American zone"
    )
    assert not closed_places("09:00", "17:00", table, facility_zone="America/Chicago", year=2026)
