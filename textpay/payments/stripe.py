"""Stripe's gateway: every charge is one PaymentIntent, made with the official `stripe` SDK.

Owns everything TextPay says to Stripe's API and how Stripe's answers and errors become the
gateway vocabulary (`textpay.payments.gateway`): a charge (a confirmed, off-session
PaymentIntent on the customer's saved card), finding a charge again by the metadata that carries
our idempotency key, saving a card (reading the PaymentMethod and attaching it to a customer),
and refunding a PaymentIntent. This module and the one reading Stripe's webhook events are the
only ones that import `stripe` (`tests/test_architecture.py`).

Why it is built this way:
- `max_network_retries=0`: retries are ours (the reconciler), always with the attempt's own key,
  so the SDK never sends a request under a key it invented.
- `off_session=true`: the subscriber is not at a browser (a YES by text, or AutoPay), so Stripe
  must not start a 3-D Secure challenge; a bank that insists answers `authentication_required`.
- A timeout, a connection error, a rate limit or a 5xx means the outcome is unknown: nothing is
  decided here, `GatewayTimeout` sends the attempt to the reconciler, which asks again with the
  same key (Stripe keeps a key 24 hours, `key_lifetime`) or, later, searches by metadata.
- Nothing Stripe says is logged verbatim (its messages can name a payment method); log lines
  carry the error's type, code, HTTP status and Stripe's request id only.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import stripe

from textpay.payments.gateway import (
    AUTHENTICATION_REQUIRED,
    CardInfo,
    CardSetup,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    GatewayKeyReuse,
    GatewayTimeout,
    RefundResult,
    RefundStatus,
    UnknownCard,
)

log = logging.getLogger(__name__)
# The SDK logs every request's URL and every error's message at INFO (a payment method's id in
# a path, "No such PaymentMethod: 'pm_...'"): our own lines above say what matters, without
# tokens, so the SDK's are kept out of processes that log at INFO (the clock does).
logging.getLogger("stripe").setLevel(logging.WARNING)

# The metadata field that carries an attempt's idempotency key (`textpay.funding.METADATA_KEY`;
# repeated here because payments never import funding).
METADATA_KEY = "textpay_key"
# Stripe's limit on one metadata value.
METADATA_VALUE_MAX = 500
# How long card saving and lookups wait: an operator's request, or the reconciler's.
LOOKUP_TIMEOUT_SECONDS = 8.0

# The metadata field, on a Checkout Session and its SetupIntent, naming the card link that
# started it (`reference`: never the link's token). `textpay.payments.stripe_events` reads it.
CARD_LINK_FIELD = "textpay_card_link"
# Checkout's languages for ours (Stripe's `locale`).
_LOCALES = {"en": "en", "es": "es"}

# Errors after which Stripe may or may not have acted: ask again later with the same key.
_UNKNOWN_OUTCOME = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
# Errors that mean Stripe refused the request before doing anything.
_REFUSED = (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError)


class StripeGateway:
    """The `PaymentGateway` for Stripe (test or live mode, by the key)."""

    key_lifetime: timedelta | None = timedelta(hours=24)

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = "https://api.stripe.com",
        statement_descriptor_suffix: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_url = api_url.rstrip("/")
        self._suffix = statement_descriptor_suffix
        # The SDK's timeout belongs to its HTTP client, so one client per timeout value (a YES
        # waits less than the reconciler). Clients are thread-safe and kept for the process.
        self._clients: dict[float, stripe.StripeClient] = {}
        self._clients_lock = threading.Lock()

    def _client(self, timeout_seconds: float) -> stripe.StripeClient:
        with self._clients_lock:
            client = self._clients.get(timeout_seconds)
            if client is None:
                client = stripe.StripeClient(
                    self._api_key,
                    base_addresses={"api": self._api_url},
                    http_client=stripe.RequestsClient(timeout=timeout_seconds),
                    max_network_retries=0,
                )
                self._clients[timeout_seconds] = client
            return client

    # -- charges --

    def charge(self, request: ChargeRequest, *, timeout_seconds: float) -> ChargeResult:
        """One confirmed, off-session PaymentIntent under the attempt's idempotency key. The
        same key returns Stripe's first answer (a replay), so this is safe to call again."""
        if request.amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        params: dict[str, Any] = {
            "amount": request.amount_cents,
            "currency": "usd",
            "payment_method": request.token,
            "confirm": True,
            "off_session": True,
            "metadata": dict(request.metadata),
        }
        if request.customer:
            params["customer"] = request.customer
        if request.description:
            params["description"] = request.description
        if self._suffix:
            params["statement_descriptor_suffix"] = self._suffix
        client = self._client(timeout_seconds)
        try:
            intent = client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as error:
            return _declined(error)
        except stripe.IdempotencyError as error:
            _log("charge", error)
            raise GatewayKeyReuse(
                f"idempotency key {request.idempotency_key!r} was first used for another charge"
            ) from None
        except _UNKNOWN_OUTCOME as error:
            # Includes 409 idempotency_key_in_use: the first request with this key is still
            # being answered. Its outcome comes later; nothing may be decided now.
            _log("charge", error)
            raise GatewayTimeout(f"Stripe gave no answer ({type(error).__name__})") from None
        except _REFUSED as error:
            # Stripe refused the request itself (a bad parameter, a card that cannot be used,
            # our key): nothing was charged.
            _log("charge", error)
            return ChargeResult(ChargeStatus.FAILED, decline_reason=_code(error))
        except stripe.StripeError as error:
            _log("charge", error)
            raise GatewayTimeout(f"Stripe answered {type(error).__name__}") from None
        result = _intent_result(intent)
        if result.status is ChargeStatus.PENDING:
            # Not final (`processing`, or a replay of a first answer given before the payment
            # finished): the intent's state now may be.
            try:
                now = client.v1.payment_intents.retrieve(intent.id)
            except stripe.StripeError as error:
                _log("charge: retrieve", error)
                return result
            result = _intent_result(now)
        return result

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        """The charge made under this key, found by the metadata every charge carries; None
        when Stripe has none. Stripe's search may lag a new payment by up to a minute: before
        the key expires the reconciler then replays the key, which Stripe answers from its
        record; after, the payment is long searchable."""
        if not idempotency_key or any(c in idempotency_key for c in "'\"\\"):
            raise ValueError("an idempotency key with quotes cannot be searched for")
        query = f"metadata['{METADATA_KEY}']:'{idempotency_key}'"
        try:
            found = self._client(LOOKUP_TIMEOUT_SECONDS).v1.payment_intents.search(
                params={"query": query, "limit": 10}
            )
        except stripe.StripeError as error:
            _log("retrieve", error)
            # Unknown is not "none": a None here could get an old attempt failed as never
            # charged while Stripe has its payment.
            raise GatewayTimeout(f"Stripe search failed ({type(error).__name__})") from None
        intents = list(found.data)
        if not intents:
            return None
        results = [_intent_result(intent) for intent in intents]
        # One key makes one payment; should there ever be more, a success wins, then one
        # still open, so money Stripe took is never reported as not taken.
        for wanted in (ChargeStatus.SUCCEEDED, ChargeStatus.PENDING):
            for result in results:
                if result.status is wanted:
                    return result
        return results[0]

    # -- cards --

    # Stripe hosts the card page: Checkout in `setup` mode.
    hosted_card_setup = True

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
        """A Checkout Session in `setup` mode for the account's customer (made for the account
        when there is none, as `save_card` does), cards only: the card holder types the card
        on Stripe's page, and Stripe's `checkout.session.completed` names the SetupIntent that
        saved it. `payment_method_types` makes `currency` unnecessary in setup mode.

        Both requests carry idempotency keys made from `reference` (one per card link), so a
        second press of the button, or a retry after a timeout, gets the same customer and the
        same session back instead of a second one (the link lives 30 minutes, well inside
        Stripe's 24 hours). The reference is on the session and on its SetupIntent, so the
        event can be matched to the link even if the session id was never stored."""
        client = self._client(LOOKUP_TIMEOUT_SECONDS)
        metadata = {
            CARD_LINK_FIELD: reference[:METADATA_VALUE_MAX],
            "textpay_account": account_ref[:METADATA_VALUE_MAX],
        }
        try:
            if customer is None:
                customer = _new_customer(
                    client, account_ref, idempotency_key=f"textpay-card-setup-customer-{reference}"
                )
            found = client.v1.checkout.sessions.create(
                params={
                    "mode": "setup",
                    "customer": customer,
                    "payment_method_types": ["card"],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "locale": _LOCALES.get(language, "auto"),
                    "metadata": metadata,
                    "setup_intent_data": {"metadata": metadata},
                },  # type: ignore[arg-type]
                options={"idempotency_key": f"textpay-card-setup-{reference}"},
            )
        except stripe.IdempotencyError as error:
            _log("start_card_setup", error)
            raise GatewayKeyReuse("this card link's session was first made otherwise") from None
        except stripe.InvalidRequestError as error:
            _log("start_card_setup", error)
            raise UnknownCard(
                "payment_method.customer", f"was refused by Stripe ({error.code or 'invalid'})"
            ) from None
        except stripe.StripeError as error:
            _log("start_card_setup", error)
            raise GatewayTimeout(
                f"Stripe could not start the card page ({type(error).__name__})"
            ) from None
        if not found.url:
            raise GatewayTimeout("Stripe's session has no page to send the card holder to")
        return CardSetup(session_id=found.id, url=found.url)

    def card_from_setup(self, setup_ref: str) -> CardInfo:
        """The card a SetupIntent saved: `setup_intents.retrieve`, then its PaymentMethod
        (already attached to the session's customer by Checkout)."""
        client = self._client(LOOKUP_TIMEOUT_SECONDS)
        try:
            intent = client.v1.setup_intents.retrieve(setup_ref)
            if str(intent.status) != "succeeded" or _id_of(intent.payment_method) is None:
                raise UnknownCard("setup_intent", f"saved no card (status {intent.status})")
            pm_id = _id_of(intent.payment_method)
            assert pm_id is not None
            method = client.v1.payment_methods.retrieve(pm_id)
        except stripe.InvalidRequestError as error:
            _log("card_from_setup", error)
            raise UnknownCard("setup_intent", f"is not known to Stripe ({error.code})") from None
        except stripe.StripeError as error:
            _log("card_from_setup", error)
            raise GatewayTimeout(
                f"Stripe could not say which card was saved ({type(error).__name__})"
            ) from None
        return _card_info(
            method,
            customer=_id_of(intent.customer),
            field="setup_intent",
            not_a_card="saved a payment method that is not a card",
        )

    def save_card(self, token: str, *, customer: str | None, account_ref: str) -> CardInfo | None:
        """Read the PaymentMethod and make it chargeable off-session: attached to the given
        customer, or to its own customer, or to a new customer made for the account. Returns
        what to keep, including the PaymentMethod id to charge (attaching a test payment method
        such as `pm_card_visa` makes a new one). Raises `UnknownCard` for a payment method or
        customer Stripe does not know, `GatewayTimeout` when Stripe cannot be reached."""
        client = self._client(LOOKUP_TIMEOUT_SECONDS)
        try:
            method = client.v1.payment_methods.retrieve(token)
            owner = _id_of(method.customer)
            if customer is None and owner is None:
                customer = _new_customer(client, account_ref)
            if customer is not None and owner != customer:
                method = client.v1.payment_methods.attach(method.id, params={"customer": customer})
        except stripe.InvalidRequestError as error:
            _log("save_card", error)
            field = (
                "payment_method.customer"
                if (error.param or "") == "customer"
                or "customer" in (getattr(error.error, "message", "") or "").lower()
                else "payment_method.token"
            )
            if error.code == "resource_missing":
                raise UnknownCard(field, "is not known to Stripe") from None
            raise UnknownCard(field, f"was refused by Stripe ({error.code or 'invalid'})") from None
        except stripe.StripeError as error:
            _log("save_card", error)
            raise GatewayTimeout(
                f"Stripe could not save the card ({type(error).__name__})"
            ) from None
        return _card_info(
            method, customer=customer, field="payment_method.token", not_a_card="is not a card"
        )

    # -- refunds --

    def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        reason: str,
        timeout_seconds: float,
    ) -> RefundResult:
        """A Stripe Refund of part or all of a PaymentIntent, under our idempotency key."""
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        try:
            refund = self._client(timeout_seconds).v1.refunds.create(
                params={
                    "payment_intent": charge_id,
                    "amount": amount_cents,
                    # Our key in the metadata lets Stripe's refund events name the refund.
                    "metadata": {
                        METADATA_KEY: idempotency_key,
                        "textpay_reason": reason[:METADATA_VALUE_MAX],
                    },
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.IdempotencyError as error:
            _log("refund", error)
            raise GatewayKeyReuse(
                f"idempotency key {idempotency_key!r} was first used for another refund"
            ) from None
        except _UNKNOWN_OUTCOME as error:
            _log("refund", error)
            raise GatewayTimeout(f"Stripe gave no answer ({type(error).__name__})") from None
        except (*_REFUSED, stripe.CardError) as error:
            # amount_too_large, charge_already_refunded, charge_disputed...: nothing went back.
            _log("refund", error)
            return RefundResult(RefundStatus.FAILED, failure_reason=_code(error))
        except stripe.StripeError as error:
            _log("refund", error)
            raise GatewayTimeout(f"Stripe answered {type(error).__name__}") from None
        return _refund_result(refund)

    def retrieve_refund(self, refund_id: str, *, timeout_seconds: float) -> RefundResult:
        """The Refund's state now (`GET /v1/refunds/{id}`), mapped as `refund` maps it."""
        try:
            refund = self._client(timeout_seconds).v1.refunds.retrieve(refund_id)
        except stripe.InvalidRequestError as error:
            _log("retrieve_refund", error)
            if error.code == "resource_missing":
                # Odd (the id came from Stripe), but not a refusal: the refund may have gone
                # to the card, so nothing is given back. It stays pending for an operator or
                # Stripe's own report; the log line above says which refund.
                log.warning("stripe retrieve_refund: Stripe knows no refund %r", refund_id)
                return RefundResult(RefundStatus.PENDING, refund_id=refund_id)
            raise GatewayTimeout(f"Stripe refused the lookup ({error.code})") from None
        except stripe.StripeError as error:
            # Unknown is not "failed": the reconciler asks again on its next run.
            _log("retrieve_refund", error)
            raise GatewayTimeout(f"Stripe gave no answer ({type(error).__name__})") from None
        return _refund_result(refund)


def _new_customer(
    client: stripe.StripeClient, account_ref: str, *, idempotency_key: str | None = None
) -> str:
    """A Stripe Customer made for a calling account: its id."""
    made = client.v1.customers.create(
        params={
            "description": f"TextPay calling account {account_ref}"[:350],
            "metadata": {"textpay_account": account_ref[:METADATA_VALUE_MAX]},
        },
        options={"idempotency_key": idempotency_key} if idempotency_key else {},
    )
    return str(made.id)


def _card_info(method: Any, *, customer: str | None, field: str, not_a_card: str) -> CardInfo:
    """What to keep of a card PaymentMethod: the id to charge, what may be shown, and its
    customer (the one it is attached to, else `customer`). A payment method that is not a card
    is refused as `UnknownCard` on `field`."""
    card = method.card
    if card is None:
        raise UnknownCard(field, not_a_card)
    return CardInfo(
        brand=str(card.brand),
        last4=str(card.last4),
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        customer=_id_of(method.customer) or customer,
        token=method.id,
    )


def _refund_result(refund: Any) -> RefundResult:
    """A Stripe Refund's state in the gateway's words: `pending` and `requires_action` are not
    final; `failed` and `canceled` mean nothing went (or stayed) back on the card."""
    status = {
        "succeeded": RefundStatus.SUCCEEDED,
        "failed": RefundStatus.FAILED,
        "canceled": RefundStatus.FAILED,
    }.get(str(refund.status), RefundStatus.PENDING)  # pending, requires_action
    failure = getattr(refund, "failure_reason", None) if status is RefundStatus.FAILED else None
    return RefundResult(
        status,
        refund_id=refund.id,
        failure_reason=(failure or str(refund.status)) if status is RefundStatus.FAILED else None,
    )


def _intent_result(intent: Any) -> ChargeResult:
    """A PaymentIntent's state in the gateway's words. The charge id is the PaymentIntent's:
    refunds and webhook events name it."""
    status = str(intent.status)
    if status == "succeeded":
        return ChargeResult(ChargeStatus.SUCCEEDED, charge_id=intent.id)
    if status in ("processing", "requires_capture"):
        return ChargeResult(ChargeStatus.PENDING, charge_id=intent.id)
    if status == "requires_action":
        # Off-session, nobody can complete a 3-D Secure challenge: nothing will be charged.
        return ChargeResult(
            ChargeStatus.DECLINED, charge_id=intent.id, decline_reason=AUTHENTICATION_REQUIRED
        )
    if status == "requires_payment_method":
        error = intent.last_payment_error
        if error is not None:
            reason = getattr(error, "decline_code", None) or getattr(error, "code", None)
            return ChargeResult(
                ChargeStatus.DECLINED, charge_id=intent.id, decline_reason=reason or "declined"
            )
    # canceled, or never confirmed: no money moved.
    return ChargeResult(ChargeStatus.FAILED, charge_id=intent.id, decline_reason=status)


def _declined(error: stripe.CardError) -> ChargeResult:
    """A 402: the card (or its bank) said no. `authentication_required` keeps its own name,
    because the subscriber is told something else than for a decline."""
    detail = error.error
    code = error.code or (getattr(detail, "code", None) if detail else None)
    decline_code = getattr(detail, "decline_code", None) if detail else None
    intent = getattr(detail, "payment_intent", None) if detail else None
    _log("charge declined", error, level=logging.INFO)  # a card's answer, not a fault
    reason = (
        AUTHENTICATION_REQUIRED
        if code == AUTHENTICATION_REQUIRED
        else (decline_code or code or "card_declined")
    )
    return ChargeResult(ChargeStatus.DECLINED, charge_id=_id_of(intent), decline_reason=reason)


def _code(error: stripe.StripeError) -> str:
    detail = error.error
    return str(
        error.code or (getattr(detail, "code", None) if detail else None) or type(error).__name__
    )


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    ident = getattr(value, "id", None)
    return str(ident) if ident else None


def _log(operation: str, error: stripe.StripeError, *, level: int = logging.WARNING) -> None:
    """What went wrong, without Stripe's message (it may name a payment method or customer)."""
    log.log(
        level,
        "stripe %s: %s code=%s status=%s request=%s",
        operation,
        type(error).__name__,
        error.code,
        error.http_status,
        error.request_id,
    )
