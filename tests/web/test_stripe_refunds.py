"""A refund to the card through Stripe, end to end: the admin API, the Stripe Refund the real SDK
sends to the stand-in (on the deposit's PaymentIntent, under the refund's own key), the ledger,
the subscriber's text, and Stripe's `charge.refunded` event coming back and moving nothing more.
And a refund Stripe answers `pending` (`pm_card_pendingRefund`), its webhook lost: finished by the
reconciler looking it up by id, however old, once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import stripe
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import MOM
from tests.web.test_stripe_charges import (
    assert_ledger_clean,
    attempts,
    balance,
    enrol_low,
    run_reconciler,
    told,
    wait_until,
)
from tests.web.twilio_client import TwilioClient
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import CardRefund, LedgerEntry
from textpay.payments import GatewayTimeout, RefundStatus
from textpay.payments.stripe import StripeGateway
from textpay.timeutil import utcnow


@pytest.fixture
def settings(stripe_settings: Settings) -> Settings:
    return stripe_settings


def kept_event(standin: StripeStandIn, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first event of `type_` the stand-in made (those an API call causes come from a
    thread just after its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in standin.events if event["type"] == type_]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {type_} event in {timeout} s"
        time.sleep(0.02)


def test_a_card_refund_goes_back_through_stripe_once(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    account = enrol_low(admin, offer)
    assert "added $25.00" in TwilioClient(app.test_client()).text(MOM, "YES")
    [attempt] = attempts(engine)
    with unit_of_work(engine) as session:
        deposit = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.account_id == account["id"], LedgerEntry.kind == "deposit"
            )
        ).one()

    path = f"/admin/accounts/{account['id']}/card-refunds"
    body = {"deposit_id": deposit.id, "amount_cents": 1000, "reason": "family asked"}
    answer = admin.post(path, json=body, headers={"Idempotency-Key": "refund-1"})
    assert answer.status_code == 201, answer.get_json()
    refund = answer.get_json()
    assert refund["status"] == "succeeded"
    assert refund["balance_cents"] == 310 + 2500 - 1000

    # Stripe was asked once, for a Refund of that PaymentIntent, under the refund's own key.
    [sent] = stripe_standin.sent("/v1/refunds")
    with unit_of_work(engine) as session:
        row = session.get(CardRefund, refund["id"])
        assert row is not None
        our_key, refund_id = row.idempotency_key, row.refund_id
    assert sent.idempotency_key == our_key
    assert sent.params == {
        "payment_intent": attempt.charge_id,
        "amount": 1000,
        "metadata": {"textpay_key": our_key, "textpay_reason": "family asked"},
    }
    assert refund_id in stripe_standin.refunds
    assert stripe_standin.charges[stripe_standin.payment_intents[attempt.charge_id]
                                  ["latest_charge"]]["amount_refunded"] == 1000  # fmt: skip

    # The subscriber is told, with the new balance.
    assert "$10.00 was refunded to card ...4242" in told(engine)[-1].body
    assert "New balance $18.10" in told(engine)[-1].body

    # The operator's retry answers the first refund and asks Stripe nothing more.
    again = admin.post(path, json=body, headers={"Idempotency-Key": "refund-1"})
    assert again.status_code == 200
    assert again.get_json()["id"] == refund["id"]
    assert len(stripe_standin.sent("/v1/refunds")) == 1

    # Stripe reports the refund back (charge.refunded, twice): nothing more moves.
    event = kept_event(stripe_standin, "charge.refunded")
    payload = json.dumps(event).encode()
    for _ in range(2):
        response = app.test_client().post(
            "/stripe/webhook",
            data=payload,
            headers={"Stripe-Signature": stripe_standin.sign(payload),
                     "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 200
    shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
    assert shown["balance_cents"] == 1810
    with unit_of_work(engine) as session:
        debits = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "card_refund")).all()
    assert [d.amount_cents for d in debits] == [-1000]
    assert_ledger_clean(database_url)


def test_stripe_refusing_a_refund_gives_the_money_back(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    account = enrol_low(admin, offer)
    assert "added $25.00" in TwilioClient(app.test_client()).text(MOM, "YES")
    [attempt] = attempts(engine)
    # The charge is disputed: Stripe refuses to refund a disputed charge.
    stripe_standin.dispute(attempt.charge_id or "")
    with unit_of_work(engine) as session:
        deposit = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "deposit")).one()
    answer = admin.post(
        f"/admin/accounts/{account['id']}/card-refunds",
        json={"deposit_id": deposit.id, "amount_cents": 500, "reason": "goodwill"},
        headers={"Idempotency-Key": "refund-2"},
    )
    assert answer.status_code == 422
    problem = answer.get_json()
    assert problem["card_refund"]["status"] == "failed"
    assert problem["card_refund"]["failure_reason"] == "charge_disputed"
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["balance_cents"] == 2810
    assert_ledger_clean(database_url)


def pending_refund(
    app: Flask, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> tuple[int, CardRefund]:
    """Mom's $25.00 deposit on `pm_card_pendingRefund`, and a $10.00 refund of it that Stripe
    answered `pending`: the debit is posted, the subscriber not told yet."""
    account = enrol_low(admin, offer, card="pm_card_pendingRefund")
    assert "added $25.00" in TwilioClient(app.test_client()).text(MOM, "YES")
    with unit_of_work(engine) as session:
        deposit = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "deposit")).one()
    answer = admin.post(
        f"/admin/accounts/{account['id']}/card-refunds",
        json={"deposit_id": deposit.id, "amount_cents": 1000, "reason": "family asked"},
        headers={"Idempotency-Key": "refund-pending"},
    )
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["balance_cents"] == 1810
    with unit_of_work(engine) as session:
        [row] = session.exec(select(CardRefund)).all()
    assert (row.status, row.refund_id is not None) == ("pending", True)
    return account["id"], row


def refund_row(engine: Engine) -> CardRefund:
    with unit_of_work(engine) as session:
        [row] = session.exec(select(CardRefund)).all()
    return row


def test_a_pending_stripe_refund_is_finished_by_the_reconciler_once(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    # No webhook URL: Stripe's events about the refund are lost; only the reconciler can tell.
    account_id, row = pending_refund(app, admin, engine, offer)
    refund_id = row.refund_id or ""
    texts_before = len(told(engine))
    assert run_reconciler(app).refunds_pending == 1  # still pending at Stripe
    # Asked by the refund's id, not by replaying its key (which answers "pending" for ever).
    assert [r.status for r in stripe_standin.sent(f"/v1/refunds/{refund_id}", "GET")] == [200]
    assert len(stripe_standin.sent("/v1/refunds")) == 1

    # A day later Stripe has forgotten the key; the refund finishes meanwhile.
    stripe_standin.expire_keys()
    stripe_standin.finish_refund(refund_id)
    later = utcnow() + timedelta(hours=25)
    assert run_reconciler(app, now=later).refunds_settled == 1
    for _ in range(2):  # settled once: asked no more, nothing more moves
        assert run_reconciler(app, now=later).refunds_settled == 0
    assert refund_row(engine).status == "succeeded"
    assert len(stripe_standin.sent("/v1/refunds")) == 1  # never a second Refund
    [text] = told(engine)[texts_before:]
    assert "$10.00 was refunded to card ...7726" in text.body
    assert "New balance $18.10" in text.body
    shown = admin.get(f"/admin/accounts/{account_id}").get_json()
    assert shown["balance_cents"] == 1810
    assert_ledger_clean(database_url)


def test_a_pending_stripe_refund_that_fails_gives_the_money_back_once(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    account_id, row = pending_refund(app, admin, engine, offer)
    texts_before = len(told(engine))
    stripe_standin.finish_refund(row.refund_id or "", succeeded=False)
    assert run_reconciler(app).refunds_settled == 1
    assert run_reconciler(app).refunds_settled == 0
    failed = refund_row(engine)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    # The debit is given back once, by an adjustment; the subscriber is told of no refund.
    assert admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"] == 2810
    with unit_of_work(engine) as session:
        entries = session.exec(
            select(LedgerEntry).where(LedgerEntry.kind.in_(["card_refund", "adjustment"]))  # type: ignore[attr-defined]
        ).all()
    assert sorted(e.amount_cents for e in entries) == [-1000, 1000]
    assert told(engine)[texts_before:] == []
    assert_ledger_clean(database_url)


def test_looking_a_refund_up_by_id_never_fails_it_on_no_answer(
    stripe_standin: StripeStandIn,
) -> None:
    gateway = StripeGateway("sk_test_x", api_url=stripe_standin.url)
    # An id Stripe does not know (odd: it came from Stripe) leaves the refund pending, money held.
    unknown = gateway.retrieve_refund("re_unknown", timeout_seconds=2)
    assert (unknown.status, unknown.refund_id) == (RefundStatus.PENDING, "re_unknown")
    stripe_standin.stop()
    with pytest.raises(GatewayTimeout):
        gateway.retrieve_refund("re_unknown", timeout_seconds=1)


def test_a_dashboard_refund_stripe_reports_before_the_charges_success_is_debited_once(
    *,
    app: Flask,
    admin: AdminClient,
    engine: Engine,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    stripe_standin: StripeStandIn,
    database_url: str,
) -> None:
    # The YES times out, Stripe charges the card anyway; an operator refunds $10.00 in Stripe's
    # dashboard, and Stripe's `charge.refunded` is delivered before `payment_intent.succeeded`
    # (Stripe does not order events).
    app.extensions["textpay"].settings.gateway_timeout_seconds = 0.5
    account = enrol_low(admin, offer, "pm_card_slow")
    assert "processing your payment of" in twilio.text(MOM, "YES")
    stripe_standin.release()
    wait_until(lambda: stripe_standin.in_flight() == 0)
    [pi_id] = stripe_standin.payment_intents
    dashboard = stripe.StripeClient(
        "sk_test_dashboard", base_addresses={"api": stripe_standin.url}, max_network_retries=0
    )
    dashboard.v1.refunds.create({"payment_intent": pi_id, "amount": 1000})
    client = app.test_client()

    def post(type_: str, obj: dict[str, Any]) -> None:
        payload, signature = stripe_standin.event(type_, obj)
        response = client.post("/stripe/webhook", data=payload, headers={
            "Stripe-Signature": signature, "Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 200

    post("charge.refunded", kept_event(stripe_standin, "charge.refunded")["data"]["object"])
    assert balance(admin, account["id"]) == 310 + 2500 - 1000
    [attempt] = attempts(engine)
    assert (attempt.status, attempt.charge_id) == ("succeeded", pi_id)
    receipt, refunded = told(engine)
    assert receipt.kind == "receipt"
    assert "$10.00 was refunded to card ...3220" in refunded.body

    post("payment_intent.succeeded", stripe_standin.payment_intents[pi_id])
    assert run_reconciler(app).settled == 0
    assert balance(admin, account["id"]) == 1810
    assert len(told(engine)) == 2
    with unit_of_work(engine) as session:
        kinds = [e.kind for e in session.exec(select(LedgerEntry)).all()]
    assert (kinds.count("deposit"), kinds.count("card_refund")) == (1, 1)
    assert_ledger_clean(database_url)
