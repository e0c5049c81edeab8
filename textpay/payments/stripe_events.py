"""Stripe's webhook events: checking `Stripe-Signature` and reading an event as a neutral fact.

Owns the one place besides `textpay.payments.stripe` that knows Stripe's objects. `verify`
checks the signature and its timestamp with Stripe's own SDK (`stripe.Webhook.construct_event`,
five minutes' tolerance) and translates the event into a `textpay.payments.events` fact:

| Stripe event | fact |
|---|---|
| `payment_intent.succeeded` | `ChargeSucceeded` (our key from the PaymentIntent's metadata) |
| `payment_intent.payment_failed` | `ChargeFailed` (the decline code, else the error code) |
| `charge.refunded`, `refund.created`, `.updated`, `.failed` | `RefundsReported` |
| `charge.refund.updated` | `RefundsReported` |
| `charge.dispute.created` | `DisputeOpened` |
| `charge.dispute.closed` | `DisputeClosed` |
| `checkout.session.completed` (mode `setup`, a card link's) | `CardSetupCompleted` |
| anything else | `Ignored` |

Stripe's payloads are read defensively: a signed event that lacks a field, or holds a value of
another type than Stripe documents, becomes `Ignored` (with the reason, for the log), never an
exception; a signed body that is not an event at all raises `MalformedEvent`. Anything whose
signature does not verify raises `BadSignature`, whatever is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textpay.payments.events import (
    CardEvent,
    CardSetupCompleted,
    ChargeFailed,
    ChargeSucceeded,
    DisputeClosed,
    DisputeOpened,
    Ignored,
    RefundsReported,
    VerifiedEvent,
)
from textpay.payments.gateway import GatewayRefund, RefundStatus

# Stripe's own default, and what its documentation recommends against replayed events.
TOLERANCE_SECONDS = 300
# The metadata field that carries our idempotency key on a PaymentIntent or a Refund (the same
# name as `textpay.funding.METADATA_KEY`, which this layer may not import).
KEY_FIELD = "textpay_key"
# The metadata field naming the card link that started a Checkout Session (the same name as
# `textpay.payments.stripe.CARD_LINK_FIELD`).
CARD_LINK_FIELD = "textpay_card_link"
# An amount no real charge reaches (a BIGINT column holds it; Stripe's limit is far below).
_MAX_CENTS = 10**12

_REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
_REFUND_STATUSES = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


class BadSignature(Exception):
    """The request is not a recent event signed with our webhook secret (no or a malformed
    `Stripe-Signature`, a signature that does not match, or a timestamp older than the
    tolerance). Nothing in it may be believed."""


class MalformedEvent(Exception):
    """A correctly signed body that is not an event TextPay can even name (no id or type)."""


def verify(payload: bytes, sig_header: str | None, secret: str) -> VerifiedEvent:
    """The event in `payload`, once its signature is checked. Raises `BadSignature` or
    `MalformedEvent`; nothing else."""
    # Stripe's SDK is imported at the first event, not with this module: the web app imports
    # this for its Stripe webhook route, and a server on the sandbox never needs the SDK.
    import stripe  # noqa: PLC0415

    try:
        event = stripe.Webhook.construct_event(
            payload, sig_header, secret, tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError:
        raise BadSignature("Stripe-Signature does not verify") from None
    except Exception as error:
        # `construct_event` checks the signature before it parses, but reports a body that is
        # not UTF-8 or a header that is not ASCII with other exceptions: only a second, plain
        # check tells a bad signature from a signed body that is not an event.
        if not _signed(payload, sig_header, secret):
            raise BadSignature("Stripe-Signature does not verify") from None
        raise MalformedEvent(f"signed body is not an event ({type(error).__name__})") from None
    try:
        data = event.to_dict()
    except Exception as error:
        raise MalformedEvent(f"signed body is not an event ({type(error).__name__})") from None
    event_id, kind = data.get("id"), data.get("type")
    if not _text(event_id) or not _text(kind):
        raise MalformedEvent("signed event without an id or a type")
    assert isinstance(event_id, str)
    assert isinstance(kind, str)
    if len(event_id) > 255 or len(kind) > 100:
        raise MalformedEvent("signed event with an id or type longer than Stripe's")
    return VerifiedEvent(event_id=event_id, type=kind, fact=translate(kind, data.get("data")))


def _signed(payload: bytes, sig_header: str | None, secret: str) -> bool:
    import stripe  # noqa: PLC0415  (see `verify`)

    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, TOLERANCE_SECONDS)
    except Exception:
        return False
    return True


def translate(kind: str, data: object) -> CardEvent:
    """The fact an event of type `kind` states, from its `data` member."""
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        return Ignored(kind, "no data.object")
    if kind == "payment_intent.succeeded":
        return _charge_succeeded(kind, obj)
    if kind == "payment_intent.payment_failed":
        return _charge_failed(kind, obj)
    if kind == "charge.refunded":
        return _charge_refunded(kind, obj)
    if kind in _REFUND_EVENTS:
        return _refund_changed(kind, obj)
    if kind == "charge.dispute.created":
        return _dispute_opened(kind, obj)
    if kind == "charge.dispute.closed":
        return _dispute_closed(kind, obj)
    if kind == "checkout.session.completed":
        return _checkout_completed(kind, obj)
    return Ignored(kind)


def _charge_succeeded(kind: str, intent: Mapping[str, Any]) -> CardEvent:
    key, pi_id = _our_key(intent), _id(intent)
    if key is None or pi_id is None:
        return Ignored(kind, "a PaymentIntent without our key (not TextPay's charge)")
    return ChargeSucceeded(idempotency_key=key, charge_id=pi_id)


def _charge_failed(kind: str, intent: Mapping[str, Any]) -> CardEvent:
    key = _our_key(intent)
    if key is None:
        return Ignored(kind, "a PaymentIntent without our key (not TextPay's charge)")
    error = intent.get("last_payment_error")
    reason = None
    if isinstance(error, Mapping):
        # Stripe's decline code says why the bank refused (insufficient_funds); the error code
        # is all there is for the rest (expired_card, authentication_required).
        reason = _text(error.get("decline_code")) or _text(error.get("code"))
    return ChargeFailed(idempotency_key=key, charge_id=_id(intent), reason=reason)


def _charge_refunded(kind: str, charge: Mapping[str, Any]) -> CardEvent:
    pi_id = _ref(charge.get("payment_intent"))
    if pi_id is None:
        return Ignored(kind, "a charge without a PaymentIntent")
    listed = charge.get("refunds")
    items = listed.get("data") if isinstance(listed, Mapping) else None
    refunds = [_refund(item) for item in items] if isinstance(items, list) else []
    return RefundsReported(
        charge_id=pi_id,
        refunds=tuple(r for r in refunds if r is not None),
        # The charge carries its PaymentIntent's metadata (Stripe copies it), else the
        # PaymentIntent itself does when it was expanded in place.
        charge_key=_our_key(charge) or _expanded_key(charge.get("payment_intent")),
    )


def _refund_changed(kind: str, refund: Mapping[str, Any]) -> CardEvent:
    pi_id = _ref(refund.get("payment_intent"))
    found = _refund(refund)
    if pi_id is None or found is None:
        return Ignored(kind, "a refund without a PaymentIntent, id, amount or known status")
    # The refund's own metadata holds the card refund's key, never the charge's: the charge's
    # key is known only from its PaymentIntent or charge, when either is expanded in place.
    charge_key = _expanded_key(refund.get("payment_intent")) or _expanded_key(refund.get("charge"))
    return RefundsReported(charge_id=pi_id, refunds=(found,), charge_key=charge_key)


def _refund(item: object) -> GatewayRefund | None:
    if not isinstance(item, Mapping):
        return None
    refund_id, amount = _id(item), _cents(item.get("amount"))
    status = _REFUND_STATUSES.get(_text(item.get("status")) or "")
    if refund_id is None or amount is None or status is None:
        return None
    return GatewayRefund(
        refund_id=refund_id, amount_cents=amount, status=status, idempotency_key=_our_key(item)
    )


def _dispute_opened(kind: str, dispute: Mapping[str, Any]) -> CardEvent:
    dispute_id, amount = _id(dispute), _cents(dispute.get("amount"))
    pi_id, ch_id = _ref(dispute.get("payment_intent")), _ref(dispute.get("charge"))
    charge_id = pi_id or ch_id
    if dispute_id is None or amount is None or charge_id is None:
        return Ignored(kind, "a dispute without an id, amount or charge")
    return DisputeOpened(
        dispute_id=dispute_id,
        charge_id=charge_id,
        amount_cents=amount,
        reason=_text(dispute.get("reason")) or "",
        status=_text(dispute.get("status")) or "needs_response",
        other_charge_id=ch_id if pi_id else None,
    )


def _dispute_closed(kind: str, dispute: Mapping[str, Any]) -> CardEvent:
    dispute_id, status = _id(dispute), _text(dispute.get("status"))
    if dispute_id is None or status is None:
        return Ignored(kind, "a dispute without an id or status")
    return DisputeClosed(dispute_id=dispute_id, status=status)


def _checkout_completed(kind: str, checkout: Mapping[str, Any]) -> CardEvent:
    """A Checkout Session a card link started: setup mode, complete, with its SetupIntent and
    our reference. A payment-mode session (another integration's) is not TextPay's."""
    if _text(checkout.get("mode")) != "setup":
        return Ignored(kind, "not a setup-mode session")
    metadata = checkout.get("metadata")
    reference = _text(metadata.get(CARD_LINK_FIELD)) if isinstance(metadata, Mapping) else None
    session_id, setup_ref = _id(checkout), _ref(checkout.get("setup_intent"))
    if reference is None:
        return Ignored(kind, "a session no card link started")
    if session_id is None or setup_ref is None or _text(checkout.get("status")) != "complete":
        return Ignored(kind, "a session without an id, a SetupIntent, or not complete")
    return CardSetupCompleted(session_id=session_id, setup_ref=setup_ref, reference=reference)


def _text(value: object) -> str | None:
    """A non-empty string, else None (Stripe sends null for what is unknown). A string holding
    NUL is no id, key or code of Stripe's or ours, and PostgreSQL refuses NUL even in a query:
    read as absent, so the event is acknowledged instead of failing on every redelivery."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        return None
    return value


def _id(obj: Mapping[str, Any]) -> str | None:
    return _text(obj.get("id"))


def _ref(value: object) -> str | None:
    """An expandable reference: the id string, or the object expanded in its place."""
    if isinstance(value, Mapping):
        return _id(value)
    return _text(value)


def _cents(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_CENTS:
        return None
    return value


def _expanded_key(value: object) -> str | None:
    """Our key on an expandable reference, when it is expanded (an id string carries none)."""
    return _our_key(value) if isinstance(value, Mapping) else None


def _our_key(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    return _text(metadata.get(KEY_FIELD)) if isinstance(metadata, Mapping) else None
