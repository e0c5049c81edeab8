"""Job: the low-balance scan, with AutoPay charges for enrolled accounts.

Phase 1 (short transactions, in batches): re-arm recovered accounts, create offers and queue
their texts, and record a pending attempt for each AutoPay charge. Phase 2: charge each card,
outside any transaction. Phase 3 (a transaction per charge): settle it and queue the receipt or
decline notice. On PostgreSQL the scan is led by the holder of an advisory lock, so of several
clocks scanning at the same moment one works and the others step aside. Unique keys back this
up everywhere: one open offer per account, one AutoPay attempt per episode and try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from textpay import autopay, funding, lowbalance
from textpay.db import is_postgresql, unit_of_work
from textpay.engine import EngineConfig
from textpay.lowbalance import Action
from textpay.models import Account
from textpay.payments import PaymentGateway
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)

# pg_try_advisory_lock key: "TextPay scan" as a 64-bit number.
SCAN_LOCK_KEY = 0x5465787450617953
# Candidates per phase-1 transaction. On SQLite, whose writers wait by polling (every 100 ms at
# the slowest), batches are smaller and the scan pauses between them, so that a webhook waiting
# for the write lock gets it within a fraction of a second instead of being starved.
BATCH = 500
SQLITE_BATCH = 200
SQLITE_PAUSE_SECONDS = 0.02


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
    with _leadership(db) as leader:
        if not leader:
            result.leader = False
            return result
        if dry_run:
            try:
                with unit_of_work(db) as session:
                    plan = lowbalance.plan(session, now=started)
                    _phase_one(session, plan.candidates, result, now=started, config=config,
                               dry_run=True)  # fmt: skip
                    result.skipped += plan.skipped
                    raise _DryRun  # roll everything back
            except _DryRun:
                return result
        log.info("scan started")
        orders = _offers_and_claims(db, result, now=started, config=config)

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


@contextmanager
def _leadership(db: Engine) -> Iterator[bool]:
    """On PostgreSQL, a session-level advisory lock on a connection of its own, held for the
    whole scan and released at the end (or by the server if this process dies). On SQLite,
    always granted: each batch's write lock orders the writers, and the unique keys stop a
    second offer or charge."""
    if not is_postgresql(db):
        yield True
        return
    with db.connect() as connection:
        got = bool(
            connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": SCAN_LOCK_KEY}
            ).scalar()
        )
        connection.commit()
        try:
            yield got
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCAN_LOCK_KEY})
                connection.commit()


def _offers_and_claims(
    db: Engine, result: ScanResult, *, now: datetime, config: EngineConfig
) -> list[funding.ChargeOrder]:
    """Phase 1 in short transactions: the plan, then the candidates in batches, so that a long
    scan never holds a lock that keeps webhooks waiting, and a scan killed midway leaves whole
    batches done for the next one to build on."""
    with unit_of_work(db) as session:
        plan = lowbalance.plan(session, now=now)
    result.skipped += plan.skipped
    ids = [(c.account.id, c) for c in plan.candidates]
    orders: list[funding.ChargeOrder] = []
    batch = BATCH if is_postgresql(db) else SQLITE_BATCH
    for start in range(0, len(ids), batch):
        if start and not is_postgresql(db):
            time.sleep(SQLITE_PAUSE_SECONDS)
        with unit_of_work(db) as session:
            chunk = ids[start : start + batch]
            current = {
                a.id: a
                for a in session.exec(
                    select(Account).where(col(Account.id).in_([i for i, _ in chunk]))
                )
            }
            fresh = []
            for account_id, candidate in chunk:
                account = current.get(account_id)
                if account is None or not _still_due(account, candidate):
                    result.skipped += 1
                    continue
                fresh.append(replace(candidate, account=account))
            orders += _phase_one(session, fresh, result, now=now, config=config, dry_run=False)
    return orders


def _still_due(account: Account, candidate: lowbalance.Candidate) -> bool:
    """The plan may be a few seconds old: a top-up or a STOP since then cancels the action."""
    return (
        not account.opted_out
        and account.balance_cents < candidate.settings.low_balance_threshold_cents
        and account.episode_prompts == candidate.account.episode_prompts
    )


def _phase_one(
    session: Session,
    candidates: list[lowbalance.Candidate],
    result: ScanResult,
    *,
    now: datetime,
    config: EngineConfig,
    dry_run: bool,
) -> list[funding.ChargeOrder]:
    offers = [c for c in candidates if c.action is not Action.AUTOPAY]
    for queued in _make_offers(session, offers, result, now=now, config=config):
        send_after = queued.send_after or now
        result.prompted += 1
        result.held += int(send_after > now)
        if dry_run:
            result.planned.append(
                {"phone": queued.phone, "kind": queued.kind,
                 "send_after": send_after.isoformat(), "body": queued.body}
            )  # fmt: skip
    orders: list[funding.ChargeOrder] = []
    for candidate in candidates:
        if candidate.action is not Action.AUTOPAY:
            continue
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
    return orders


def _make_offers(
    session: Session,
    candidates: list[lowbalance.Candidate],
    result: ScanResult,
    *,
    now: datetime,
    config: EngineConfig,
) -> list[lowbalance.QueuedText]:
    """All the batch's offers at once; if another scan got to one of them first, the batch is
    undone and made again one offer at a time, skipping the ones already made."""
    try:
        with session.begin_nested():
            batch = lowbalance.make_offers(session, candidates, now=now, config=config)
        result.skipped += len(candidates) - len(batch)
        return batch
    except IntegrityError:
        session.expire_all()  # the undone changes to the accounts must not linger
    queued: list[lowbalance.QueuedText] = []
    for candidate in candidates:
        account = session.get(Account, candidate.account.id)
        if account is None:
            result.skipped += 1
            continue
        try:
            with session.begin_nested():
                made = lowbalance.make_offer(
                    session, replace(candidate, account=account), now=now, config=config
                )
        except IntegrityError:
            made = None
        if made is None:
            result.skipped += 1
        else:
            queued.append(made)
    return queued
