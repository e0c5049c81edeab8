"""Job: settle card charges left pending by a slow gateway or a crashed process, and tell
outcomes nobody has told.

For each payment attempt still pending after a grace period, ask the gateway what happened to its
idempotency key (charging the card recorded on the attempt, with that same key, if the gateway
never saw it, which cannot charge twice) and hand the outcome to `textpay.settlement`, which
queues the text telling the subscriber. Then retry telling settled outcomes whose text failed.
Then card refunds still pending (the processor did not answer in time, answered `pending`, or a
process died between the phases): looked up by the processor's refund id when it is known,
whatever their age, else asked again with the same key while the processor remembers it
(`textpay.card_refunds.ask_again`), and settled. Each attempt and each refund is its own
transaction, none is open while the gateway is called, and one that fails is logged and counted
in `errors` without stopping the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from textpay import card_refunds, funding, settlement
from textpay.db import unit_of_work
from textpay.engine_config import EngineConfig
from textpay.models import Account, CardRefundStatus, PaymentAttempt
from textpay.payments import PaymentGateway
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileCounts:
    settled: int
    still_pending: int
    told: int = 0
    errors: int = 0
    refunds_settled: int = 0
    refunds_pending: int = 0


def run(
    db: Engine,
    gateway: PaymentGateway,
    config: EngineConfig,
    *,
    grace_seconds: float = 30.0,
    timeout_seconds: float = 8.0,
    now: datetime | None = None,
) -> ReconcileCounts:
    started = now or utcnow()
    grace = started - timedelta(seconds=grace_seconds)
    with unit_of_work(db) as session:
        attempt_ids = funding.unsettled(session, older_than=grace)
    settled = pending = errors = 0
    for attempt_id in attempt_ids:
        try:
            done = _settle_one(db, gateway, config, attempt_id, now=now,
                               timeout_seconds=timeout_seconds)  # fmt: skip
        except Exception:
            log.exception("reconcile: payment attempt %s failed", attempt_id)
            errors += 1
            continue
        if done is None:
            pending += 1
        elif done:
            settled += 1
    told = 0
    with unit_of_work(db) as session:
        untold = settlement.untold(session, older_than=grace)
    for attempt_id in untold:
        try:
            with unit_of_work(db) as session:
                outcome = settlement.tell_untold(session, attempt_id, now=now or utcnow(),
                                                 config=config)  # fmt: skip
        except Exception:
            log.exception("reconcile: telling payment attempt %s failed", attempt_id)
            errors += 1
            continue
        told += int(outcome is not None and outcome.queued is not None)
    refunds_settled = refunds_pending = 0
    with unit_of_work(db) as session:
        refund_ids = card_refunds.pending(session, older_than=grace)
    for refund_id in refund_ids:
        try:
            finished = _settle_refund(db, gateway, config, refund_id, now=now,
                                      timeout_seconds=timeout_seconds)  # fmt: skip
        except Exception:
            log.exception("reconcile: card refund %s failed", refund_id)
            errors += 1
            continue
        if finished is None:
            refunds_pending += 1
        elif finished:
            refunds_settled += 1
    return ReconcileCounts(
        settled=settled,
        still_pending=pending,
        told=told,
        errors=errors,
        refunds_settled=refunds_settled,
        refunds_pending=refunds_pending,
    )


def _settle_one(
    db: Engine,
    gateway: PaymentGateway,
    config: EngineConfig,
    attempt_id: int,
    *,
    now: datetime | None,
    timeout_seconds: float,
) -> bool | None:
    """Settle one attempt from the gateway's answer. None while the gateway has no final
    answer; False when someone else settled it meanwhile."""
    with unit_of_work(db) as session:
        attempt = session.get(PaymentAttempt, attempt_id)
        assert attempt is not None
        account = session.get(Account, attempt.account_id)
        assert account is not None
        account_number = account.account_number
        session.expunge(attempt)
    result = funding.reconcile_result(
        gateway,
        attempt,
        account_number=account_number,
        timeout_seconds=timeout_seconds,
        now=now or utcnow(),
    )
    if result is None:
        return None
    with unit_of_work(db) as session:
        outcome = settlement.settle(session, attempt_id, result, now=now or utcnow(),
                                    config=config, by_reply=False)  # fmt: skip
    return outcome.changed


def _settle_refund(
    db: Engine,
    gateway: PaymentGateway,
    config: EngineConfig,
    refund_id: int,
    *,
    now: datetime | None,
    timeout_seconds: float,
) -> bool | None:
    """Ask the processor again about one pending refund (by its refund id, else its key) and
    settle the answer. None while there is no final answer; False when someone else settled it
    meanwhile."""
    with unit_of_work(db) as session:
        order = card_refunds.order_of(session, refund_id)
    if order is None:
        return False
    result = card_refunds.ask_again(gateway, order, now=now or utcnow(),
                                    timeout_seconds=timeout_seconds)  # fmt: skip
    if result is None:
        return None
    with unit_of_work(db) as session:
        outcome = card_refunds.settle(session, refund_id, result, now=now or utcnow(),
                                      config=config)  # fmt: skip
    if outcome.changed:
        return True
    return None if outcome.refund.status == CardRefundStatus.PENDING.value else False
