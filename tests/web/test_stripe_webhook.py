"""Stripe's webhook (`POST /stripe/webhook`): only signed, recent events are read; each event id
is applied once however often it comes; a charge left pending is finished by its event, through
settlement; a dispute posts nothing, turns AutoPay off on the disputed card with a text, shows on
the account, and blocks nothing.

Events are shaped like Stripe's (the example objects in `fixtures/stripe/fixtures3.json`, as the
Stripe stand-in builds them) and signed with the stand-in's `event()`, which uses the SDK's own
`WebhookSignature`. Charges go through the sandbox here: the webhook is gateway-neutral below the
translation of Stripe's event.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from werkzeug.test import TestResponse

from scheduler import reconcile
from tests.conftest import ADMIN_TOKEN, AdminClient
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import MOM, charges, count, deposits, prompt_status
from tests.web.test_admin_money import verify_ledger
from tests.web.twilio_client import TwilioClient
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import (
    Account,
    AttemptStatus,
    AuditLogEntry,
    CardRefund,
    Dispute,
    GatewayEvent,
    LedgerEntry,
    Message,
    PaymentAttempt,
)
from textpay.timeutil import utcnow
from webhooks import create_app

SECRET = "whsec_test_textpay_events"
WEBHOOK = "/stripe/webhook"
EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe" / "fixtures3.json"
DAD = "+12125550199"
NOON_NEW_YORK = "2026-11-26 17:00:00"  # UTC
LATE_EVENING_NEW_YORK = "2026-11-27 03:30:00"  # 22:30 in New York


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        twilio_auth_token="test-twilio-auth-token",
        sandbox_slow_seconds=0.5,
        stripe_webhook_secret=SECRET,
    )


@dataclass
class Web:
    """What a test of the webhook works with: the app's clients, the database, and Stripe's
    event builder."""

    client: FlaskClient
    twilio: TwilioClient
    admin: AdminClient
    engine: Engine
    events: StripeStandIn
    offer: Callable[[int], int]


@pytest.fixture
def web(
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    stripe_events: StripeStandIn,
    offer: Callable[[int], int],
) -> Web:
    return Web(client, TwilioClient(client), admin, engine, stripe_events, offer)


@pytest.fixture(scope="module")
def stripe_events() -> StripeStandIn:
    """The stand-in, not started: only its event builder and signer are used."""
    return StripeStandIn(webhook_secret=SECRET)


@functools.cache
def _examples() -> dict[str, Any]:
    resources: dict[str, Any] = json.loads(EXAMPLES.read_text())["resources"]
    return resources


def example(kind: str, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(_examples()[kind])
    obj.update(fields)
    return obj


def payment_intent(attempt: PaymentAttempt, **fields: Any) -> dict[str, Any]:
    """The PaymentIntent Stripe would report for an attempt TextPay charged."""
    total = attempt.amount_cents + attempt.fee_cents
    return example(
        "payment_intent",
        **{
            "id": f"pi_{attempt.id:04d}TextPayWebhookTest",
            "amount": total,
            "amount_received": total,
            "status": "succeeded",
            "last_payment_error": None,
            "metadata": {
                "textpay_key": attempt.idempotency_key,
                "textpay_attempt": str(attempt.id),
            },
            **fields,
        },
    )


def declined_intent(attempt: PaymentAttempt, code: str, decline_code: str | None) -> dict[str, Any]:
    error = {"type": "card_error", "code": code, "decline_code": decline_code,
             "message": "Your card was declined."}  # fmt: skip
    return payment_intent(
        attempt, status="requires_payment_method", amount_received=0, last_payment_error=error
    )


def dispute_of(attempt: PaymentAttempt, **fields: Any) -> dict[str, Any]:
    return example(
        "dispute",
        **{
            "id": f"dp_{attempt.id:04d}TextPayWebhookTest",
            "amount": attempt.amount_cents + attempt.fee_cents,
            "payment_intent": attempt.charge_id,
            "reason": "fraudulent",
            "status": "needs_response",
            **fields,
        },
    )


def post(client: FlaskClient, payload: bytes, signature: str | None) -> TestResponse:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(WEBHOOK, data=payload, headers=headers)


def deliver(
    client: FlaskClient, stripe_events: StripeStandIn, type_: str, obj: dict[str, Any]
) -> tuple[TestResponse, bytes, str]:
    payload, signature = stripe_events.event(type_, obj)
    response = post(client, payload, signature)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True}
    return response, payload, signature


def attempts(engine: Engine) -> list[PaymentAttempt]:
    with unit_of_work(engine) as session:
        found = list(session.exec(select(PaymentAttempt).order_by(col(PaymentAttempt.id))))
        session.expunge_all()
        return found


def outbound(engine: Engine) -> list[Message]:
    with unit_of_work(engine) as session:
        found = list(
            session.exec(
                select(Message).where(Message.direction == "outbound").order_by(col(Message.id))
            )
        )
        session.expunge_all()
        return found


def ledger_entries(engine: Engine) -> int:
    return count(engine, LedgerEntry)


@pytest.fixture
def hasty(app: Flask) -> Iterator[Flask]:
    """The app with a card that answers long after the YES has stopped waiting."""
    settings = app.extensions["textpay"].settings
    slow = create_app(
        settings.model_copy(update={"gateway_timeout_seconds": 0.1, "sandbox_slow_seconds": 30.0})
    )
    yield slow
    slow.extensions["textpay"].engine.dispose()


@pytest.fixture
def pending_yes(
    hasty: Flask, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> dict[str, Any]:
    """Mom said YES to $25.00 with a slow card: the charge timed out, the attempt is pending."""
    account = admin.enrol(payment_method={"token": "tok_slow"})
    admin.credit(account["id"], 310, "seed")
    account["prompt_id"] = offer(account["id"])
    answer = TwilioClient(hasty.test_client()).text(MOM, "YES")
    assert "processing your payment of $25.00" in answer
    [attempt] = attempts(engine)
    assert attempt.status == AttemptStatus.PENDING.value
    account["attempt"] = attempt
    return account


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


# -- who may post --


@pytest.mark.parametrize("case", ["bad_signature", "tampered", "stale", "missing", "garbage"])
def test_only_a_recent_event_signed_with_our_secret_is_read(
    client: FlaskClient, engine: Engine, stripe_events: StripeStandIn, case: str
) -> None:
    event = example("customer", id="cus_TextPayWebhookTest")
    payload, signature = stripe_events.event("customer.created", event)
    if case == "bad_signature":
        signature = StripeStandIn(webhook_secret="whsec_someone_else").sign(payload)
    elif case == "tampered":
        payload = payload.replace(b"cus_TextPayWebhookTest", b"cus_TextPayWebhookTesu")
    elif case == "stale":  # a replay of a real event, more than five minutes later
        payload, signature = stripe_events.event(
            "customer.created", event, timestamp=int(time.time()) - 301
        )
    elif case == "missing":
        signature = None  # type: ignore[assignment]
    else:
        signature = "t=\u00e9,v1=\u00ff\u00fe"
    response = post(client, payload, signature)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "/problems/bad-signature"
    assert count(engine, GatewayEvent) == 0


def test_a_body_that_is_not_utf8_is_refused_not_a_server_error(client: FlaskClient) -> None:
    payload = b'{"id": "evt_\xff"}'
    signature = StripeStandIn(webhook_secret=SECRET).sign(payload.decode("latin-1"))
    assert post(client, payload, signature).status_code == 400


def test_without_a_webhook_secret_the_endpoint_does_not_exist(
    app: Flask, stripe_events: StripeStandIn
) -> None:
    settings = app.extensions["textpay"].settings
    unconfigured = create_app(settings.model_copy(update={"stripe_webhook_secret": None}))
    payload, signature = stripe_events.event("customer.created", example("customer"))
    response = post(unconfigured.test_client(), payload, signature)
    assert response.status_code == 404
    assert "STRIPE_WEBHOOK_SECRET" in response.get_json()["detail"]
    unconfigured.extensions["textpay"].engine.dispose()


def test_neither_twilio_signature_nor_admin_token_is_asked_for(
    client: FlaskClient, engine: Engine, stripe_events: StripeStandIn
) -> None:
    # Posted as Stripe does: no X-Twilio-Signature, no Authorization.
    deliver(client, stripe_events, "customer.created", example("customer"))
    assert count(engine, GatewayEvent) == 1


def test_unknown_types_and_events_about_others_charges_are_acknowledged_and_ignored(
    client: FlaskClient, engine: Engine, stripe_events: StripeStandIn
) -> None:
    deliver(client, stripe_events, "customer.created", example("customer"))
    deliver(client, stripe_events, "invoice.paid", example("invoice"))
    # Another integration's PaymentIntent on the same Stripe account: no key of ours.
    deliver(client, stripe_events, "payment_intent.succeeded", example("payment_intent"))
    # A key TextPay never made.
    stranger = example("payment_intent", metadata={"textpay_key": "not-one-of-ours"})
    deliver(client, stripe_events, "payment_intent.succeeded", stranger)
    # A dispute on a charge made elsewhere, and one that closes a dispute we never saw.
    deliver(client, stripe_events, "charge.dispute.created", example("dispute"))
    deliver(client, stripe_events, "charge.dispute.closed", example("dispute", status="won"))
    # Signed, but lacking what Stripe always sends, or not an event at all.
    deliver(client, stripe_events, "payment_intent.succeeded", {"id": 7, "metadata": []})
    payload = b"[1, 2, 3]"
    response = post(client, payload, stripe_events.sign(payload))
    assert (response.status_code, response.get_json()) == (200, {"received": True})
    assert count(engine, GatewayEvent) == 7
    assert count(engine, Dispute) == 0
    assert deposits(engine) == 0


# -- charges left pending --


def test_a_timed_out_charge_is_settled_once_by_payment_intent_succeeded(
    web: Web, hasty: Flask, pending_yes: dict[str, Any], database_url: str
) -> None:
    client, admin, engine, stripe_events = web.client, web.admin, web.engine, web.events
    attempt = pending_yes["attempt"]
    intent = payment_intent(attempt)
    _, payload, _ = deliver(client, stripe_events, "payment_intent.succeeded", intent)

    [settled] = attempts(engine)
    assert settled.status == AttemptStatus.SUCCEEDED.value
    assert settled.charge_id == intent["id"]
    assert deposits(engine) == 1
    assert balance(admin, pending_yes["id"]) == 2810
    assert prompt_status(engine, pending_yes["prompt_id"]) == "funded"
    [receipt] = outbound(engine)
    assert receipt.kind == "receipt"
    assert receipt.status == "pending"
    assert "added $25.00 to acct ...4821" in receipt.body
    assert "New balance $28.10" in receipt.body

    # Stripe delivers it again (our answer was lost): acknowledged, nothing more.
    for _ in range(4):
        assert post(client, payload, stripe_events.sign(payload)).status_code == 200
    # The card's own answer comes in later; the reconciler finds nothing left to do.
    parts = hasty.extensions["textpay"]
    with freeze_time(utcnow() + timedelta(seconds=31)):
        done = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
    assert (done.settled, done.still_pending, done.told) == (0, 0, 0)
    assert deposits(engine) == 1
    assert charges(engine) == 1
    assert len(outbound(engine)) == 1
    assert count(engine, GatewayEvent) == 1
    assert verify_ledger(database_url).exit_code == 0


@pytest.mark.parametrize(
    "case",
    [
        ("card_declined", "insufficient_funds", "card ...3220 was declined (insufficient funds)"),
        ("expired_card", None, "card ...3220 was declined (card expired)"),
    ],
)
def test_payment_intent_payment_failed_gives_the_decline_text_and_no_credit(
    web: Web, hasty: Flask, pending_yes: dict[str, Any], case: tuple[str, str | None, str]
) -> None:
    client, admin, engine, stripe_events = web.client, web.admin, web.engine, web.events
    code, decline_code, words = case
    attempt = pending_yes["attempt"]
    intent = declined_intent(attempt, code, decline_code)
    deliver(client, stripe_events, "payment_intent.payment_failed", intent)

    [failed] = attempts(engine)
    assert failed.status == AttemptStatus.DECLINED.value
    assert failed.decline_reason == (decline_code or code)
    assert deposits(engine) == 0
    assert balance(admin, pending_yes["id"]) == 310
    assert prompt_status(engine, pending_yes["prompt_id"]) == "failed"
    [text] = outbound(engine)
    assert words in text.body
    assert "Nothing was charged" in text.body
    # A success reported after it for the same attempt changes nothing (and is logged).
    deliver(client, stripe_events, "payment_intent.succeeded", payment_intent(attempt))
    parts = hasty.extensions["textpay"]
    with freeze_time(utcnow() + timedelta(seconds=31)):
        done = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
    assert (done.settled, done.still_pending, done.told) == (0, 0, 0)
    assert deposits(engine) == 0
    assert len(outbound(engine)) == 1


def test_the_same_event_delivered_five_times_applies_once(
    client: FlaskClient,
    engine: Engine,
    stripe_events: StripeStandIn,
    pending_yes: dict[str, Any],
) -> None:
    payload, signature = stripe_events.event(
        "payment_intent.succeeded", payment_intent(pending_yes["attempt"])
    )
    answers = [post(client, payload, signature) for _ in range(5)]
    assert [(a.status_code, a.get_json()) for a in answers] == [(200, {"received": True})] * 5
    assert deposits(engine) == 1
    assert len(outbound(engine)) == 1
    assert count(engine, GatewayEvent) == 1


@pytest.mark.postgres_only
def test_five_deliveries_of_one_event_at_once_apply_once(
    app: Flask,
    engine: Engine,
    stripe_events: StripeStandIn,
    pending_yes: dict[str, Any],
    database_url: str,
) -> None:
    payload, signature = stripe_events.event(
        "payment_intent.succeeded", payment_intent(pending_yes["attempt"])
    )
    start = threading.Barrier(5, timeout=30)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def one() -> None:
        own = app.test_client()
        start.wait()
        response = post(own, payload, signature)
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert answers == [(200, {"received": True})] * 5
    assert deposits(engine) == 1
    assert len(outbound(engine)) == 1
    assert count(engine, GatewayEvent) == 1
    assert verify_ledger(database_url).exit_code == 0


# -- disputes --


def charged(web: Web) -> dict[str, Any]:
    """Mom's ...4821 (AutoPay on) topped up $25.00 by YES with tok_visa; Dad's ...7730 has the same
    card on file with AutoPay on; the neighbour's ...9100 another card, AutoPay on too."""
    twilio, admin, engine, offer = web.twilio, web.admin, web.engine, web.offer
    mom = admin.enrol(autopay_enabled=True)
    dad = admin.enrol(account_number="ACCT-7730", phone=DAD, nickname="Dad", autopay_enabled=True)
    other = admin.enrol(
        account_number="ACCT-9100",
        phone="+13125550123",
        autopay_enabled=True,
        payment_method={"token": "tok_mastercard"},
    )
    admin.credit(mom["id"], 310, "seed")
    offer(mom["id"])
    assert "added $25.00 to acct ...4821" in twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    assert attempt.status == AttemptStatus.SUCCEEDED.value
    return {"mom": mom, "dad": dad, "other": other, "attempt": attempt}


def autopay(admin: AdminClient, account_id: int) -> bool:
    value: bool = admin.get(f"/admin/accounts/{account_id}").get_json()["autopay_enabled"]
    return value


def test_a_dispute_turns_autopay_off_with_a_text_posts_nothing_and_blocks_nothing(
    web: Web, database_url: str
) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    stripe_events, offer = web.events, web.offer
    with freeze_time(NOON_NEW_YORK):
        setup = charged(web)
        mom, dad, other, attempt = setup["mom"], setup["dad"], setup["other"], setup["attempt"]
        entries = ledger_entries(engine)
        texts = len(outbound(engine))
        dispute = dispute_of(attempt)
        deliver(client, stripe_events, "charge.dispute.created", dispute)

        # Posts nothing: the money stays where it is until the bank decides.
        assert ledger_entries(engine) == entries
        assert balance(admin, mom["id"]) == 2810
        # AutoPay off on both accounts with the disputed card; the other card's stays on.
        assert (autopay(admin, mom["id"]), autopay(admin, dad["id"])) == (False, False)
        assert autopay(admin, other["id"]) is True
        new = outbound(engine)[texts:]
        assert sorted(m.phone for m in new) == sorted([MOM, DAD])
        for message in new:
            assert message.kind == "autopay_off_dispute"
            assert message.status == "pending"
            assert message.send_after == utcnow()  # noon: no reason to wait
            assert "AutoPay is off" in message.body
            assert "card ...4242 is disputed with your bank" in message.body
            assert "YES" in message.body
            assert "reply AUTOPAY ON" in message.body
        with unit_of_work(engine) as session:
            trail = session.exec(
                select(AuditLogEntry).where(AuditLogEntry.action == "account.autopay_off_dispute")
            ).all()
            assert sorted(int(e.entity_id) for e in trail) == sorted([mom["id"], dad["id"]])
            assert {e.actor for e in trail} == {"gateway"}
            assert all(e.before and e.before["autopay_enabled"] for e in trail)
            assert all(e.after and not e.after["autopay_enabled"] for e in trail)

        # On the account, for the operator; the account itself is untouched.
        shown = admin.get(f"/admin/accounts/{mom['id']}").get_json()
        assert shown["status"] == "active"
        [listed] = shown["disputes"]
        assert listed["amount_cents"] == 2500
        assert (listed["reason"], listed["status"], listed["closed_at"]) == (
            "fraudulent",
            "needs_response",
            None,
        )
        assert admin.get(f"/admin/accounts/{dad['id']}").get_json()["disputes"] == []

        # The same dispute told again (a redelivery, or another event naming it) changes nothing.
        deliver(client, stripe_events, "charge.dispute.created", dispute)
        assert len(outbound(engine)) == texts + 2
        assert count(engine, Dispute) == 1

        # YES still charges and credits.
        offer(mom["id"])
        assert "added $25.00 to acct ...4821 (Mom). New balance $53.10" in twilio.text(MOM, "YES")
        assert deposits(engine) == 2

        # The bank decides: recorded, nothing posted, nobody texted.
        texts = len(outbound(engine))
        entries = ledger_entries(engine)
        deliver(client, stripe_events, "charge.dispute.closed", dict(dispute, status="lost"))
        [closed] = admin.get(f"/admin/accounts/{mom['id']}").get_json()["disputes"]
        assert closed["status"] == "lost"
        assert closed["closed_at"] is not None
        assert ledger_entries(engine) == entries
        assert len(outbound(engine)) == texts
    assert verify_ledger(database_url).exit_code == 0


def test_the_dispute_text_waits_for_morning_and_is_withheld_after_stop(web: Web) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    stripe_events = web.events
    with freeze_time(NOON_NEW_YORK):
        setup = charged(web)
        twilio.text(DAD, "STOP")
    with freeze_time(LATE_EVENING_NEW_YORK):
        texts = len(outbound(engine))
        deliver(client, stripe_events, "charge.dispute.created", dispute_of(setup["attempt"]))
        new = {m.phone: m for m in outbound(engine)[texts:]}
        assert new[MOM].status == "pending"
        assert new[MOM].send_after is not None
        assert new[MOM].send_after > utcnow()  # TextPay's own text: not at 10:30pm
        assert new[DAD].status == "withheld"  # Dad said STOP: logged, never sent
        assert not autopay(admin, setup["dad"]["id"])


def test_spanish_subscribers_are_told_in_spanish(web: Web) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    stripe_events, offer = web.events, web.offer
    account = admin.enrol(language="es", autopay_enabled=True)
    admin.credit(account["id"], 310, "seed")
    offer(account["id"])
    twilio.text(MOM, "SI")
    [attempt] = attempts(engine)
    texts = len(outbound(engine))
    deliver(client, stripe_events, "charge.dispute.created", dispute_of(attempt))
    [text] = outbound(engine)[texts:]
    assert "AutoPay se desactivo" in text.body or "AutoPay se desactivó" in text.body
    assert "AUTOPAY ON" in text.body


def test_a_dispute_on_a_charge_named_by_its_charge_id_is_found(web: Web) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    stripe_events, offer = web.events, web.offer
    # Disputes on older charges name the charge only (`payment_intent: null`).
    account = admin.enrol()
    admin.credit(account["id"], 310, "seed")
    offer(account["id"])
    twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    dispute = dispute_of(attempt, payment_intent=None, charge=attempt.charge_id)
    deliver(client, stripe_events, "charge.dispute.created", dispute)
    [listed] = admin.get(f"/admin/accounts/{account['id']}").get_json()["disputes"]
    assert listed["status"] == "needs_response"
    with unit_of_work(engine) as session:
        account_row = session.get(Account, account["id"])
        assert account_row is not None
        assert account_row.status == "active"


# -- refunds --


def test_a_refund_made_in_stripes_dashboard_is_debited_once_and_texted(
    web: Web, database_url: str
) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    account = admin.enrol()
    admin.credit(account["id"], 310, "seed")
    web.offer(account["id"])
    twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    texts = len(outbound(engine))
    refund = example(
        "refund",
        id="re_TextPayWebhookTest0001",
        amount=1000,
        payment_intent=attempt.charge_id,
        status="succeeded",
        metadata={},
    )
    charge = example(
        "charge",
        payment_intent=attempt.charge_id,
        amount=2500,
        amount_refunded=1000,
        refunded=False,
        refunds={"object": "list", "data": [refund], "has_more": False, "total_count": 1,
                 "url": "/v1/charges/ch_x/refunds"},
    )  # fmt: skip
    _, payload, _ = deliver(client, web.events, "charge.refunded", charge)
    assert balance(admin, account["id"]) == 2810 - 1000
    kinds = [e["kind"] for e in admin.get(f"/admin/accounts/{account['id']}/ledger").get_json()
             ["entries"]]  # fmt: skip
    assert kinds.count("card_refund") == 1
    [text] = outbound(engine)[texts:]
    assert "$10.00 was refunded to card ...4242" in text.body

    # Told again: the same event, and the refund's own event.
    assert post(client, payload, web.events.sign(payload)).status_code == 200
    deliver(client, web.events, "refund.updated", refund)
    assert balance(admin, account["id"]) == 1810
    assert len(outbound(engine)) == texts + 1
    assert verify_ledger(database_url).exit_code == 0


def test_a_refund_textpay_made_reported_back_by_stripe_moves_nothing_more(
    web: Web, database_url: str
) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    account = admin.enrol()
    admin.credit(account["id"], 310, "seed")
    web.offer(account["id"])
    twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    entries = admin.get(f"/admin/accounts/{account['id']}/ledger").get_json()["entries"]
    [deposit] = [e for e in entries if e["kind"] == "deposit"]
    made = admin.post(
        f"/admin/accounts/{account['id']}/card-refunds",
        json={"deposit_id": deposit["id"], "amount_cents": 500, "reason": "dropped calls"},
        headers={"Idempotency-Key": "refund-1"},
    )
    assert made.status_code in {200, 201}, made.get_json()
    assert balance(admin, account["id"]) == 2310
    texts = len(outbound(engine))
    with unit_of_work(engine) as session:
        [ours] = session.exec(select(CardRefund)).all()
        key, refund_id = ours.idempotency_key, ours.refund_id
    refund = example(
        "refund",
        id=refund_id,
        amount=500,
        payment_intent=attempt.charge_id,
        status="succeeded",
        metadata={"textpay_key": key},
    )
    deliver(client, web.events, "refund.updated", refund)
    charge = example(
        "charge",
        payment_intent=attempt.charge_id,
        refunds={"object": "list", "data": [refund], "has_more": False, "total_count": 1,
                 "url": "/v1/charges/ch_x/refunds"},
    )  # fmt: skip
    deliver(client, web.events, "charge.refunded", charge)
    assert balance(admin, account["id"]) == 2310
    assert len(outbound(engine)) == texts
    assert verify_ledger(database_url).exit_code == 0


# -- hostile: odd values in signed events --


@pytest.mark.parametrize("where", ["key", "refund_charge", "refund_id", "dispute_charge"])
def test_a_nul_in_a_signed_events_ids_is_acknowledged_not_a_server_error(
    web: Web, where: str, database_url: str
) -> None:
    # PostgreSQL refuses NUL even in a query's parameter: a 500 would have Stripe redeliver the
    # event for days, failing each time.
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    account = admin.enrol()
    admin.credit(account["id"], 310, "seed")
    web.offer(account["id"])
    twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    refund = example("refund", id="re_Nul0001", amount=500, payment_intent=attempt.charge_id,
                     status="succeeded", metadata={})  # fmt: skip
    type_, obj = {
        "key": ("payment_intent.succeeded", example("payment_intent",
                                                    metadata={"textpay_key": "tp_\x00"})),
        "refund_charge": ("refund.updated", dict(refund, payment_intent="pi_\x00")),
        "refund_id": ("refund.updated", dict(refund, id="re_\x00",
                                             metadata={"textpay_key": "\x00"})),
        "dispute_charge": ("charge.dispute.created", dispute_of(attempt, payment_intent="pi_\x00",
                                                                charge=None)),
    }[where]  # fmt: skip
    deliver(client, web.events, type_, obj)
    assert count(engine, GatewayEvent) == 1
    assert balance(admin, account["id"]) == 2810
    assert count(engine, Dispute) == 0
    assert verify_ledger(database_url).exit_code == 0


def test_a_refund_stripe_reports_failed_after_it_succeeded_gives_the_money_back(
    web: Web, database_url: str
) -> None:
    twilio, client, admin, engine = web.twilio, web.client, web.admin, web.engine
    account = admin.enrol()
    admin.credit(account["id"], 310, "seed")
    web.offer(account["id"])
    twilio.text(MOM, "YES")
    [attempt] = attempts(engine)
    refund = example("refund", id="re_LateFail001", amount=1000, payment_intent=attempt.charge_id,
                     status="succeeded", metadata={})  # fmt: skip
    deliver(client, web.events, "refund.created", refund)
    assert balance(admin, account["id"]) == 1810
    failed = dict(refund, status="failed", failure_reason="expired_or_canceled_card")
    deliver(client, web.events, "refund.failed", failed)
    deliver(client, web.events, "charge.refund.updated", failed)
    assert balance(admin, account["id"]) == 2810
    assert verify_ledger(database_url).exit_code == 0


def early_refund(intent: dict[str, Any], *, refund_id: str = "re_Early0001") -> dict[str, Any]:
    """A dashboard refund of $10.00 of `intent`, as a `charge.refunded` event's charge."""
    refund = example("refund", id=refund_id, amount=1000, payment_intent=intent["id"],
                     status="succeeded", metadata={})  # fmt: skip
    return example(
        "charge",
        payment_intent=intent["id"],
        metadata=intent["metadata"],  # Stripe copies the PaymentIntent's metadata to its charge
        refunds={"object": "list", "data": [refund], "has_more": False, "total_count": 1,
                 "url": "/v1/charges/ch_x/refunds"},
    )  # fmt: skip


def test_a_refund_reported_before_the_charges_success_is_still_debited(
    web: Web, hasty: Flask, pending_yes: dict[str, Any], database_url: str
) -> None:
    # Stripe does not order its events: the refund of a charge still pending here (the YES timed
    # out) can come before the charge's success. It proves the charge succeeded.
    client, admin, engine = web.client, web.admin, web.engine
    intent = payment_intent(pending_yes["attempt"])
    deliver(client, web.events, "charge.refunded", early_refund(intent))
    [settled] = attempts(engine)
    assert settled.status == AttemptStatus.SUCCEEDED.value
    assert settled.charge_id == intent["id"]
    assert balance(admin, pending_yes["id"]) == 310 + 2500 - 1000
    assert prompt_status(engine, pending_yes["prompt_id"]) == "funded"
    receipt, refunded = outbound(engine)
    assert receipt.kind == "receipt"
    assert "added $25.00 to acct ...4821" in receipt.body
    assert "$10.00 was refunded to card" in refunded.body

    # The success comes after it, then the reconciler: nothing more.
    deliver(client, web.events, "payment_intent.succeeded", intent)
    parts = hasty.extensions["textpay"]
    with freeze_time(utcnow() + timedelta(seconds=31)):
        done = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
    assert (done.settled, done.still_pending, done.told) == (0, 0, 0)
    assert balance(admin, pending_yes["id"]) == 310 + 2500 - 1000
    assert deposits(engine) == 1
    assert count(engine, LedgerEntry, LedgerEntry.kind == "card_refund") == 1
    assert len(outbound(engine)) == 2
    assert verify_ledger(database_url).exit_code == 0


def test_a_refund_event_whose_payment_intent_is_expanded_settles_a_pending_charge_too(
    web: Web, pending_yes: dict[str, Any], database_url: str
) -> None:
    client, admin, engine = web.client, web.admin, web.engine
    intent = payment_intent(pending_yes["attempt"])
    refund = example("refund", id="re_Early0002", amount=1000, payment_intent=intent,
                     status="succeeded", metadata={})  # fmt: skip
    deliver(client, web.events, "refund.created", refund)
    deliver(client, web.events, "payment_intent.succeeded", intent)
    assert balance(admin, pending_yes["id"]) == 310 + 2500 - 1000
    assert deposits(engine) == 1
    assert verify_ledger(database_url).exit_code == 0


def test_a_refund_reported_after_the_charges_success_is_debited_once(
    web: Web, pending_yes: dict[str, Any], database_url: str
) -> None:
    client, admin, engine = web.client, web.admin, web.engine
    intent = payment_intent(pending_yes["attempt"])
    deliver(client, web.events, "payment_intent.succeeded", intent)
    deliver(client, web.events, "charge.refunded", early_refund(intent))
    assert balance(admin, pending_yes["id"]) == 310 + 2500 - 1000
    assert deposits(engine) == 1
    assert count(engine, LedgerEntry, LedgerEntry.kind == "card_refund") == 1
    receipt, refunded = outbound(engine)
    assert receipt.kind == "receipt"
    assert "$10.00 was refunded to card" in refunded.body
    assert verify_ledger(database_url).exit_code == 0


def test_a_refund_of_a_charge_declined_here_changes_nothing_and_is_logged(
    web: Web, pending_yes: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, admin, engine = web.client, web.admin, web.engine
    attempt = pending_yes["attempt"]
    deliver(client, web.events, "payment_intent.payment_failed",
            declined_intent(attempt, "card_declined", "insufficient_funds"))  # fmt: skip
    texts = len(outbound(engine))
    entries = ledger_entries(engine)
    caplog.clear()
    # Found by the charge id its decline recorded, and by our key under another charge id.
    by_id = dict(payment_intent(attempt), metadata={})
    deliver(client, web.events, "charge.refunded", early_refund(by_id))
    by_key = dict(payment_intent(attempt), id="pi_SomeOtherName0001")
    deliver(client, web.events, "charge.refunded", early_refund(by_key, refund_id="re_Early0003"))
    [declined] = attempts(engine)
    assert declined.status == AttemptStatus.DECLINED.value
    assert balance(admin, pending_yes["id"]) == 310
    assert ledger_entries(engine) == entries
    assert len(outbound(engine)) == texts
    assert count(engine, CardRefund) == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert all("declined but gateway event" in r.getMessage() for r in errors)
