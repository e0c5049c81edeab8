"""Scans operators queue (`POST /admin/scan`): listed and audited, claimed once, run by the
clock's job, failed when they fail or when their clock dies, and kept waiting while another
scanner leads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from scheduler import clock as clock_module
from scheduler import queued_scans, scan
from tests.conftest import AdminClient
from tests.scheduler.helpers import count_prompts, run_queued_scans
from tests.scheduler.test_scan import AFTERNOON, low
from textpay import scan_runs
from textpay.config import Settings
from textpay.db import make_engine, unit_of_work
from textpay.models import Lease, ScanRun
from textpay.sms import RecordingSender
from textpay.wiring import build


def queue(admin: AdminClient, who: str = "dana") -> dict[str, Any]:
    response = admin.post("/admin/scan", headers={"X-TextPay-Actor": who})
    assert response.status_code == 202, response.get_json()
    queued: dict[str, Any] = response.get_json()
    return queued


def scan_of(admin: AdminClient, scan_id: int) -> dict[str, Any]:
    response = admin.get(f"/admin/scans/{scan_id}")
    assert response.status_code == 200, response.get_json()
    found: dict[str, Any] = response.get_json()
    return found


def test_recent_scans_newest_first_in_pages_and_who_queued_each_is_audited(
    admin: AdminClient,
) -> None:
    ids = [queue(admin, who)["id"] for who in ("dana", "eli", "fay")]

    first = admin.get("/admin/scans?limit=2").get_json()
    assert [s["id"] for s in first["scans"]] == ids[::-1][:2]
    assert first["next_before"] == ids[1]
    rest = admin.get(f"/admin/scans?limit=2&before={first['next_before']}").get_json()
    assert [s["id"] for s in rest["scans"]] == [ids[0]]
    assert rest["next_before"] is None
    assert [s["requested_by"] for s in admin.get("/admin/scans").get_json()["scans"]] == [
        "fay", "eli", "dana"
    ]  # fmt: skip
    assert admin.get("/admin/scans?limit=101").status_code == 422  # bounded

    trail = admin.get("/admin/audit?entity_type=scan_run").get_json()["entries"]
    assert [(e["actor"], e["action"], e["entity_id"]) for e in trail] == [
        ("fay", "scan.queue", str(ids[2])), ("eli", "scan.queue", str(ids[1])),
        ("dana", "scan.queue", str(ids[0])),
    ]  # fmt: skip

    missing = admin.get("/admin/scans/999999")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


def test_a_scan_that_raises_is_failed_with_the_error_counted(
    app: Flask, admin: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = scan.run

    def broken(*args: Any, **kwargs: Any) -> scan.ScanResult:
        raise RuntimeError("the database went away")

    with freeze_time(AFTERNOON) as clock:
        low(admin)
        first = queue(admin)["id"]
        second = queue(admin)["id"]
        monkeypatch.setattr(scan, "run", broken)
        clock.tick(timedelta(seconds=3))
        counts = run_queued_scans(app)
    assert (counts.failed, counts.done) == (2, 0)  # one failure does not stop the job
    failed = scan_of(admin, first)
    assert failed["status"] == "failed"
    assert failed["errors"] == 1
    assert failed["finished_at"] == "2026-11-26T19:05:03+00:00"

    monkeypatch.setattr(scan, "run", real_run)
    queued_again = queue(admin)["id"]
    assert run_queued_scans(app).done == 1
    assert scan_of(admin, second)["status"] == "failed"
    assert scan_of(admin, queued_again)["status"] == "done"


def test_a_scan_waits_queued_while_another_scanner_leads(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Another scanner leading is not a scan that found nothing: the run goes back to the queue
    and is run, with its real counts, once the lead is free."""
    with freeze_time(AFTERNOON):
        low(admin)
        queued = queue(admin)["id"]
        with scan._leadership(engine) as lead:  # another clock's scan, under way
            assert lead is not None
            counts = run_queued_scans(app)
            assert (counts.requeued, counts.done) == (1, 0)
            waiting = scan_of(admin, queued)
            assert (waiting["status"], waiting["started_at"]) == ("queued", None)
            assert count_prompts(engine) == 0
        assert run_queued_scans(app).done == 1
    done = scan_of(admin, queued)
    assert (done["status"], done["prompted"]) == ("done", 1)


def test_a_run_whose_clock_died_is_failed_once_its_lease_lapses(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON) as clock:
        dead = queue(admin)["id"]
        alive = queue(admin)["id"]
        with unit_of_work(engine) as session:  # two clocks claim one run each; one dies
            assert scan_runs.claim(session, holder="host-a:1:dead") is not None
            assert scan_runs.claim(session, holder="host-b:2:alive") is not None

        clock.tick(scan_runs.LEASE_TIME - timedelta(seconds=1))
        with unit_of_work(engine) as session:
            assert scan_runs.beat(session, alive, holder="host-b:2:alive")
        assert run_queued_scans(app).recovered == 0  # not yet: its lease still holds
        assert scan_of(admin, dead)["status"] == "running"

        clock.tick(timedelta(seconds=2))
        assert run_queued_scans(app).recovered == 1
    recovered = scan_of(admin, dead)
    assert (recovered["status"], recovered["errors"]) == ("failed", 1)
    assert recovered["finished_at"] == "2026-11-26T19:06:01+00:00"
    assert scan_of(admin, alive)["status"] == "running"  # its clock beats

    # The dead clock was only slow after all: its result is not recorded over the failure.
    with unit_of_work(engine) as session:
        assert not scan_runs.finish(session, dead, scan_runs.Counts(prompted=5))
        assert not scan_runs.beat(session, dead, holder="host-a:1:dead")
    assert scan_of(admin, dead)["prompted"] == 0


def test_the_runner_beats_while_its_scan_works(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = queue(admin)["id"]
    real_run = scan.run
    renewals: list[bool] = []

    def slow(*args: Any, **kwargs: Any) -> scan.ScanResult:
        first = lease_expiry(engine, queued)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and lease_expiry(engine, queued) == first:
            time.sleep(0.02)
        renewals.append(lease_expiry(engine, queued) != first)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(scan, "run", slow)
    assert run_queued_scans(app, heartbeat_seconds=0.05).done == 1
    assert renewals == [True]
    assert lease_expiry(engine, queued) is None  # given back when the run ended


def lease_expiry(engine: Engine, run_id: int) -> Any:
    with unit_of_work(engine) as session:
        lease = session.get(Lease, scan_runs.lease_name(run_id))
        return lease.expires_at if lease else None


def test_the_clock_and_textpay_serve_look_for_queued_scans_every_few_seconds(
    settings: Settings,
) -> None:
    parts = build(settings)
    try:
        job = clock_module.background(parts, RecordingSender()).get_job("queued_scans")
    finally:
        parts.db.dispose()
    assert job is not None
    assert job.trigger.interval <= timedelta(seconds=5)
    assert queued_scans.POLL_SECONDS <= 5


@pytest.fixture
def other_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.mark.postgres_only
def test_two_claimers_never_take_the_same_scan(
    admin: AdminClient, engine: Engine, other_engine: Engine
) -> None:
    ids = [queue(admin)["id"] for _ in range(40)]

    # One clock's claim, not yet committed, holds the oldest run: the other does not wait for
    # it (SKIP LOCKED) but takes the next.
    with Session(engine) as first, Session(other_engine) as second:
        second.execute(text("SET LOCAL lock_timeout = '2s'"))
        taken = scan_runs.claim(first, holder="a")
        other = scan_runs.claim(second, holder="b")
        assert taken is not None
        assert other is not None
        assert (taken.id, other.id) == (ids[0], ids[1])
        first.rollback()
        second.rollback()

    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        mine = claimed.setdefault(name, [])
        own = make_engine(engine.url.render_as_string(hide_password=False))
        start.wait()
        try:
            while True:
                with unit_of_work(own) as session:
                    run = scan_runs.claim(session, holder=name)
                if run is None:
                    return
                assert run.id is not None
                mine.append(run.id)
        finally:
            own.dispose()

    threads = [threading.Thread(target=claimer, args=(f"clock-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [run_id for runs in claimed.values() for run_id in runs]
    assert sorted(everything) == ids  # each run claimed exactly once
    with unit_of_work(engine) as session:
        statuses = set(session.exec(select(ScanRun.status)))
        leases = session.exec(select(Lease.holder).where(Lease.name.startswith("scan_run:")))  # type: ignore[attr-defined]
        assert statuses == {"running"}
        assert len(list(leases)) == len(ids)
