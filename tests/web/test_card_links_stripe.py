"""Card links on Stripe (issue 13): the card page's button sends the card holder to Stripe's
Checkout in setup mode, and Stripe's signed `checkout.session.completed` (its SetupIntent's
payment method) replaces the card once, audited as the subscriber's, confirmed by text.

Against the Stripe stand-in through the real SDK: the Checkout Session request is checked as the
contract says (and against Stripe's description, by the stand-in), the event is delivered as
Stripe signs it; a session can change only its own link's account; the raw token is in no
stored row, log line, metadata or idempotency key."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from werkzeug.test import TestResponse

from tests.conftest import AdminClient
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import MOM
from tests.web.test_card_links import (
    DAD,
    assert_secure,
    assert_token_stored_nowhere,
    csrf_of,
    link_in,
    open_page,
    outbound,
)
from tests.web.twilio_client import TwilioClient
from textpay import card_links
from textpay.accounts import payment_method_of
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import AuditLogEntry, CardLink
from textpay.payments import SandboxGateway
from textpay.timeutil import utcnow

SESSIONS = "/v1/checkout/sessions"
COMPLETED = "checkout.session.completed"


@pytest.fixture
def settings(stripe_settings: Settings) -> Settings:
    return stripe_settings


@pytest.fixture
def mom(admin: AdminClient) -> dict[str, Any]:
    return admin.enrol(
        account_number="ACCT-4821",
        phone="(212) 555-0147",
        nickname="Mom",
        payment_method={"token": "pm_card_visa"},
    )


# -- helpers --


def press(client: FlaskClient, token: str, csrf: str) -> TestResponse:
    """The page's one button: a form post with the page's CSRF value."""
    return client.post(f"/card/{token}", data={"csrf": csrf})


def to_checkout(client: FlaskClient, standin: StripeStandIn, token: str) -> str:
    """Open the page, press the button: Stripe's (the stand-in's) session id."""
    page = open_page(client, token)
    assert page.status_code == 200
    sent = press(client, token, csrf_of(page))
    assert sent.status_code == 303, sent.get_data(as_text=True)
    assert_secure(sent)
    location = sent.headers["Location"]
    assert location.startswith(f"{standin.url}/checkout/cs_test_")
    return location.rsplit("/", 1)[1]


def completed_event(standin: StripeStandIn, session_id: str, timeout: float = 5.0) -> bytes:
    """The `checkout.session.completed` the stand-in made for a session, as Stripe posts it."""
    deadline = time.monotonic() + timeout
    while True:
        for event in standin.events:
            if event["type"] == COMPLETED and event["data"]["object"]["id"] == session_id:
                return json.dumps(event, indent=2).encode()
        assert time.monotonic() < deadline, f"no {COMPLETED} for {session_id}"
        time.sleep(0.02)


def post_event(client: FlaskClient, standin: StripeStandIn, payload: bytes) -> TestResponse:
    response = client.post(
        "/stripe/webhook",
        data=payload,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": standin.sign(payload),
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True}
    return response


def card_of(engine: Engine, account_id: int) -> tuple[str, str, str | None]:
    with unit_of_work(engine) as session:
        method = payment_method_of(session, account_id)
        assert method is not None
        return method.token, method.last4, method.customer


def link_row(engine: Engine, token: str) -> CardLink:
    with unit_of_work(engine) as session:
        link = session.exec(
            select(CardLink).where(CardLink.token_hash == card_links.hash_token(token))
        ).one()[0]
        session.expunge(link)
        return link


def card_audits(engine: Engine) -> list[AuditLogEntry]:
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(AuditLogEntry).where(AuditLogEntry.action == "account.card_link")
        ).all()
        found = [r for (r,) in rows]
        session.expunge_all()
        return found


# -- the flow --


def test_card_on_stripe_goes_through_checkout_and_the_webhook_saves_the_card_once(
    *,
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    visa_pm, _, customer = card_of(engine, mom["id"])
    assert customer is not None
    assert customer.startswith("cus_")
    token = link_in(twilio.text(MOM, "CARD"))

    page = open_page(client, token)
    assert page.status_code == 200
    assert_secure(page)
    csp = page.headers["Content-Security-Policy"]
    assert f"form-action 'self' https://checkout.stripe.com {stripe_standin.url};" in csp
    html = page.get_data(as_text=True)
    for shown in ("...4821", "Visa ...4242", "Enter a new card", "never sees the card number"):
        assert shown in html
    assert 'type="radio"' not in html  # no sandbox test cards on Stripe
    assert "<script" not in html
    customers_before = len(stripe_standin.sent("/v1/customers"))

    session_id = to_checkout(client, stripe_standin, token)

    # The Checkout Session as the contract says, under a key made from the link's reference.
    [request] = stripe_standin.sent(SESSIONS)
    reference = card_links.hash_token(token)
    metadata = {"textpay_card_link": reference, "textpay_account": "ACCT-4821"}
    assert request.params == {
        "mode": "setup",
        "customer": customer,
        "payment_method_types": ["card"],
        "success_url": f"http://localhost/card/{token}/done",
        "cancel_url": f"http://localhost/card/{token}",
        "locale": "en",
        "metadata": metadata,
        "setup_intent_data": {"metadata": metadata},
    }
    assert request.idempotency_key == f"textpay-card-setup-{reference}"
    assert token not in request.idempotency_key
    assert token not in json.dumps(request.params["metadata"])
    assert len(stripe_standin.sent("/v1/customers")) == customers_before  # hers is reused
    assert link_row(engine, token).checkout_session_id == session_id

    # Back from Stripe before its event: nothing saved yet, and the page says so.
    back = client.get(f"/card/{token}/done")
    assert back.status_code == 200
    assert_secure(back)
    assert "We will text you as soon as it is on file" in back.get_data(as_text=True)
    assert card_of(engine, mom["id"])[0] == visa_pm
    assert outbound(engine, "card_updated") == []

    # The card holder saves a Mastercard on Stripe's page; Stripe's event saves it here.
    stripe_standin.complete_checkout(session_id, "pm_card_mastercard")
    [intent] = stripe_standin.setup_intents.values()
    payload = completed_event(stripe_standin, session_id)
    post_event(client, stripe_standin, payload)

    assert card_of(engine, mom["id"]) == (intent["payment_method"], "4444", customer)
    [confirmation] = outbound(engine, "card_updated")
    assert confirmation.body == "TextPay: card ...4444 is now on file for acct ...4821 (Mom). " \
        "Text BAL anytime."  # fmt: skip
    [entry] = card_audits(engine)
    assert entry.actor == "subscriber"
    assert entry.entity_id == str(mom["id"])
    assert entry.before["payment_method"]["last4"] == "4242"
    assert entry.after["payment_method"]["last4"] == "4444"
    assert stripe_standin.sent(f"/v1/setup_intents/{intent['id']}", "GET")

    done = client.get(f"/card/{token}/done")
    assert "Card ...4444 is now on file for account ...4821" in done.get_data(as_text=True)

    # However often it is delivered (the same event again, or another event for the same
    # session), the card is changed once and confirmed once.
    post_event(client, stripe_standin, payload)
    again, _ = stripe_standin.event(COMPLETED, json.loads(payload)["data"]["object"])
    post_event(client, stripe_standin, again)
    assert len(outbound(engine, "card_updated")) == 1
    assert len(card_audits(engine)) == 1
    assert card_of(engine, mom["id"])[0] == intent["payment_method"]

    # The link is used: its page and its form answer 410.
    assert open_page(client, token).status_code == 410
    assert press(client, token, csrf_of(page)).status_code == 410
    assert len(stripe_standin.sent(SESSIONS)) == 1

    assert_token_stored_nowhere(engine, token)
    assert not [r for r in caplog.records if token in r.getMessage()]


def test_a_second_press_gets_the_same_checkout_page(
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    first = to_checkout(client, stripe_standin, token)
    second = to_checkout(client, stripe_standin, token)  # back from Stripe, pressed again
    assert first == second
    assert [r.replayed for r in stripe_standin.sent(SESSIONS)] == [False, True]
    assert len(stripe_standin.checkout_sessions) == 1
    assert link_row(engine, token).checkout_session_id == first


def test_an_account_with_no_card_gets_a_stripe_customer_for_its_checkout(
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    stripe_standin: StripeStandIn,
) -> None:
    body = {"account_number": "ACCT-4821", "phone": "(212) 555-0147", "nickname": "Mom"}
    response = admin.post("/admin/accounts", json=body)
    assert response.status_code == 201, response.get_json()
    account = response.get_json()
    token = link_in(twilio.text(MOM, "CARD"))
    assert "No card on file yet." in open_page(client, token).get_data(as_text=True)

    session_id = to_checkout(client, stripe_standin, token)
    [made] = stripe_standin.sent("/v1/customers")
    reference = card_links.hash_token(token)
    assert made.idempotency_key == f"textpay-card-setup-customer-{reference}"
    assert made.params["metadata"] == {"textpay_account": "ACCT-4821"}
    [customer] = stripe_standin.customers
    assert stripe_standin.checkout_sessions[session_id]["customer"] == customer

    stripe_standin.complete_checkout(session_id, "pm_card_visa")
    post_event(client, stripe_standin, completed_event(stripe_standin, session_id))
    token_on_file, last4, owner = card_of(engine, account["id"])
    assert (last4, owner) == ("4242", customer)
    assert stripe_standin.payment_methods[token_on_file]["customer"] == customer


def test_a_session_changes_only_its_own_links_account(
    *,
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    dad = admin.enrol(
        account_number="ACCT-7730",
        phone=DAD,
        nickname="Dad",
        payment_method={"token": "pm_card_visa"},
    )
    moms = link_in(twilio.text(MOM, "CARD"))
    dads = link_in(twilio.text(DAD, "CARD"))
    mom_session = to_checkout(client, stripe_standin, moms)
    dad_session = to_checkout(client, stripe_standin, dads)
    mom_card, dad_card = card_of(engine, mom["id"]), card_of(engine, dad["id"])

    # Mom's session, but carrying Dad's link reference (nothing we made): refused.
    stripe_standin.complete_checkout(mom_session, "pm_card_mastercard")
    crossed = json.loads(completed_event(stripe_standin, mom_session))["data"]["object"]
    crossed["metadata"]["textpay_card_link"] = card_links.hash_token(dads)
    post_event(client, stripe_standin, stripe_standin.event(COMPLETED, crossed)[0])
    # A setup session no card link of ours started (another integration's): ignored.
    foreign = {**crossed, "id": "cs_test_other", "metadata": {}}
    post_event(client, stripe_standin, stripe_standin.event(COMPLETED, foreign)[0])
    assert card_of(engine, mom["id"]) == mom_card
    assert card_of(engine, dad["id"]) == dad_card
    assert outbound(engine, "card_updated") == []

    # Dad's own session changes Dad's card, and Mom's stays.
    stripe_standin.complete_checkout(dad_session, "pm_card_mastercard")
    post_event(client, stripe_standin, completed_event(stripe_standin, dad_session))
    assert card_of(engine, dad["id"])[1] == "4444"
    assert card_of(engine, mom["id"]) == mom_card
    [confirmation] = outbound(engine, "card_updated")
    assert confirmation.phone == DAD
    assert "acct ...7730" in confirmation.body


def test_a_checkout_finished_after_the_links_thirty_minutes_still_saves_the_card(
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    """The 30 minutes bound starting Stripe's page; a card holder still typing on it when they
    run out has typed the card on the page this link opened, so the card is saved."""
    with freeze_time(utcnow()) as clock:
        token = link_in(twilio.text(MOM, "CARD"))
        clock.tick(timedelta(minutes=29))
        session_id = to_checkout(client, stripe_standin, token)
        clock.tick(timedelta(minutes=5))
        assert open_page(client, token).status_code == 410  # expired for a new start
        stripe_standin.complete_checkout(session_id, "pm_card_mastercard")
        post_event(client, stripe_standin, completed_event(stripe_standin, session_id))
    assert card_of(engine, mom["id"])[1] == "4444"
    assert len(outbound(engine, "card_updated")) == 1


def test_a_forged_csrf_value_starts_no_checkout(
    twilio: TwilioClient,
    client: FlaskClient,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    page = open_page(client, token)
    for csrf in ("", "x" * 32, csrf_of(page)[:-1]):
        refused = press(client, token, csrf)
        assert refused.status_code == 400
        assert_secure(refused)
    assert stripe_standin.sent(SESSIONS) == []
    assert client.get("/card/" + "A" * 43 + "/done").status_code == 404
    # A link whose checkout was never started has no "done" page.
    assert client.get(f"/card/{token}/done").status_code == 404


def test_stripe_out_of_reach_starts_nothing_and_the_link_still_works(
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    page = open_page(client, token)
    port = stripe_standin.port
    stripe_standin.stop()
    try:
        refused = press(client, token, csrf_of(page))
        assert refused.status_code == 503
        assert "did not answer" in refused.get_data(as_text=True)
        assert link_row(engine, token).checkout_session_id is None
    finally:
        stripe_standin.start(port)
    assert to_checkout(client, stripe_standin, token)


def test_spanish_checkout_page_and_locale(
    *,
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    admin.patch(f"/admin/accounts/{mom['id']}", json={"language": "es"})
    token = link_in(twilio.text(MOM, "TARJETA"))
    html = open_page(client, token).get_data(as_text=True)
    assert "Ingresar una tarjeta nueva" in html
    session_id = to_checkout(client, stripe_standin, token)
    assert stripe_standin.sent(SESSIONS)[0].params["locale"] == "es"
    assert "Le enviaremos" in client.get(f"/card/{token}/done").get_data(as_text=True)
    stripe_standin.complete_checkout(session_id)
    post_event(client, stripe_standin, completed_event(stripe_standin, session_id))
    [confirmation] = outbound(engine, "card_updated")
    assert "4444" in confirmation.body


def test_the_sandbox_hosts_no_card_page(engine: Engine) -> None:
    gateway = SandboxGateway(engine)
    assert gateway.hosted_card_setup is False
    with pytest.raises(NotImplementedError):
        gateway.start_card_setup(customer=None, account_ref="ACCT-4821", success_url="x",
                                 cancel_url="x", reference="r", language="en")  # fmt: skip
    with pytest.raises(NotImplementedError):
        gateway.card_from_setup("seti_x")
