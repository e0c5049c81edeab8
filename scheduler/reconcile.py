"""Job: settle card charges left pending by a slow gateway or a crashed process.

For each payment attempt still pending after a grace period, ask the gateway what happened to its
idempotency key (charging with that same key if the gateway never saw it, which cannot charge
twice), settle it, and queue a text telling the subscriber the outcome. Each attempt is its own
transaction, and none is open while the gateway is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from textpay import autopay, funding
from textpay import engine as turns
from textpay.accounts import payment_method_of
from textpay.db import unit_of_work
from textpay.models import PaymentAttempt
from textpay.payments import ChargeResult, ChargeStatus, Initiator, PaymentGateway
from textpay.timeutil import utcnow


@dataclass(frozen=True)
class ReconcileCounts:
    settled: int
    still_pending: int


def run(
    db: Engine,
    gateway: PaymentGateway,
    config: turns.EngineConfig,
    *,
    grace_seconds: float = 30.0,
    timeout_seconds: float = 8.0,
    now: datetime | None = None,
) -> ReconcileCounts:
    started = now or utcnow()
    with unit_of_work(db) as session:
        attempt_ids = funding.unsettled(
            session, older_than=started - timedelta(seconds=grace_seconds)
        )
    settled = pending = 0
    for attempt_id in attempt_ids:
        with unit_of_work(db) as session:
            attempt = session.get(PaymentAttempt, attempt_id)
            assert attempt is not None
            method = payment_method_of(session, attempt.account_id)
        if method is None:
            found = gateway.retrieve(attempt.idempotency_key)
            result = found or ChargeResult(ChargeStatus.FAILED, decline_reason="no_card_on_file")
            if result.status is ChargeStatus.PENDING:
                pending += 1
                continue
        else:
            maybe = funding.reconcile_result(
                gateway, attempt, method.token, timeout_seconds=timeout_seconds
            )
            if maybe is None:
                pending += 1
                continue
            result = maybe
        with unit_of_work(db) as session:
            settlement = funding.settle(session, attempt_id, result, now=now or utcnow())
            if settlement.changed:
                if attempt.initiator == Initiator.MERCHANT.value:
                    autopay.after_settlement(
                        session, settlement, now=now or utcnow(), config=config
                    )
                else:
                    turns.notify_settlement(session, settlement, now=now or utcnow(), config=config)
                settled += 1
    return ReconcileCounts(settled=settled, still_pending=pending)
