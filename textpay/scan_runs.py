"""Scans an operator asked for (`POST /admin/scan`): queued by the web, run by a clock.

A run moves `queued → running → done | failed`, and each move is a conditional update on the
status it expects, so two clocks never run the same run and a run given up for dead is never
reported done later. The web only ever calls `queue`; the clock's job (`scheduler/queued_scans.py`)
calls `claim`, then `finish`, `fail` or `requeue`.

A running run is kept alive by its runner's heartbeat: a `lease` row named `scan_run:<id>`,
taken with the claim and renewed every `HEARTBEAT` while the scan works. A clock that dies stops
renewing it; `recover` marks its run `failed` once the lease has lapsed (`LEASE_TIME`). A live
scan can take as long as it needs (each AutoPay charge waits for its card), so age alone never
fails a run.

Functions take a session and never commit (docs/architecture.md, Layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from textpay import audit
from textpay.errors import NotFound
from textpay.models import Lease, ScanRun, ScanStatus
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)

HEARTBEAT = timedelta(seconds=10)
LEASE_TIME = timedelta(seconds=60)
LEASE_PREFIX = "scan_run:"


@dataclass(frozen=True)
class Counts:
    """What a finished scan did, as `GET /admin/scans/{id}` reports it."""

    prompted: int = 0
    autopay_charged: int = 0
    held: int = 0
    skipped: int = 0
    errors: int = 0


def lease_name(run_id: int) -> str:
    return f"{LEASE_PREFIX}{run_id}"


def queue(session: Session, *, requested_by: str, now: datetime | None = None) -> ScanRun:
    """A new queued run, and the audit entry saying who asked for it."""
    moment = now or utcnow()
    run = ScanRun(requested_by=requested_by[:100], created_at=moment)
    session.add(run)
    session.flush()
    audit.record(session, actor=requested_by[:100], action="scan.queue", entity_type="scan_run",
                 entity_id=run.id, before=None, after=audit.snapshot(run), now=moment)  # fmt: skip
    return run


def get(session: Session, run_id: int) -> ScanRun:
    run = session.get(ScanRun, run_id)
    if run is None:
        raise NotFound(f"scan {run_id} does not exist")
    return run


def recent(session: Session, *, limit: int, before_id: int | None = None) -> list[ScanRun]:
    """Runs newest first; `before_id` pages back."""
    statement = select(ScanRun)
    if before_id is not None:
        statement = statement.where(col(ScanRun.id) < before_id)
    return list(session.exec(statement.order_by(col(ScanRun.id).desc()).limit(limit)))


def claim(session: Session, *, holder: str, now: datetime | None = None) -> ScanRun | None:
    """Take the oldest queued run for `holder`, or None when none is queued.

    The candidate is read with `FOR UPDATE SKIP LOCKED` on PostgreSQL (a run another clock is
    claiming is passed over, not waited for; SQLite's writers take turns anyway) and taken by a
    conditional update on `status = 'queued'`, so one run is only ever claimed once. The
    heartbeat lease is taken in the same transaction."""
    moment = now or utcnow()
    for _ in range(3):
        candidate = session.exec(
            select(ScanRun.id)
            .where(ScanRun.status == ScanStatus.QUEUED.value)
            .order_by(col(ScanRun.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if candidate is None:
            return None
        taken = session.execute(
            update(ScanRun)
            .where(col(ScanRun.id) == candidate, col(ScanRun.status) == ScanStatus.QUEUED.value)
            .values(status=ScanStatus.RUNNING.value, started_at=moment)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not taken:
            continue  # another clock took it between the read and the update: the next one
        _drop_lease(session, candidate)
        session.add(
            Lease(name=lease_name(candidate), holder=holder, expires_at=moment + LEASE_TIME)
        )
        return session.get(ScanRun, candidate, populate_existing=True)
    return None


def beat(session: Session, run_id: int, *, holder: str, now: datetime | None = None) -> bool:
    """Renew a running run's lease; False if it is no longer `holder`'s (the run was recovered)."""
    renewed = session.execute(
        update(Lease)
        .where(col(Lease.name) == lease_name(run_id), col(Lease.holder) == holder)
        .values(expires_at=(now or utcnow()) + LEASE_TIME)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return bool(renewed)


def finish(session: Session, run_id: int, counts: Counts, *, now: datetime | None = None) -> bool:
    """Record a running run's result: `done`. False if the run was no longer running (it was
    given up for dead meanwhile), in which case nothing changes."""
    return _end(session, run_id, ScanStatus.DONE, now=now, prompted=counts.prompted,
                autopay_charged=counts.autopay_charged, held=counts.held,
                skipped=counts.skipped, errors=counts.errors)  # fmt: skip


def fail(session: Session, run_id: int, *, now: datetime | None = None) -> bool:
    """A running run whose scan raised: `failed`, the failure counted in `errors`."""
    return _end(session, run_id, ScanStatus.FAILED, now=now, errors=col(ScanRun.errors) + 1)


def requeue(session: Session, run_id: int) -> bool:
    """Give a claimed run back to the queue (another scanner leads now): it is `queued` again,
    keeps its place (the oldest is claimed first) and is tried on the job's next tick."""
    given_back = session.execute(
        update(ScanRun)
        .where(col(ScanRun.id) == run_id, col(ScanRun.status) == ScanStatus.RUNNING.value)
        .values(status=ScanStatus.QUEUED.value, started_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    _drop_lease(session, run_id)
    return bool(given_back)


def recover(session: Session, *, now: datetime | None = None) -> list[int]:
    """Fail the running runs whose clock died: their lease lapsed (or was never taken) and they
    started more than `LEASE_TIME` ago. Their failure is counted in `errors`. Returns their ids."""
    moment = now or utcnow()
    running = list(session.exec(select(ScanRun).where(ScanRun.status == ScanStatus.RUNNING.value)))
    if not running:
        return []
    live = set(
        session.exec(
            select(Lease.name).where(
                col(Lease.name).in_([lease_name(r.id) for r in running if r.id is not None]),
                col(Lease.expires_at) > moment,
            )
        )
    )
    recovered = []
    for run in running:
        assert run.id is not None
        if lease_name(run.id) in live:
            continue
        if run.started_at is not None and run.started_at > moment - LEASE_TIME:
            continue
        if _end(session, run.id, ScanStatus.FAILED, now=moment, errors=col(ScanRun.errors) + 1):
            log.warning("scan %s: its clock stopped while it ran; marked failed", run.id)
            recovered.append(run.id)
    return recovered


def _end(session: Session, run_id: int, status: ScanStatus, *, now: datetime | None,
         **values: object) -> bool:  # fmt: skip
    ended = session.execute(
        update(ScanRun)
        .where(col(ScanRun.id) == run_id, col(ScanRun.status) == ScanStatus.RUNNING.value)
        .values(status=status.value, finished_at=now or utcnow(), **values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    _drop_lease(session, run_id)
    return bool(ended)


def _drop_lease(session: Session, run_id: int) -> None:
    session.execute(
        delete(Lease)
        .where(col(Lease.name) == lease_name(run_id))
        .execution_options(synchronize_session=False)
    )
