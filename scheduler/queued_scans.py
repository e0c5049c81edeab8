"""Job: run the scans operators queued (`POST /admin/scan`), every `POLL_SECONDS`.

Each tick first fails the runs whose clock died (their heartbeat lapsed), then claims the oldest
queued run, runs `scheduler.scan.run` with a heartbeat beside it, and records the result, until
none is queued. A scan that raises leaves its run `failed` with the failure counted in `errors`;
a scan that went on past failing accounts is `done`, with those accounts in `errors`.

If another scanner leads (this clock's own periodic scan, or another clock's), the scan steps
aside having done nothing: its run goes back to `queued`, keeps its place and is tried again on
the next tick, so it is never reported done for work it did not do.

The web never runs a scan: a sync worker has a 12 s timeout and a scan waits for every AutoPay
charge (docs/architecture.md, Flows).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy.engine import Engine

from scheduler import scan
from textpay import scan_runs
from textpay.db import unit_of_work
from textpay.engine_config import EngineConfig
from textpay.payments import PaymentGateway

log = logging.getLogger(__name__)

POLL_SECONDS = 3


@dataclass
class QueueCounts:
    done: int = 0
    failed: int = 0
    requeued: int = 0
    recovered: int = 0


def run(
    db: Engine,
    gateway: PaymentGateway,
    config: EngineConfig,
    *,
    gateway_timeout: float = 8.0,
    heartbeat_seconds: float | None = None,
) -> QueueCounts:
    """One tick: recover dead clocks' runs, then run every queued scan, oldest first."""
    counts = QueueCounts()
    with unit_of_work(db) as session:
        counts.recovered = len(scan_runs.recover(session))
    holder = scan.lease_holder()
    every = scan_runs.HEARTBEAT.total_seconds() if heartbeat_seconds is None else heartbeat_seconds
    while True:
        with unit_of_work(db) as session:
            claimed = scan_runs.claim(session, holder=holder)
        if claimed is None:
            return counts
        assert claimed.id is not None
        run_id = claimed.id
        log.info("scan %s (asked for by %s) started", run_id, claimed.requested_by)
        try:
            with _Heartbeat(db, run_id, holder, every):
                result = scan.run(db, gateway, config, gateway_timeout=gateway_timeout)
        except Exception:
            log.exception("scan %s failed", run_id)
            with unit_of_work(db) as session:
                scan_runs.fail(session, run_id)
            counts.failed += 1
            continue
        if not result.leader:
            with unit_of_work(db) as session:
                scan_runs.requeue(session, run_id)
            log.info("scan %s waits: another scanner leads", run_id)
            counts.requeued += 1
            return counts  # the next tick tries again
        with unit_of_work(db) as session:
            recorded = scan_runs.finish(session, run_id, _counts(result))
        if recorded:
            counts.done += 1
        else:
            log.warning("scan %s finished after it was given up for dead: %s", run_id,
                        result.counts())  # fmt: skip


def _counts(result: scan.ScanResult) -> scan_runs.Counts:
    return scan_runs.Counts(
        prompted=result.prompted,
        autopay_charged=result.autopay_charged,
        held=result.held,
        skipped=result.skipped,
        errors=result.errors,
    )


class _Heartbeat:
    """Renews a run's lease every `every` seconds in a thread of its own while the scan works,
    so that only a clock that died lets it lapse."""

    def __init__(self, db: Engine, run_id: int, holder: str, every: float) -> None:
        self._db = db
        self._run_id = run_id
        self._holder = holder
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"scan-{run_id}-heartbeat", daemon=True
        )

    def __enter__(self) -> _Heartbeat:
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with unit_of_work(self._db) as session:
                    if not scan_runs.beat(session, self._run_id, holder=self._holder):
                        log.warning("scan %s: its lease was lost", self._run_id)
            except Exception:
                log.exception("scan %s: heartbeat failed", self._run_id)
