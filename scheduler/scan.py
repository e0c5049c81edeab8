"""Job: the low-balance scan, with AutoPay charges for enrolled accounts.

Phase 1 (one transaction): become the scan's leader, re-arm recovered accounts, create offers
and queue their texts, and record a pending attempt for each AutoPay charge. Phase 2: charge
each card, outside any transaction. Phase 3 (a transaction per charge): settle it and queue the
receipt or decline notice. On PostgreSQL the leader holds a transaction-level advisory lock, so
of several clocks scanning at the same moment one works and the others step aside; on SQLite
the transaction's write lock does the same. Unique keys back this up: one open offer per
account, one AutoPay attempt per episode and try.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from textpay import autopay, funding, lowbalance
from textpay.db import is_postgresql, unit_of_work
from textpay.engine import EngineConfig
from textpay.lowbalance import Action
from textpay.payments import PaymentGateway
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key: "TextPay scan" as a 64-bit number.
SCAN_LOCK_KEY = 0x5465787450617953


@dataclass
class ScanResult:
    prompted: int = 0
    autopay_charged: int = 0
    held: int = 0
    skipped: int = 0
    autopay_declined: int = 0
    autopay_pending: int = 0
    leader: bool = True
    planned: list[dict[str, str]] = field(default_factory=list)  # filled by a dry run

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and k != "leader"}


class _DryRun(Exception):
    pass


def run(
    db: Engine,
    gateway: PaymentGateway,
    config: EngineConfig,
    *,
    now: datetime | None = None,
    gateway_timeout: float = 8.0,
    dry_run: bool = False,
) -> ScanResult:
    started = now or utcnow()
    result = ScanResult()
    orders: list[funding.ChargeOrder] = []
    try:
        with unit_of_work(db) as session:
            if not _lead(session):
                result.leader = False
                return result
            orders = _phase_one(session, result, now=started, config=config, dry_run=dry_run)
            if dry_run:
                raise _DryRun  # roll everything back
    except _DryRun:
        return result

    for order in orders:
        outcome = funding.call_gateway(gateway, order, timeout_seconds=gateway_timeout)
        if outcome is None:
            result.autopay_pending += 1  # the reconciler settles it when the gateway answers
            continue
        with unit_of_work(db) as session:
            settlement = funding.settle(session, order.attempt_id, outcome, now=now or utcnow())
            autopay.after_settlement(session, settlement, now=now or utcnow(), config=config)
        if outcome.succeeded:
            result.autopay_charged += 1
        else:
            result.autopay_declined += 1
    log.info("scan: %s", result.counts())
    return result


def _lead(session: Session) -> bool:
    if not is_postgresql(session.get_bind()):  # type: ignore[arg-type]
        return True  # SQLite: BEGIN IMMEDIATE already made this the only writer
    got = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SCAN_LOCK_KEY})
    return bool(got.scalar())


def _phase_one(
    session: Session, result: ScanResult, *, now: datetime, config: EngineConfig, dry_run: bool
) -> list[funding.ChargeOrder]:
    plan = lowbalance.plan(session, now=now)
    result.skipped = plan.skipped
    orders: list[funding.ChargeOrder] = []
    for candidate in plan.candidates:
        if candidate.action is Action.AUTOPAY:
            if not autopay.within_limits(session, candidate.account, candidate.settings, now):
                result.skipped += 1
                continue
            if dry_run:
                result.planned.append(
                    {"phone": candidate.account.phone, "kind": "autopay",
                     "body": f"charge {candidate.settings.preset_amount_cents} cents"}
                )  # fmt: skip
                continue
            try:
                with session.begin_nested():
                    orders.append(autopay.begin(session, candidate.account, candidate.settings,
                                                now=now))  # fmt: skip
            except IntegrityError:
                result.skipped += 1  # this episode's try was already made (another clock)
            continue
        queued = lowbalance.make_offer(session, candidate, now=now, config=config)
        if queued is None:
            result.skipped += 1
            continue
        result.prompted += 1
        send_after = queued.send_after or now
        result.held += int(send_after > now)
        if dry_run:
            result.planned.append(
                {"phone": queued.phone, "kind": queued.kind,
                 "send_after": send_after.isoformat(), "body": queued.body}
            )  # fmt: skip
    return orders
