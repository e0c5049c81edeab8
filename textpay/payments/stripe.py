"""Stripe's gateway (being written): charges are PaymentIntents made with the official SDK."""

from __future__ import annotations

from datetime import timedelta

from textpay.payments.gateway import CardInfo, ChargeRequest, ChargeResult, RefundResult


class StripeGateway:
    key_lifetime: timedelta | None = timedelta(hours=24)

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = "https://api.stripe.com",
        statement_descriptor_suffix: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_url = api_url
        self._suffix = statement_descriptor_suffix

    def charge(self, request: ChargeRequest, *, timeout_seconds: float) -> ChargeResult:
        raise NotImplementedError

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        raise NotImplementedError

    def save_card(self, token: str, *, customer: str | None, account_ref: str) -> CardInfo | None:
        raise NotImplementedError

    def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        reason: str,
        timeout_seconds: float,
    ) -> RefundResult:
        raise NotImplementedError
