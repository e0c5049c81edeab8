"""Charges through Stripe: the real `stripe` SDK, over HTTP, to the Stripe stand-in.

What an operator and a subscriber notice: a card saved at enrolment is attached to a Stripe
customer and described from Stripe; a YES is one PaymentIntent with exactly the contract's
parameters under the attempt's own idempotency key; a replayed YES or a reconciler run never
makes a second one; each decline gives its text and no credit; a payment Stripe answers late is
settled once by the reconciler, and after Stripe has forgotten the key it is only looked up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import reconcile
from tests.conftest import AdminClient
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import MOM, deposits, prompt_status
from tests.web.test_reconcile import crash_after_phase_one
from tests.web.twilio_client import TwilioClient, new_sid
from textpay.accounts import payment_method_of
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import Message, PaymentAttempt
from textpay.timeutil import utcnow
from webhooks.cli import cli

PAYMENT_INTENTS = "/v1/payment_intents"


@pytest.fixture
def settings(stripe_settings: Settings) -> Settings:
    return stripe_settings


# -- helpers --


def enrol_low(
    admin: AdminClient, offer: Callable[[int], int], card: str = "pm_card_visa", **fields: Any
) -> dict[str, Any]:
    """Mom's account ...4821 at $3.10, a Stripe card on file, a $25.00 offer waiting."""
    account = admin.enrol(payment_method={"token": card}, **fields)
    assert admin.credit(account["id"], 310, f"seed-{account['id']}").status_code == 201
    account["prompt_id"] = offer(account["id"])
    return account


def attempts(engine: Engine) -> list[PaymentAttempt]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(PaymentAttempt).order_by(PaymentAttempt.id)))  # type: ignore[arg-type]


def told(engine: Engine) -> list[Message]:
    with unit_of_work(engine) as session:
        return list(
            session.exec(
                select(Message).where(Message.direction == "outbound").order_by(Message.id)  # type: ignore[arg-type]
            )
        )


def run_reconciler(app: Flask, **kwargs: Any) -> reconcile.ReconcileCounts:
    parts = app.extensions["textpay"]
    return reconcile.run(parts.engine, parts.gateway, parts.engine_config, grace_seconds=0,
                         **kwargs)  # fmt: skip


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def assert_ledger_clean(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["verify-ledger"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def expected_charge(
    engine: Engine, attempt: PaymentAttempt, account_number: str = "ACCT-4821"
) -> dict[str, Any]:
    """The contract's PaymentIntent for an attempt, as the stand-in parses it."""
    with unit_of_work(engine) as session:
        method = payment_method_of(session, attempt.account_id)
        assert method is not None
        token, customer = method.token, method.customer
    assert attempt.card_token == token
    return {
        "amount": attempt.amount_cents + attempt.fee_cents,
        "currency": "usd",
        "customer": customer,
        "payment_method": token,
        "confirm": True,
        "off_session": True,
        "metadata": {
            "textpay_key": attempt.idempotency_key,
            "textpay_attempt": str(attempt.id),
            "textpay_account": account_number,
        },
        "description": f"Deposit to calling account {account_number}",
        "statement_descriptor_suffix": "CALLS",
    }


# -- enrolment --


def test_enrolment_attaches_the_card_to_a_new_customer_and_reads_it_from_stripe(
    admin: AdminClient, engine: Engine, stripe_standin: StripeStandIn
) -> None:
    account = admin.enrol(payment_method={"token": "pm_card_visa"})
    card = account["payment_method"]
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        12,
        2034,
    )
    [customer] = stripe_standin.customers.values()
    assert card["customer"] == customer["id"]
    assert customer["metadata"] == {"textpay_account": "ACCT-4821"}
    with unit_of_work(engine) as session:
        method = payment_method_of(session, account["id"])
        assert method is not None
    # What is kept is the payment method Stripe attached to the customer, which it will charge.
    assert method.token.startswith("pm_")
    assert method.token != "pm_card_visa"
    assert stripe_standin.payment_methods[method.token]["customer"] == customer["id"]
    # The operator's own description wins over Stripe's.
    other = admin.enrol(
        account_number="ACCT-7777",
        payment_method={"token": "pm_card_mastercard", "exp_month": 3, "exp_year": 2031},
    )
    assert other["payment_method"]["exp_month"] == 3
    assert other["payment_method"]["last4"] == "4444"


def test_a_given_customer_gets_the_card_attached_and_no_new_customer_is_made(
    admin: AdminClient, stripe_standin: StripeStandIn
) -> None:
    first = admin.enrol(payment_method={"token": "pm_card_visa"})
    customer = first["payment_method"]["customer"]
    second = admin.enrol(
        account_number="ACCT-9001",
        payment_method={"token": "pm_card_mastercard", "customer": customer},
    )
    assert second["payment_method"]["customer"] == customer
    assert second["payment_method"]["brand"] == "mastercard"
    assert len(stripe_standin.customers) == 1
    [attach] = [
        r
        for r in stripe_standin.requests
        if r.path.endswith("/attach") and r.params["customer"] == customer and r.status == 200
    ][-1:]
    assert attach.method == "POST"
    # A card changed later is attached to the account's customer too.
    changed = admin.patch(
        f"/admin/accounts/{first['id']}",
        json={"payment_method": {"token": "pm_card_mastercard", "customer": customer}},
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["payment_method"]["last4"] == "4444"


def test_a_payment_method_or_customer_stripe_does_not_know_is_a_422(
    admin: AdminClient, stripe_standin: StripeStandIn
) -> None:
    unknown = admin.post(
        "/admin/accounts",
        json={"account_number": "ACCT-1", "phone": "2125550147",
              "payment_method": {"token": "pm_nonexistent"}},
    )  # fmt: skip
    assert unknown.status_code == 422
    assert unknown.get_json()["errors"] == [
        {"field": "payment_method.token", "message": "is not known to Stripe"}
    ]
    no_customer = admin.post(
        "/admin/accounts",
        json={"account_number": "ACCT-1", "phone": "2125550147",
              "payment_method": {"token": "pm_card_visa", "customer": "cus_nobody"}},
    )  # fmt: skip
    assert no_customer.status_code == 422
    assert no_customer.get_json()["errors"][0]["field"] == "payment_method.customer"
    assert admin.get("/admin/accounts").get_json()["accounts"] == []


def test_stripe_unreachable_while_saving_a_card_is_a_503_and_saves_nothing(
    admin: AdminClient, stripe_standin: StripeStandIn
) -> None:
    stripe_standin.stop()
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "ACCT-1", "phone": "2125550147",
              "payment_method": {"token": "pm_card_visa"}},
    )  # fmt: skip
    assert response.status_code == 503
    body = response.get_json()
    assert body["type"] == "/problems/gateway-unavailable"
    assert "try again" in body["detail"].lower()
    assert response.headers["Retry-After"] == "5"
    assert admin.get("/admin/accounts").get_json()["accounts"] == []


# -- a YES --


def test_a_yes_is_one_payment_intent_with_the_contracts_parameters_and_the_attempts_key(
    *,
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    account = enrol_low(admin, offer)
    sid = new_sid()
    reply = twilio.text(MOM, "YES", sid=sid)
    [attempt] = attempts(engine)
    assert attempt.status == "succeeded"
    assert f"Confirmation {attempt.confirmation}" in reply
    assert "New balance $28.10" in reply
    assert balance(admin, account["id"]) == 2810
    [sent] = stripe_standin.sent(PAYMENT_INTENTS)
    assert sent.idempotency_key == attempt.idempotency_key
    assert sent.params == expected_charge(engine, attempt)
    # Refunds and webhook events name the PaymentIntent: that is the charge id kept.
    assert attempt.charge_id in stripe_standin.payment_intents
    assert stripe_standin.payment_intents[attempt.charge_id]["status"] == "succeeded"

    # Twilio delivers the same YES again, then the reconciler runs: nothing new at Stripe.
    assert twilio.text(MOM, "YES", sid=sid) == reply
    assert run_reconciler(admin.client.application).settled == 0
    assert len(stripe_standin.sent(PAYMENT_INTENTS)) == 1
    assert len(stripe_standin.payment_intents) == 1
    assert deposits(engine) == 1
    assert_ledger_clean(database_url)


@pytest.mark.parametrize(
    ("token", "reason", "words"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "declined (refused by the bank)"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds",
         "declined (insufficient funds)"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "declined (card expired)"),
        # Stripe asks merchants not to tell a possible thief that the card was reported lost.
        ("pm_card_chargeDeclinedLostCard", "lost_card", "declined (refused by the bank)"),
    ],
)  # fmt: skip
def test_each_decline_says_what_happened_and_credits_nothing(
    *,
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
    token: str,
    reason: str,
    words: str,
) -> None:
    account = enrol_low(admin, offer, token)
    reply = twilio.text(MOM, "YES")
    assert words in reply
    assert "Nothing was charged" in reply
    [attempt] = attempts(engine)
    assert (attempt.status, attempt.decline_reason) == ("declined", reason)
    assert balance(admin, account["id"]) == 310
    assert deposits(engine) == 0
    assert prompt_status(engine, account["prompt_id"]) == "failed"
    [sent] = stripe_standin.sent(PAYMENT_INTENTS)
    assert sent.idempotency_key == attempt.idempotency_key
    assert run_reconciler(admin.client.application).settled == 0
    assert len(stripe_standin.sent(PAYMENT_INTENTS)) == 1
    assert_ledger_clean(database_url)


def test_a_bank_that_wants_the_card_holder_to_confirm_is_told_as_such(
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    database_url: str,
) -> None:
    account = enrol_low(admin, offer, "pm_card_authenticationRequired")
    reply = twilio.text(MOM, "YES")
    assert "the bank for card ...3184 wants the card holder to confirm this payment" in reply
    assert "Nothing was charged" in reply
    assert "Confirm the card or use another: http://localhost/card/" in reply  # issue 13's link
    assert "declined" not in reply
    [attempt] = attempts(engine)
    assert (attempt.status, attempt.decline_reason) == ("declined", "authentication_required")
    assert balance(admin, account["id"]) == 310
    assert_ledger_clean(database_url)


def test_a_yes_in_spanish_that_needs_confirmation_is_told_in_spanish(
    admin: AdminClient, engine: Engine, twilio: TwilioClient, offer: Callable[[int], int]
) -> None:
    enrol_low(admin, offer, "pm_card_authenticationRequired", language="es")
    reply = twilio.text(MOM, "SI")
    assert "pide que el titular confirme este pago" in reply
    assert deposits(engine) == 0


# -- answers that come late --


def test_a_slow_payment_is_processing_then_settled_once_by_the_reconciler_with_the_same_key(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    app.extensions["textpay"].settings.gateway_timeout_seconds = 0.5
    account = enrol_low(admin, offer, "pm_card_slow")
    # Stripe's search lags new payments: the reconciler must replay the key, not search.
    stripe_standin.search_lag = 3600
    reply = twilio.text(MOM, "YES")
    assert "processing your payment of" in reply
    [attempt] = attempts(engine)
    assert attempt.status == "pending"
    assert balance(admin, account["id"]) == 310

    stripe_standin.release()  # Stripe finishes answering the request TextPay gave up on
    wait_until(lambda: stripe_standin.in_flight() == 0)
    counts = run_reconciler(app)
    assert (counts.settled, counts.still_pending, counts.errors) == (1, 0, 0)
    first, again = stripe_standin.sent(PAYMENT_INTENTS)
    assert first.idempotency_key == again.idempotency_key == attempt.idempotency_key
    assert again.replayed
    assert len(stripe_standin.payment_intents) == 1
    assert balance(admin, account["id"]) == 2810
    [receipt] = told(engine)
    assert receipt.kind == "receipt"
    assert attempts(engine)[0].confirmation in receipt.body
    assert run_reconciler(app).settled == 0
    assert len(stripe_standin.sent(PAYMENT_INTENTS)) == 2
    assert deposits(engine) == 1
    assert_ledger_clean(database_url)


def test_after_stripe_forgot_the_key_the_charge_is_found_by_search_and_never_made_again(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    app.extensions["textpay"].settings.gateway_timeout_seconds = 0.5
    account = enrol_low(admin, offer, "pm_card_slow")
    assert "processing your payment" in twilio.text(MOM, "YES")
    stripe_standin.release()
    wait_until(lambda: stripe_standin.in_flight() == 0)
    stripe_standin.expire_keys()
    with freeze_time(utcnow() + timedelta(hours=25)):
        counts = run_reconciler(app)
    assert (counts.settled, counts.errors) == (1, 0)
    assert len(stripe_standin.sent(PAYMENT_INTENTS)) == 1
    [search] = stripe_standin.sent(PAYMENT_INTENTS + "/search", "GET")
    [attempt] = attempts(engine)
    assert search.params["query"] == f"metadata['textpay_key']:'{attempt.idempotency_key}'"
    assert attempt.status == "succeeded"
    assert balance(admin, account["id"]) == 2810
    assert_ledger_clean(database_url)


def test_an_attempt_stripe_never_saw_is_charged_with_its_key_within_a_day(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    enrol_low(admin, offer)
    crash_after_phase_one(app, engine, new_sid())
    assert run_reconciler(app).settled == 1
    [attempt] = attempts(engine)
    [sent] = stripe_standin.sent(PAYMENT_INTENTS)
    assert sent.idempotency_key == attempt.idempotency_key
    assert sent.params == expected_charge(engine, attempt)
    assert attempt.status == "succeeded"
    assert_ledger_clean(database_url)


def test_an_attempt_stripe_never_saw_is_failed_not_charged_after_a_day(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    account = enrol_low(admin, offer)
    crash_after_phase_one(app, engine, new_sid())
    with freeze_time(utcnow() + timedelta(hours=25)):
        counts = run_reconciler(app)
    assert (counts.settled, counts.errors) == (1, 0)
    assert stripe_standin.sent(PAYMENT_INTENTS) == []
    [attempt] = attempts(engine)
    assert (attempt.status, attempt.decline_reason) == ("failed", "never_charged")
    assert balance(admin, account["id"]) == 310
    [text] = told(engine)
    assert "nothing was charged" in text.body
    assert_ledger_clean(database_url)


def test_stripe_unreachable_for_the_reconciler_leaves_the_attempt_pending(
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
) -> None:
    enrol_low(admin, offer)
    crash_after_phase_one(app, engine, new_sid())
    stripe_standin.stop()
    with freeze_time(utcnow() + timedelta(hours=25)):
        counts = run_reconciler(app, timeout_seconds=0.5)
    # Not "never charged": Stripe could not be asked, so it is asked again next time.
    assert (counts.settled, counts.still_pending) == (0, 1)
    assert attempts(engine)[0].status == "pending"


def test_no_payment_method_or_key_reaches_a_log_line(
    admin: AdminClient,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # what the clock and gunicorn write
    admin.post(
        "/admin/accounts",
        json={"account_number": "ACCT-1", "phone": "2125550147",
              "payment_method": {"token": "pm_nonexistent"}},
    )  # fmt: skip
    enrol_low(admin, offer, "pm_card_chargeDeclined")
    assert "declined" in twilio.text(MOM, "YES")
    # The stand-in's own server log ("werkzeug") is Stripe's side, not ours.
    lines = [r.getMessage() for r in caplog.records if r.name != "werkzeug"]
    assert any("stripe save_card: InvalidRequestError code=resource_missing" in x for x in lines)
    leaks = [x for x in lines if "pm_" in x or "sk_test" in x or "cus_" in x]
    assert leaks == []
