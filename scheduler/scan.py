"""Job: the low-balance scan, with AutoPay charges for enrolled accounts.

Phase 1 (short transactions, in batches; two batches at a time on PostgreSQL): re-arm recovered
accounts, make offers and queue their texts, and record a pending attempt for each AutoPay
charge. Each account's action is decided again on its fresh, locked row just before it is
taken, so a plan a few seconds old never acts on a top-up, a STOP or another scanner's work
since. Phase 2: charge each card, outside any transaction. Phase 3 (a transaction per charge):
`textpay.settlement` finishes it.

One scanner works at a time: on PostgreSQL the holder of an advisory lock, on SQLite the holder
of the `scan` lease row; the others step aside. Unique keys back this up everywhere: one open
offer per account, one AutoPay attempt per slot. One bad account never stops a batch: its
failure is logged, counted in `errors`, and the scan moves on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from textpay import (
    autopay,
    card_expiry,
    episodes,
    funding,
    lowbalance,
    metrics,
    offers,
    settlement,
)
from textpay.db import is_postgresql, on_postgresql, unit_of_work
from textpay.engine_config import EngineConfig
from textpay.lowbalance import Action
from textpay.models import Account, Lease, PaymentMethod
from textpay.payments import PaymentGateway
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)

_Clock = Callable[[], datetime]

# pg_try_advisory_lock key: "TextPay scan" as a 64-bit number.
SCAN_LOCK_KEY = 0x5465787450617953
# The SQLite scanner's lease: renewed after every batch and before every charge, so it lapses
# this long after its holder died, and never while it works. A holder on this host whose
# process is gone frees it at once (SQLite deployments are one host).
SCAN_LEASE = "scan"
LEASE_TIME = timedelta(seconds=30)
# Candidates per phase-1 transaction. On SQLite, whose writers wait by polling (every 1 ms, up
# to every 25 ms in a long wait: `db._begin_immediate`), batches are smaller and the scan pauses
# between them, so that a webhook waiting for the write lock gets it between two batches
# instead of being starved.
BATCH = 500
SQLITE_BATCH = 200
SQLITE_PAUSE_SECONDS = 0.02
# PostgreSQL batches in flight at once (`_offers_and_claims`).
BATCHES_IN_FLIGHT = 2


@dataclass
class ScanResult:
    prompted: int = 0
    autopay_charged: int = 0
    held: int = 0
    skipped: int = 0
    autopay_declined: int = 0
    autopay_pending: int = 0
    # AutoPay charges not attempted because the card on file has expired (also in `skipped`):
    # the card link was texted instead (`textpay.card_expiry`).
    autopay_card_expired: int = 0
    errors: int = 0
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
    """Scan once. `now` pins the clock (tests, `--dry-run`); by default each step is stamped
    with the time it really happens."""

    def clock() -> datetime:
        return now or utcnow()

    started = clock()
    result = ScanResult()
    with _leadership(db) as lease:
        if lease is None:
            result.leader = False
            metrics.SCANS.labels(role="stepped_aside").inc()
            return result
        if dry_run:
            try:
                with unit_of_work(db) as session:
                    plan = lowbalance.plan(session, now=started)
                    _take(session, plan.candidates, result, clock=clock, config=config,
                          dry_run=True)  # fmt: skip
                    result.skipped += plan.skipped
                    raise _DryRun  # roll everything back
            except _DryRun:
                return result
        log.info("scan started")
        begun = time.monotonic()
        orders = _offers_and_claims(db, result, clock=clock, config=config, lease=lease)
        for done, order in enumerate(orders):
            if not lease.renew():
                log.warning("scan: lost the lead; %d AutoPay charges left to the reconciler",
                            len(orders) - done)  # fmt: skip
                break
            _charge(db, gateway, order, result, clock=clock, config=config,
                    timeout=gateway_timeout)  # fmt: skip
        _count(result, seconds=time.monotonic() - begun)
    log.info("scan: %s", result.counts())
    return result


def _count(result: ScanResult, *, seconds: float) -> None:
    """A finished scan in the metrics (`textpay.metrics`): its time and what it did."""
    metrics.SCANS.labels(role="leader").inc()
    metrics.SCAN_SECONDS.observe(seconds)
    for name, value in result.counts().items():
        if value:
            metrics.SCAN_ACCOUNTS.labels(result=name).inc(value)


def _charge(
    db: Engine,
    gateway: PaymentGateway,
    order: funding.ChargeOrder,
    result: ScanResult,
    *,
    clock: _Clock,
    config: EngineConfig,
    timeout: float,
) -> None:
    """Phases 2 and 3 of one AutoPay charge. A failure here leaves the attempt pending for the
    reconciler, which settles it like any other."""
    try:
        outcome = funding.call_gateway(gateway, order, timeout_seconds=timeout)
        if outcome is None:
            result.autopay_pending += 1  # the reconciler settles it when the gateway answers
            return
        with unit_of_work(db) as session:
            settlement.settle(session, order.attempt_id, outcome, now=clock(), config=config,
                              by_reply=False)  # fmt: skip
    except Exception:
        log.exception("scan: AutoPay charge for attempt %s failed", order.attempt_id)
        result.errors += 1
        return
    if outcome.succeeded:
        result.autopay_charged += 1
    else:
        result.autopay_declined += 1


class _Leadership:
    """The scan's leadership while it runs; `renew` keeps an SQLite lease from lapsing."""

    def __init__(self, db: Engine | None = None, holder: str = "") -> None:
        self._db = db
        self._holder = holder

    def renew(self) -> bool:
        """Keep the lead; False if it was lost (the lease lapsed and another scanner took it),
        in which case this scan stops: what it left undone, the other scanner does."""
        return self._db is None or take_lease(self._db, self._holder)


@contextmanager
def _leadership(db: Engine) -> Iterator[_Leadership | None]:
    """On PostgreSQL, a session-level advisory lock on a connection of its own, held for the
    whole scan and released at the end (or by the server if this process dies). On SQLite, the
    `scan` lease row, taken by a conditional update and given back at the end (or lapsing
    `LEASE_TIME` after its holder died). None when another scanner leads."""
    if not is_postgresql(db):
        holder = lease_holder()
        if not take_lease(db, holder):
            yield None
            return
        try:
            yield _Leadership(db, holder)
        finally:
            give_back_lease(db, holder)
        return
    with db.connect() as connection:
        got = bool(
            connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": SCAN_LOCK_KEY}
            ).scalar()
        )
        connection.commit()
        try:
            yield _Leadership() if got else None
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCAN_LOCK_KEY})
                connection.commit()


def take_lease(db: Engine, holder: str, name: str = SCAN_LEASE) -> bool:
    """Take or renew the lease `name` (the scan's, or another job's that runs on one clock at
    a time): given back (no holder), lapsed, or already ours. Real time, not a pinned clock: a
    lease is about processes, not about the time the scan pretends it is."""
    now = utcnow()
    for _ in range(2):
        try:
            with unit_of_work(db) as session:
                current = session.get(Lease, name)
                dead = current.holder if current and _holder_is_gone(current.holder) else holder
                taken = session.execute(
                    update(Lease)
                    .where(
                        col(Lease.name) == name,
                        (col(Lease.holder) == "")
                        | (col(Lease.expires_at) <= now)
                        | col(Lease.holder).in_([holder, dead]),
                    )
                    .values(holder=holder, expires_at=now + LEASE_TIME)
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                if taken:
                    return True
                if current is not None:
                    return False
                session.execute(
                    insert(Lease).values(name=name, holder=holder,
                                         expires_at=now + LEASE_TIME)
                )  # fmt: skip
                return True
        except IntegrityError:
            continue  # another scanner created the row first: try the update again
    return False


def lease_holder() -> str:
    """A lease holder's name, "host:pid:nonce": unique per scan, and read back by
    `_holder_is_gone` to free a lease whose process died on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_gone(holder: str) -> bool:
    """Whether a lease holder ("host:pid:nonce") was a process on this host that has died."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdecimal():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, under another user
    return False


def give_back_lease(db: Engine, holder: str, name: str = SCAN_LEASE) -> None:
    with unit_of_work(db) as session:
        session.execute(
            update(Lease)
            .where(col(Lease.name) == name, col(Lease.holder) == holder)
            .values(holder="")
            .execution_options(synchronize_session=False)
        )


def _offers_and_claims(
    db: Engine, result: ScanResult, *, clock: _Clock, config: EngineConfig, lease: _Leadership
) -> list[funding.ChargeOrder]:
    """Phase 1 in short transactions: the plan, then the candidates in batches, so that a long
    scan never holds a lock that keeps webhooks waiting, and a scan killed midway leaves whole
    batches done for the next one to build on."""
    with unit_of_work(db) as session:
        plan = lowbalance.plan(session, now=clock())
    result.skipped += plan.skipped
    orders: list[funding.ChargeOrder] = []
    postgresql = is_postgresql(db)
    size = BATCH if postgresql else SQLITE_BATCH
    chunks = [plan.candidates[i : i + size] for i in range(0, len(plan.candidates), size)]
    # PostgreSQL: two batches at a time, on two connections, so that one batch's Python (its
    # checks and words) runs while the database writes the other's. Batches never share an
    # account, and each locks and checks its own as when they run one after the other.
    # SQLite, whose writers take turns anyway, runs them one at a time, in this thread.
    with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="scan") as pool:
        running: deque[Future[tuple[ScanResult, list[funding.ChargeOrder]]]] = deque()
        for done, chunk in enumerate(chunks):
            if len(running) == BATCHES_IN_FLIGHT:
                orders += _merge(result, running.popleft().result())
            if done:
                if not lease.renew():
                    log.warning("scan: lost the lead; stopping after %d accounts", done * size)
                    break
                if not postgresql:
                    time.sleep(SQLITE_PAUSE_SECONDS)
            if postgresql:
                running.append(pool.submit(_batch, db, chunk, clock=clock, config=config))
            else:
                orders += _merge(result, _batch(db, chunk, clock=clock, config=config))
        while running:
            orders += _merge(result, running.popleft().result())
    return orders


def _batch(
    db: Engine, chunk: list[lowbalance.Candidate], *, clock: _Clock, config: EngineConfig
) -> tuple[ScanResult, list[funding.ChargeOrder]]:
    """One batch of phase 1 in its own transaction: what it counted, and its AutoPay charges."""
    counted = ScanResult()
    with unit_of_work(db) as session:
        fresh, lookup = _still_due(session, chunk, now=clock())
        counted.skipped += len(chunk) - len(fresh)
        orders = _take(session, fresh, counted, clock=clock, config=config, dry_run=False,
                       lookup=lookup)  # fmt: skip
    return counted, orders


def _merge(
    result: ScanResult, batch: tuple[ScanResult, list[funding.ChargeOrder]]
) -> list[funding.ChargeOrder]:
    """Add a batch's counts to the scan's; its AutoPay charges."""
    counted, orders = batch
    for name, value in counted.counts().items():
        setattr(result, name, getattr(result, name) + value)
    return orders


def _still_due(
    session: Session, chunk: list[lowbalance.Candidate], *, now: datetime
) -> tuple[list[lowbalance.Candidate], offers.BatchLookup | None]:
    """The candidates whose action still stands on their fresh rows, locked (on PostgreSQL)
    until this batch commits: a top-up, a STOP, an AutoPay change or another scanner's offer or
    charge since the plan cancels the action. On PostgreSQL, with the batch's cards and labels,
    read in the statement that finds the busy accounts (`offers.look_up`), once the locks are
    held."""
    ids = [c.account.id for c in chunk]
    current = lowbalance.locked(session, ids)
    lookup = offers.look_up(session, ids) if on_postgresql(session) else None
    busy = lookup.busy if lookup is not None else lowbalance.busy_accounts(session, ids)
    fresh = []
    for candidate in chunk:
        account = current.get(candidate.account.id)
        if account is None or account.opted_out:
            continue
        if not episodes.is_low(account, candidate.settings, now=now):
            continue  # topped up since (above its threshold, and its runway too)
        if account.episode_prompts != candidate.account.episode_prompts:
            continue
        if lowbalance.action_for(account, candidate.settings, busy, now=now) != candidate.action:
            continue
        fresh.append(replace(candidate, account=account))
    return fresh, lookup


def _take(
    session: Session,
    candidates: list[lowbalance.Candidate],
    result: ScanResult,
    *,
    clock: _Clock,
    config: EngineConfig,
    dry_run: bool,
    lookup: offers.BatchLookup | None = None,
) -> list[funding.ChargeOrder]:
    now = clock()
    wanted = [c for c in candidates if c.action is not Action.AUTOPAY]
    for made in _make_offers(session, wanted, result, now=now, config=config, lookup=lookup):
        result.prompted += 1
        result.held += int(made.send_after > now)
        if dry_run:
            result.planned.append(
                {"phone": made.phone, "kind": made.kind,
                 "send_after": made.send_after.isoformat(), "body": made.body}
            )  # fmt: skip
    orders: list[funding.ChargeOrder] = []
    for candidate in candidates:
        if candidate.action is not Action.AUTOPAY:
            continue
        # A charge changes the account: it takes the ORM object (its row is locked already).
        account = session.get(Account, candidate.account.id, populate_existing=True)
        if account is None:
            continue
        expired = card_expiry.expired_card(session, account, now=now)
        if expired is not None:
            _skip_expired_card(session, account, expired, result, now=now, config=config,
                               dry_run=dry_run)  # fmt: skip
            continue
        if not autopay.within_limits(session, account, candidate.settings, now):
            result.skipped += 1
            continue
        if dry_run:
            result.planned.append(
                {"phone": account.phone, "kind": "autopay",
                 "body": f"charge {candidate.settings.preset_amount_cents} cents"}
            )  # fmt: skip
            continue
        try:
            with session.begin_nested():
                # Stamped when it is really made: the reconciler's grace period counts from it.
                orders.append(autopay.begin(session, account, candidate.settings, now=clock()))
        except IntegrityError:
            result.skipped += 1  # this slot's try was already made (another scanner)
        except Exception:
            log.exception("scan: AutoPay attempt for account %s failed", account.id)
            result.errors += 1
    return orders


def _skip_expired_card(
    session: Session,
    account: Account,
    card: PaymentMethod,
    result: ScanResult,
    *,
    now: datetime,
    config: EngineConfig,
    dry_run: bool,
) -> None:
    """No AutoPay charge on a card past its expiry: the card link instead, once per card and
    episode (`textpay.card_expiry.skip_autopay`), and the skip counted each time."""
    result.skipped += 1
    result.autopay_card_expired += 1
    if dry_run:
        result.planned.append(
            {"phone": account.phone, "kind": "autopay_card_expired",
             "body": f"no charge: card ...{card.last4} has expired; the card link instead"}
        )  # fmt: skip
        return
    try:
        with session.begin_nested():
            card_expiry.skip_autopay(session, account, card, now=now, config=config)
    except IntegrityError:
        pass  # another scanner told the subscriber first
    except Exception:
        log.exception("scan: expired-card notice for account %s failed", account.id)
        result.errors += 1


def _make_offers(
    session: Session,
    candidates: list[lowbalance.Candidate],
    result: ScanResult,
    *,
    now: datetime,
    config: EngineConfig,
    lookup: offers.BatchLookup | None = None,
) -> list[offers.MadeOffer]:
    """All the batch's offers at once; if that fails (another scanner got to one of them
    first, or one account cannot be offered), the batch is undone and made again one offer at
    a time, so one account never stops the rest."""
    requests = [offers.OfferRequest(c.account, c.settings, c.action.value) for c in candidates]
    try:
        with session.begin_nested():
            batch = offers.make_queued(session, requests, now=now, config=config,
                                       lookup=lookup)  # fmt: skip
        result.skipped += len(candidates) - len(batch)
        return batch
    except Exception:
        session.expire_all()  # the undone changes to the accounts must not linger
    made: list[offers.MadeOffer] = []
    for request in requests:
        try:
            with session.begin_nested():
                one = offers.make_queued(session, [request], now=now, config=config,
                                         lookup=lookup)  # fmt: skip
        except IntegrityError:
            one = []  # another scanner made this offer first
        except Exception:
            log.exception("scan: offer for account %s failed", request.account.id)
            result.errors += 1
            continue
        result.skipped += 1 - len(one)
        made += one
    return made
