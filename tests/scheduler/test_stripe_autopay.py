"""AutoPay through Stripe: the scan's charge is the same PaymentIntent as a YES's (the attempt's
key, the contract's parameters), a decline follows AutoPay's schedule, and a bank that wants the
card holder to confirm counts as a decline whose text says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, scan_now
from tests.scheduler.test_autopay import balance
from tests.scheduler.test_scan import AFTERNOON, low
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import deposits
from tests.web.test_stripe_charges import (
    PAYMENT_INTENTS,
    assert_ledger_clean,
    attempts,
    expected_charge,
)
from textpay.config import Settings


@pytest.fixture
def settings(stripe_settings: Settings) -> Settings:
    return stripe_settings


def test_autopay_charges_through_stripe_with_the_attempts_key(
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True, payment_method={"token": "pm_card_visa"})
        assert scan_now(app).autopay_charged == 1
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 0  # back above the threshold
    [attempt] = attempts(engine)
    assert (attempt.initiator, attempt.status) == ("merchant", "succeeded")
    [sent] = stripe_standin.sent(PAYMENT_INTENTS)
    assert sent.idempotency_key == attempt.idempotency_key
    assert sent.params == expected_charge(engine, attempt)
    assert balance(admin, account["id"]) == 2810
    [receipt] = outbox(engine)
    assert receipt.kind == "autopay_receipt"
    assert f"Confirmation {attempt.confirmation}" in receipt.body
    assert deposits(engine) == 1
    assert_ledger_clean(database_url)


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("pm_card_chargeDeclinedInsufficientFunds", "card ...9995 (insufficient funds)"),
        ("pm_card_authenticationRequired",
         "card ...3184 (the bank wants the card holder to confirm)"),
    ],
)  # fmt: skip
def test_an_autopay_decline_is_retried_on_schedule_and_says_why(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    stripe_standin: StripeStandIn,
    database_url: str,
    token: str,
    words: str,
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True, payment_method={"token": token})
        assert scan_now(app).autopay_declined == 1
        shown: dict[str, Any] = admin.get(f"/admin/accounts/{account['id']}").get_json()
        assert shown["autopay_enabled"] is True  # a decline: tried again on schedule
        clock.tick(timedelta(hours=23))
        assert scan_now(app).autopay_declined == 0
        clock.tick(timedelta(hours=1, minutes=1))
        assert scan_now(app).autopay_declined == 1
    [first, second] = attempts(engine)
    assert first.idempotency_key != second.idempotency_key
    assert [r.idempotency_key for r in stripe_standin.sent(PAYMENT_INTENTS)] == [
        first.idempotency_key,
        second.idempotency_key,
    ]
    texts = outbox(engine)
    assert [m.kind for m in texts] == ["autopay_declined", "autopay_declined"]
    assert words in texts[0].body
    assert "Nothing was charged" in texts[0].body
    assert balance(admin, account["id"]) == 310
    assert deposits(engine) == 0
    assert_ledger_clean(database_url)
