"""The payment gateway protocol: the vocabulary of a charge and a refund, and what every gateway
(the sandbox, Stripe) must do.

Owns what TextPay asks of a card processor and the words for its answers: who initiated a
charge, our idempotency key, the outcome (succeeded, declined with a reason, failed, or not
known yet), and the two exceptions that mean "ask again later" and "that key was used for
something else". Nothing here knows a processor's own objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Protocol


class Initiator(StrEnum):
    CUSTOMER = "customer"  # the subscriber asked for this charge (a YES reply)
    MERCHANT = "merchant"  # TextPay charges on the subscriber's standing consent (AutoPay)


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # the card said no; retrying the same card will not help soon
    FAILED = "failed"  # the processor failed; a later retry may succeed
    PENDING = "pending"  # accepted, not settled yet (only from `retrieve`, or Stripe's processing)


# The decline reason of a charge the card's bank wants the card holder to confirm (3-D Secure):
# not a plain decline, and the subscriber is told so.
AUTHENTICATION_REQUIRED = "authentication_required"


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    charge_id: str | None = None
    decline_reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is ChargeStatus.SUCCEEDED


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of a stored card, as phase 2 sends it. `metadata` names the account and the
    attempt at the processor (so a charge can be found without our database), and
    `description` is what the processor shows an operator."""

    token: str
    amount_cents: int
    idempotency_key: str
    initiator: Initiator
    customer: str | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CardInfo:
    """What may be shown of a stored card, and the processor's customer it belongs to."""

    brand: str
    last4: str
    exp_month: int | None = None
    exp_year: int | None = None
    customer: str | None = None
    # The token to keep and charge from now on, when the processor gave the card a new one
    # (Stripe: attaching a test payment method such as `pm_card_visa` makes a `pm_...`).
    # None: keep the token as given.
    token: str | None = None


@dataclass(frozen=True)
class CardSetup:
    """A hosted page, started at the processor, where the card holder enters a card that
    TextPay never sees (Stripe: a Checkout Session in `setup` mode). `url` is where the
    card holder is sent; `session_id` names the page's session in the processor's events."""

    session_id: str
    url: str


class RefundStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the processor refused: nothing went back to the card
    PENDING = "pending"  # accepted; the processor will finish it


@dataclass(frozen=True)
class RefundResult:
    status: RefundStatus
    refund_id: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True)
class GatewayRefund:
    """One refund of a charge as the processor reports it on its own initiative (Stripe's
    `charge.refunded` event lists the charge's refunds), for `textpay.card_refunds.
    confirm_from_gateway`.

    `idempotency_key` is TextPay's key for a refund TextPay asked for: a processor that keeps
    metadata must carry it on the refund as `textpay_key` (Stripe: `metadata[textpay_key]`, the
    same field a charge carries), and report it back here. None for a refund made outside
    TextPay (an operator in the processor's dashboard)."""

    refund_id: str
    amount_cents: int
    status: RefundStatus
    idempotency_key: str | None = None


class GatewayTimeout(Exception):
    """The gateway did not answer in time: the charge may or may not have happened.

    Never treat this as a decline and never charge again with a new key: ask `retrieve` later.
    """


class UnknownCard(Exception):
    """The processor does not know the card (or the customer) an operator gave, or will not
    keep it: storing it would leave an account with a card that can never be charged.

    `field` names the input at fault (`payment_method.token` or `payment_method.customer`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class GatewayKeyReuse(Exception):
    """An idempotency key was sent again with a different token, amount or initiator."""


class PaymentGateway(Protocol):
    # How long the processor remembers an idempotency key (None: for ever). After it, charging
    # again with the same key could charge twice, so a reconciler only looks the charge up.
    key_lifetime: timedelta | None

    def charge(self, request: ChargeRequest, *, timeout_seconds: float) -> ChargeResult:
        """Charge a stored card. The same key always returns the first result. Raises
        `GatewayTimeout` when the outcome is unknown."""
        ...

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        """What happened to the charge made with this key, or None if there was none."""
        ...

    def save_card(self, token: str, *, customer: str | None, account_ref: str) -> CardInfo | None:
        """Make `token` chargeable later without the card holder present and say what it is:
        brand, last 4, expiry and the customer it now belongs to (a processor with customers
        creates one for `account_ref` when none is given). None when the token is unknown and
        the operator may describe the card themselves (the sandbox); `UnknownCard` when an
        unknown card must be refused (Stripe); `GatewayTimeout` when the processor cannot be
        reached. It is a network call: callers make it outside any transaction."""
        ...

    # Whether the processor hosts a page where the card holder enters a card (`start_card_setup`,
    # `card_from_setup`). False: the card link's page offers the gateway's own cards instead
    # (the sandbox's test cards, saved with `save_card`).
    hosted_card_setup: bool

    def start_card_setup(
        self,
        *,
        customer: str | None,
        account_ref: str,
        success_url: str,
        cancel_url: str,
        reference: str,
        language: str,
    ) -> CardSetup:
        """Start the processor's hosted page that saves a card for off-session charges to
        `customer` (a processor with customers creates one for `account_ref` when none is
        given). `reference` names the card link at the processor (on the session and on what it
        makes, so its completion event can be matched; never a secret) and makes the request
        idempotent: the same reference answers the same page. `language` is `en` or `es`.
        Raises `GatewayTimeout` when the processor cannot be reached, `UnknownCard` when it
        refuses the customer; `NotImplementedError` where `hosted_card_setup` is False. A
        network call: callers make it outside any transaction."""
        ...

    def card_from_setup(self, setup_ref: str) -> CardInfo:
        """The card a completed hosted setup saved (Stripe: the SetupIntent's payment method),
        `token` the processor's id to charge and `customer` its owner. Raises `GatewayTimeout`
        when the processor cannot be reached, `UnknownCard` when it knows no such setup or the
        setup saved no card; `NotImplementedError` where `hosted_card_setup` is False."""
        ...

    def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        reason: str,
        timeout_seconds: float,
    ) -> RefundResult:
        """Give `amount_cents` of a succeeded charge back to its card. The same key always
        returns the first result. Raises `GatewayTimeout` when the outcome is unknown.

        `reason` is the operator's own words (a processor with a fixed list of reasons sends
        its own, e.g. Stripe's `requested_by_customer`). A processor that keeps metadata records
        `textpay_key=<idempotency_key>` on the refund, so that its later reports of the refund
        (`GatewayRefund`) can be matched to ours."""
        ...

    def retrieve_refund(self, refund_id: str, *, timeout_seconds: float) -> RefundResult:
        """The refund's state now, asked by the processor's refund id (never by our key: the
        same key answers the first answer again, which for a refund Stripe answered `pending`
        stays `pending` after the refund finished, and the key is forgotten after 24 h).
        Raises `GatewayTimeout` when the processor cannot be reached. A refund id the processor
        does not know answers `PENDING` (logged): money is never given back on a lookup that
        found nothing, since the card may have it already."""
        ...
