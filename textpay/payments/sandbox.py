"""The sandbox gateway: the embedded default, used in development and tests.

It behaves like a processor's test mode: fixed test tokens with fixed outcomes, idempotency keys
honoured across processes (for ever: `key_lifetime` is None), a slow card whose charge completes
after the caller has given up waiting, and refunds of its charges up to what was charged.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from textpay.db import unit_of_work
from textpay.models import SandboxCharge, SandboxRefund
from textpay.payments.gateway import (
    AUTHENTICATION_REQUIRED,
    CardInfo,
    CardSetup,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    GatewayKeyReuse,
    GatewayTimeout,
    Initiator,
    RefundResult,
    RefundStatus,
)
from textpay.timeutil import utcnow

Row = TypeVar("Row", bound=SQLModel)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxCard:
    brand: str
    last4: str
    status: ChargeStatus
    decline_reason: str | None = None
    slow: bool = False
    exp_month: int | None = None
    exp_year: int | None = None


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
    # The bank wants the card holder to confirm (3-D Secure), which an off-session charge can't.
    "tok_authenticationRequired": SandboxCard(
        "visa", "3184", ChargeStatus.DECLINED, AUTHENTICATION_REQUIRED
    ),
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

    key_lifetime: timedelta | None = None
    # The sandbox hosts no card page: the card link's page offers its test cards and saves the
    # choice with `save_card`.
    hosted_card_setup = False

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
        raise NotImplementedError("the sandbox saves its test cards directly (save_card)")

    def card_from_setup(self, setup_ref: str) -> CardInfo:
        raise NotImplementedError("the sandbox saves its test cards directly (save_card)")

    def save_card(self, token: str, *, customer: str | None, account_ref: str) -> CardInfo | None:
        card = SANDBOX_CARDS.get(token)
        if card is None:
            return None
        return CardInfo(card.brand, card.last4, card.exp_month, card.exp_year, customer)

    def charge(self, request: ChargeRequest, *, timeout_seconds: float) -> ChargeResult:
        if request.amount_cents <= 0:
            raise ValueError("amount_cents must be positive")
        record = self._record_once(
            request.token, request.amount_cents, request.idempotency_key, request.initiator
        )
        if (record.token, record.amount_cents, record.initiator) != (
            request.token,
            request.amount_cents,
            request.initiator.value,
        ):
            raise GatewayKeyReuse(
                f"idempotency key {request.idempotency_key!r} was first used for another charge"
            )
        remaining = (record.settles_at - utcnow()).total_seconds()
        if remaining > 0:
            if remaining > timeout_seconds:
                self._sleep(timeout_seconds)
                raise GatewayTimeout(f"no answer within {timeout_seconds:g} s")
            self._sleep(remaining)
        return _result(record)

    def refund(
        self,
        *,
        charge_id: str,
        amount_cents: int,
        idempotency_key: str,
        reason: str,
        timeout_seconds: float,
    ) -> RefundResult:
        """Refund a sandbox charge: at most what it charged minus what was refunded already.
        The same key returns the first answer; the same key for another refund is refused."""
        if amount_cents <= 0:
            raise ValueError("amount_cents must be positive")

        def new_refund(session: Session) -> SandboxRefund:
            charge = session.exec(
                select(SandboxCharge).where(SandboxCharge.charge_id == charge_id).with_for_update()
            ).first()
            refunded = session.exec(
                select(func.coalesce(func.sum(SandboxRefund.amount_cents), 0)).where(
                    SandboxRefund.charge_id == charge_id,
                    SandboxRefund.status == RefundStatus.SUCCEEDED.value,
                )
            ).one()
            failure = None
            if charge is None or charge.status != ChargeStatus.SUCCEEDED.value:
                failure = "charge_not_refundable"
            elif int(refunded) + amount_cents > charge.amount_cents:
                failure = "amount_too_large"
            return SandboxRefund(
                idempotency_key=idempotency_key,
                charge_id=charge_id,
                amount_cents=amount_cents,
                status=(RefundStatus.FAILED if failure else RefundStatus.SUCCEEDED).value,
                failure_reason=failure,
                refund_id="re_sandbox_" + secrets.token_hex(8),
            )

        record = self._once(SandboxRefund, idempotency_key, new_refund)
        if (record.charge_id, record.amount_cents) != (charge_id, amount_cents):
            raise GatewayKeyReuse(
                f"idempotency key {idempotency_key!r} was first used for another refund"
            )
        return _refund_result(record)

    def retrieve_refund(self, refund_id: str, *, timeout_seconds: float) -> RefundResult:
        """The sandbox refund with this id, as recorded (sandbox refunds are final at once).
        An id the sandbox never made answers pending (logged), as Stripe's gateway does."""
        with unit_of_work(self._engine) as session:
            record = session.exec(
                select(SandboxRefund).where(SandboxRefund.refund_id == refund_id)
            ).first()
        if record is None:
            log.warning("sandbox retrieve_refund: no refund %r", refund_id)
            return RefundResult(RefundStatus.PENDING, refund_id=refund_id)
        return _refund_result(record)

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
        """The charge stored for this key, created on first use: one `INSERT ... ON CONFLICT
        DO NOTHING` (every YES is charged here, so it skips the ORM), and a read of the row
        already stored when the key was used before (a retry, or a concurrent first use)."""
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
        table = SandboxCharge.__table__  # type: ignore[attr-defined]
        values = {column.key: getattr(record, column.key) for column in table.columns
                  if column.key != "id"}  # fmt: skip
        with self._engine.begin() as connection:
            new_id = connection.execute(_insert_charge_once(), values).scalar_one_or_none()
            if new_id is not None:
                record.id = int(new_id)
                return record
            stored = connection.execute(
                select(table).where(table.c.idempotency_key == idempotency_key)
            ).one()
        return SandboxCharge(**stored._asdict())

    def _once(self, table: type[Row], idempotency_key: str, make: Callable[[Session], Row]) -> Row:
        """The row stored for this key in `table`, made by `make` on first use: as a processor
        keeps the first answer for a key. A concurrent first use loses the unique-key race and
        reads the winner's row."""
        for _attempt in range(2):
            try:
                with unit_of_work(self._engine) as session:
                    existing = session.exec(
                        select(table).where(
                            table.idempotency_key == idempotency_key  # type: ignore[attr-defined]
                        )
                    ).first()
                    if existing is not None:
                        return existing
                    record = make(session)
                    session.add(record)
                return record
            except IntegrityError:
                continue
        raise RuntimeError(f"could not record a sandbox {table.__name__} for {idempotency_key!r}")


@cache
def _insert_charge_once() -> Any:
    """`INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`, built once, as text
    with typed parameters: SQLite and PostgreSQL spell it alike, and SQLAlchemy's own
    `on_conflict_do_nothing` cannot be cached (SQLAlchemy 2.0 gives its clause no cache key),
    so it was compiled anew for every charge, which cost more than the insert."""
    table = SandboxCharge.__table__  # type: ignore[attr-defined]
    columns = [column for column in table.columns if column.key != "id"]
    names = ", ".join(column.name for column in columns)
    values = ", ".join(":" + column.key for column in columns)
    # The names are the model's own, every value a bound parameter.
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({values}) "  # noqa: S608
    return (
        text(sql + "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id")
        .bindparams(*(bindparam(column.key, type_=column.type) for column in columns))
        .columns(table.c.id)
    )


def _refund_result(record: SandboxRefund) -> RefundResult:
    return RefundResult(
        RefundStatus(record.status),
        refund_id=record.refund_id,
        failure_reason=record.failure_reason,
    )


def _result(record: SandboxCharge) -> ChargeResult:
    return ChargeResult(
        ChargeStatus(record.status),
        charge_id=record.charge_id,
        decline_reason=record.decline_reason,
    )
