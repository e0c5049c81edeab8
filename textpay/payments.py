"""Payment gateways: the protocol TextPay charges cards through, and the deterministic sandbox.

Owns the vocabulary of a charge (customer- or merchant-initiated, our idempotency key, the
outcome) and the sandbox gateway used in development and tests. The sandbox behaves like a
processor's test mode: fixed test tokens with fixed outcomes, idempotency keys honoured across
processes, and a slow card whose charge completes after the caller has given up waiting.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from textpay.db import unit_of_work
from textpay.models import SandboxCharge
from textpay.timeutil import utcnow


class Initiator(StrEnum):
    CUSTOMER = "customer"  # the subscriber asked for this charge (a YES reply)
    MERCHANT = "merchant"  # TextPay charges on the subscriber's standing consent (AutoPay)


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # the card said no; retrying the same card will not help soon
    FAILED = "failed"  # the processor failed; a later retry may succeed
    PENDING = "pending"  # only from `retrieve`: accepted, not yet settled


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    charge_id: str | None = None
    decline_reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is ChargeStatus.SUCCEEDED


@dataclass(frozen=True)
class CardInfo:
    brand: str
    last4: str


class GatewayTimeout(Exception):
    """The gateway did not answer in time: the charge may or may not have happened.

    Never treat this as a decline and never charge again with a new key: ask `retrieve` later.
    """


class GatewayKeyReuse(Exception):
    """An idempotency key was sent again with a different token, amount or initiator."""


class PaymentGateway(Protocol):
    def charge(
        self,
        *,
        token: str,
        amount_cents: int,
        idempotency_key: str,
        initiator: Initiator,
        timeout_seconds: float,
    ) -> ChargeResult:
        """Charge a stored token. The same key always returns the first result."""
        ...

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        """What happened to the charge made with this key, or None if there was none."""
        ...

    def describe(self, token: str) -> CardInfo | None:
        """Brand and last 4 of a token, when the gateway can tell."""
        ...


@dataclass(frozen=True)
class SandboxCard:
    brand: str
    last4: str
    status: ChargeStatus
    decline_reason: str | None = None
    slow: bool = False


# Named after the test tokens card processors publish, so that they look familiar.
SANDBOX_CARDS: dict[str, SandboxCard] = {
    "tok_visa": SandboxCard("visa", "4242", ChargeStatus.SUCCEEDED),
    "tok_mastercard": SandboxCard("mastercard", "4444", ChargeStatus.SUCCEEDED),
    "tok_chargeDeclined": SandboxCard("visa", "0002", ChargeStatus.DECLINED, "card_declined"),
    "tok_insufficientFunds": SandboxCard(
        "visa", "9995", ChargeStatus.DECLINED, "insufficient_funds"
    ),
    "tok_expiredCard": SandboxCard("visa", "0069", ChargeStatus.DECLINED, "expired_card"),
    "tok_processingError": SandboxCard("visa", "0119", ChargeStatus.FAILED, "processing_error"),
    "tok_slow": SandboxCard("visa", "3220", ChargeStatus.SUCCEEDED, slow=True),
}
_UNKNOWN_TOKEN = SandboxCard("card", "0000", ChargeStatus.DECLINED, "unknown_token")


class SandboxGateway:
    """A deterministic gateway that keeps its charges in its own table.

    It writes through its own engine and transaction, like a processor on the far side of a
    network call, so a crash of TextPay between "charge" and "record" leaves evidence a
    reconciler can read back with `retrieve`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        slow_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._engine = engine
        self._slow_seconds = slow_seconds
        self._sleep = sleep

    def describe(self, token: str) -> CardInfo | None:
        card = SANDBOX_CARDS.get(token)
        return CardInfo(card.brand, card.last4) if card else None

    def charge(
        self,
        *,
        token: str,
        amount_cents: int,
        idempotency_key: str,
        initiator: Initiator,
        timeout_seconds: float,
    ) -> ChargeResult:
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        record = self._record_once(token, amount_cents, idempotency_key, initiator)
        if (record.token, record.amount_cents, record.initiator) != (
            token,
            amount_cents,
            initiator.value,
        ):
            raise GatewayKeyReuse(
                f"idempotency key {idempotency_key!r} was first used for another charge"
            )
        remaining = (record.settles_at - utcnow()).total_seconds()
        if remaining > 0:
            if remaining > timeout_seconds:
                self._sleep(timeout_seconds)
                raise GatewayTimeout(f"no answer within {timeout_seconds:g} s")
            self._sleep(remaining)
        return _result(record)

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        with unit_of_work(self._engine) as session:
            record = session.exec(
                select(SandboxCharge).where(SandboxCharge.idempotency_key == idempotency_key)
            ).first()
        if record is None:
            return None
        if record.settles_at > utcnow():
            return ChargeResult(ChargeStatus.PENDING, charge_id=record.charge_id)
        return _result(record)

    def _record_once(
        self, token: str, amount_cents: int, idempotency_key: str, initiator: Initiator
    ) -> SandboxCharge:
        """The charge stored for this key, created on first use. A concurrent first use loses
        the unique-key race and reads the winner's row."""
        for _attempt in range(2):
            try:
                with unit_of_work(self._engine) as session:
                    existing = session.exec(
                        select(SandboxCharge).where(
                            SandboxCharge.idempotency_key == idempotency_key
                        )
                    ).first()
                    if existing is not None:
                        return existing
                    card = SANDBOX_CARDS.get(token, _UNKNOWN_TOKEN)
                    now = utcnow()
                    delay = timedelta(seconds=self._slow_seconds if card.slow else 0)
                    record = SandboxCharge(
                        idempotency_key=idempotency_key,
                        token=token,
                        amount_cents=amount_cents,
                        initiator=initiator.value,
                        status=card.status.value,
                        decline_reason=card.decline_reason,
                        charge_id="ch_sandbox_" + secrets.token_hex(8),
                        created_at=now,
                        settles_at=now + delay,
                    )
                    session.add(record)
                return record
            except IntegrityError:
                continue
        raise RuntimeError(f"could not record sandbox charge {idempotency_key!r}")


def _result(record: SandboxCharge) -> ChargeResult:
    return ChargeResult(
        ChargeStatus(record.status),
        charge_id=record.charge_id,
        decline_reason=record.decline_reason,
    )
