"""What a processor's webhook tells TextPay, in words no processor owns.

A gateway's event translator (`textpay.payments.stripe_events` for Stripe) turns a verified
event into one of these facts; `textpay.card_events` applies them. Keeping the facts neutral
keeps the domain free of a processor's objects, and lets tests (and another processor) state
an event without building Stripe's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from textpay.payments.gateway import CardInfo, GatewayRefund


@dataclass(frozen=True)
class ChargeSucceeded:
    """A charge TextPay made (found by our idempotency key) has succeeded."""

    idempotency_key: str
    charge_id: str


@dataclass(frozen=True)
class ChargeFailed:
    """A charge TextPay made has failed. `reason` is the processor's decline code (else its
    error code), `authentication_required` kept as is: the card holder must confirm."""

    idempotency_key: str
    charge_id: str | None
    reason: str | None


@dataclass(frozen=True)
class RefundsReported:
    """The refunds of one charge (our `charge_id`) as the processor sees them now.

    `charge_key`: our idempotency key for the charge itself, when the event carries it (Stripe
    copies a PaymentIntent's metadata onto its charge). A refund can be reported before the
    charge's success (a processor does not order its events), while TextPay has no charge id
    for the attempt yet: the key is what still finds it."""

    charge_id: str
    refunds: tuple[GatewayRefund, ...]
    charge_key: str | None = None


@dataclass(frozen=True)
class DisputeOpened:
    """The card holder's bank disputes a charge (a chargeback or an inquiry).
    `other_charge_id`: the processor's other name for the same charge, if it has one (Stripe's
    `ch_...` beside the PaymentIntent), for charges recorded under it."""

    dispute_id: str
    charge_id: str
    amount_cents: int
    reason: str
    status: str
    other_charge_id: str | None = None


@dataclass(frozen=True)
class DisputeClosed:
    dispute_id: str
    status: str  # won, lost, warning_closed ...


@dataclass(frozen=True)
class CardSetupCompleted:
    """The card holder finished the processor's hosted card page that a card link started
    (Stripe: `checkout.session.completed` in `setup` mode). `session_id` is the page's session,
    `setup_ref` what saved the card (Stripe's SetupIntent), `reference` the card link's
    reference as TextPay put it on the session.

    The event does not describe the card: the webhook asks the gateway (`card_from_setup`)
    before its transaction and hands the answer over as `card`; `textpay.card_events` applies
    only a fact whose card is known."""

    session_id: str
    setup_ref: str
    reference: str | None
    card: CardInfo | None = None


@dataclass(frozen=True)
class Ignored:
    """An event TextPay does not act on: a type it does not handle, or one that lacks what it
    would need (`why`, for the log)."""

    type: str
    why: str = "not a type TextPay acts on"


CardEvent = (
    ChargeSucceeded
    | ChargeFailed
    | RefundsReported
    | DisputeOpened
    | DisputeClosed
    | CardSetupCompleted
    | Ignored
)


@dataclass(frozen=True)
class VerifiedEvent:
    """A processor's event whose signature was checked: its id (applied once), type and fact."""

    event_id: str
    type: str
    fact: CardEvent
