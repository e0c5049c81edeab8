"""Stripe's webhook: `POST /stripe/webhook`.

Stripe signs the exact bytes it posts (`Stripe-Signature: t=<time>,v1=<HMAC>` with the
endpoint's signing secret, `STRIPE_WEBHOOK_SECRET`), so the raw body is read as it came and
checked before anything in it is believed: a missing or wrong signature, or one older than five
minutes (a replay), answers 400 and nothing is read or recorded. A verified event is applied in
one transaction by `textpay.card_events` (each event id once) and answered 200
`{"received": true}`, duplicates and types TextPay ignores included: any other answer makes
Stripe retry for days. Only a failure on our side (the database) answers 5xx, so that Stripe
retries it; nothing a sender puts in a request can.

`checkout.session.completed` for a card link's Checkout Session does not say which card was
saved: the gateway is asked (`card_from_setup`: the SetupIntent's payment method) before the
transaction opens, and Stripe out of reach answers 503 so that the event comes again.

This blueprint has neither the Twilio signature check nor the admin token: its own signature is
its authentication. With no secret configured it does not exist (404): without one no request
could ever be verified.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from flask import Blueprint, Response, jsonify, request

from textpay import card_events
from textpay.errors import GatewayUnavailable
from textpay.logsafe import printable
from textpay.payments import CardInfo, GatewayTimeout, UnknownCard
from textpay.payments.events import CardSetupCompleted
from textpay.payments.stripe_events import BadSignature, MalformedEvent, verify
from textpay.timeutil import utcnow
from webhooks.problems import Problem
from webhooks.services import request_engine_config, services
from webhooks.transactions import in_transaction

bp = Blueprint("stripe", __name__, url_prefix="/stripe")
log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
# Stripe's events are a few kilobytes, but a charge carries its refunds and every object its
# metadata (up to 50 keys of 500 characters): more room than the admin API's 64 KiB, and a
# bound all the same, since the body must be read before it can be verified.
MAX_EVENT_BYTES = 1024 * 1024


@bp.before_request
def _configured() -> None:
    if not services().settings.stripe_webhook_secret:
        raise Problem(
            "not-found",
            "Stripe webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET is not set).",
        )
    request.max_content_length = MAX_EVENT_BYTES


@bp.post("/webhook")
def webhook() -> Response:
    found = services()
    secret = found.settings.stripe_webhook_secret
    assert secret is not None  # `_configured`
    payload = request.get_data(cache=False)
    try:
        event = verify(payload, request.headers.get(SIGNATURE_HEADER), secret)
    except BadSignature:
        raise Problem(
            "bad-signature",
            "Missing or invalid Stripe-Signature, or one older than five minutes.",
        ) from None
    except MalformedEvent as error:
        # Signed by Stripe, so retrying cannot make it readable: acknowledged, and logged.
        log.warning("stripe webhook: %s; acknowledged and ignored", error)
        return jsonify(received=True)
    fact = event.fact
    if isinstance(fact, CardSetupCompleted):
        # Which card the page saved is Stripe's to say: asked now, before the transaction (no
        # transaction is held across a network call). A redelivery asks again; applying is
        # still once per event id.
        card = _saved_card(fact.setup_ref)
        if card is None:
            log.warning("stripe event %s: its SetupIntent saved no card; acknowledged",
                        printable(event.event_id))  # fmt: skip
            return jsonify(received=True)
        fact = replace(fact, card=card)
    config = request_engine_config()
    outcome = in_transaction(
        lambda session: card_events.apply(
            session, event.event_id, event.type, fact, now=utcnow(), config=config
        )
    )
    log.info("stripe event %s (%s): %s", printable(event.event_id), printable(event.type, 100),
             outcome.value)  # fmt: skip
    return jsonify(received=True)


def _saved_card(setup_ref: str) -> CardInfo | None:
    """The card a SetupIntent saved; None when Stripe says there is none (no retry can make
    one). Stripe out of reach answers 503, so that Stripe delivers the event again later."""
    try:
        return services().gateway.card_from_setup(setup_ref)
    except (UnknownCard, NotImplementedError):  # NotImplemented: a gateway with no card pages
        return None
    except (GatewayTimeout, GatewayUnavailable):
        raise Problem(
            "gateway-unavailable", "Stripe did not say which card was saved; deliver again."
        ) from None
