"""Settings resolution (global → facility → account) and the rules settings must keep."""

from __future__ import annotations

import pytest

from textpay.errors import ValidationFailed
from textpay.models import Account, Facility, GlobalSettings
from textpay.policy import resolve, validate_settings


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
