"""Card links on Stripe attacked (issue 13): a `checkout.session.completed` replayed under a new
event id, a completion after the account left the number the link was texted to, and the card
pages' Content-Security-Policy allowing a form's redirect to Stripe's Checkout host only."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.standin.stripe import StripeStandIn
from tests.web.conftest import MOM
from tests.web.test_card_links import DAD, link_in, open_page, outbound
from tests.web.test_card_links_stripe import (
    COMPLETED,
    card_audits,
    card_of,
    completed_event,
    post_event,
    to_checkout,
)
from tests.web.twilio_client import TwilioClient
from textpay.config import Settings


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


def test_a_completion_replayed_under_another_event_id_saves_once_and_texts_once(
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    session_id = to_checkout(client, stripe_standin, link_in(twilio.text(MOM, "CARD")))
    stripe_standin.complete_checkout(session_id, "pm_card_mastercard")
    original = completed_event(stripe_standin, session_id)
    post_event(client, stripe_standin, original)
    assert card_of(engine, mom["id"])[1] == "4444"
    saved = card_of(engine, mom["id"])
    # The same session, signed again under a new event id (Stripe's own retry keeps the id;
    # this is a replay of the object): nothing changes again.
    obj = json.loads(original)["data"]["object"]
    replayed, _ = stripe_standin.event(COMPLETED, obj)
    assert json.loads(replayed)["id"] != json.loads(original)["id"]
    post_event(client, stripe_standin, replayed)
    assert card_of(engine, mom["id"]) == saved
    assert len(outbound(engine, "card_updated")) == 1
    assert len(card_audits(engine)) == 1


def test_a_completion_after_the_account_moved_to_another_number_changes_nothing(
    *,
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    mom: dict[str, Any],
    stripe_standin: StripeStandIn,
) -> None:
    before = card_of(engine, mom["id"])
    session_id = to_checkout(client, stripe_standin, link_in(twilio.text(MOM, "CARD")))
    moved = admin.patch(f"/admin/accounts/{mom['id']}", json={"phone": DAD})
    assert moved.status_code == 200, moved.get_json()
    stripe_standin.complete_checkout(session_id, "pm_card_mastercard")
    post_event(client, stripe_standin, completed_event(stripe_standin, session_id))
    assert card_of(engine, mom["id"]) == before
    assert outbound(engine, "card_updated") == []
    assert card_audits(engine) == []


def test_the_policy_lets_the_form_reach_stripe_s_checkout_and_nothing_else(
    twilio: TwilioClient, client: FlaskClient, mom: dict[str, Any], stripe_standin: StripeStandIn
) -> None:
    page = open_page(client, link_in(twilio.text(MOM, "CARD")))
    html = page.get_data(as_text=True)
    assert "<script" not in html
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handler either
    directives = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    assert directives["default-src"] == "'none'"  # no script-src: every script is blocked
    assert "script-src" not in directives
    sources = directives["form-action"].split()
    assert sources[:2] == ["'self'", "https://checkout.stripe.com"]
    assert set(sources[2:]) <= {stripe_standin.url}  # the stand-in's own Checkout pages
    assert "*" not in directives["form-action"]
    assert "https:" not in sources
