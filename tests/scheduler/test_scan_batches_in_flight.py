"""The scan's batches in flight at once (two on PostgreSQL, on two connections): accounts that
share a phone split across batches, a batch that fails while the other commits, the one-open-
offer key when a batch's lookup missed an offer, and what a finished or failed scan leaves
behind (threads, connections, the leadership lock)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from scheduler import scan
from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox, prompts_of, scan_now, waiting_on_a_row_lock
from tests.scheduler.test_scan import AFTERNOON, low
from tests.web.twilio_client import TwilioClient
from textpay import lowbalance, offers, prompts
from textpay.db import is_postgresql, unit_of_work
from textpay.labels import unique_labels
from textpay.models import Account
from textpay.policy import effective_for_account
from textpay.sms import RecordingSender
from textpay.timeutil import utcnow

# Account numbers that share their last digits, all on one phone.
SHARED = ["A-14821", "B-24821", "C-4821", "D-99"]


def _one_account_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "BATCH", 1)
    monkeypatch.setattr(scan, "SQLITE_BATCH", 1)


def _scan_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("scan_")]


def test_accounts_on_one_phone_in_different_batches_get_one_offer_each_and_the_cap_holds(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_account_a_batch(monkeypatch)
    sender = RecordingSender()
    with freeze_time(AFTERNOON):
        accounts = [low(admin, account_number=n, nickname="") for n in SHARED]
        result = scan_now(app)
        assert (result.prompted, result.skipped, result.errors) == (4, 0, 0)
        assert scan_now(app).prompted == 0  # one offer each, scan after scan
        labels = unique_labels(SHARED)
        for account, number in zip(accounts, SHARED, strict=True):
            [offer] = prompts_of(engine, account["id"])
            assert offer.label == labels[number]
            [queued] = [m for m in outbox(engine) if m.prompt_id == offer.id]
            assert f"acct ...{labels[number]}" in queued.body or labels[number] in queued.body
        deliver(app, sender)
    # The number's daily cap (3) counts the texts of every batch.
    assert len(sender.sent) == 3
    assert _scan_threads() == []


def test_a_batch_whose_lookup_missed_an_offer_leaves_out_only_that_account(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-open-offer key, hit by the batch's single statement (offers, texts, counters):
    the batch is undone and made again one account at a time; the account already offered is
    skipped (not an error), and its episode counter is not counted twice."""
    with freeze_time(AFTERNOON):
        first = low(admin, account_number="RACE-1", phone="2125550101")
        low(admin, account_number="RACE-2", phone="2125550102")
        with unit_of_work(engine) as session:
            taken = session.get(Account, first["id"])
            assert taken is not None
            prompts.offer(session, taken, effective_for_account(session, taken), now=utcnow())
        monkeypatch.setattr(lowbalance, "busy_accounts", lambda session, ids: set())
        real_look_up = offers.look_up

        def blind(session: Session, ids: Any) -> offers.BatchLookup:
            found = real_look_up(session, ids)
            return offers.BatchLookup(set(), found.cards, found.labels)

        monkeypatch.setattr(offers, "look_up", blind)
        result = scan_now(app)
    assert (result.prompted, result.skipped, result.errors) == (1, 1, 0)
    assert [m.phone for m in outbox(engine)] == ["+12125550102"]
    assert len(prompts_of(engine, first["id"])) == 1
    with unit_of_work(engine) as session:
        again = session.get(Account, first["id"])
        assert again is not None
        assert again.episode_prompts == 0  # the scan counted no offer of its own


def test_a_failing_batch_leaves_no_thread_connection_or_lock_and_the_next_scan_finishes(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_account_a_batch(monkeypatch)
    parts = app.extensions["textpay"]
    with freeze_time(AFTERNOON):
        accounts = [low(admin, account_number=f"F-{n}", phone=f"21255501{n:02d}") for n in range(5)]
        real = scan._still_due
        doomed = accounts[1]["id"]

        def failing(session: Session, chunk: Any, **kwargs: Any) -> Any:
            if any(c.account.id == doomed for c in chunk):
                raise RuntimeError("the database went away")
            return real(session, chunk, **kwargs)

        monkeypatch.setattr(scan, "_still_due", failing)
        with pytest.raises(RuntimeError):
            scan_now(app)
        assert _scan_threads() == []
        if is_postgresql(parts.engine):
            assert parts.engine.pool.checkedout() == 0
            with parts.engine.connect() as connection:  # the leadership lock was given back
                assert connection.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": scan.SCAN_LOCK_KEY}
                ).scalar()
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": scan.SCAN_LOCK_KEY})
                connection.commit()
        monkeypatch.setattr(scan, "_still_due", real)
        result = scan_now(app)
        assert result.errors == 0
    offered = [len(prompts_of(engine, a["id"])) for a in accounts]
    assert offered == [1, 1, 1, 1, 1]  # each account once, over the two scans
    assert len(outbox(engine, kind="prompt")) == 5


def _hold_the_batch_of(monkeypatch: pytest.MonkeyPatch, account_id: int) -> tuple[Any, Any]:
    """The scan, once its batch holding `account_id` has locked the rows and looked them up,
    waits (still holding the locks) until `release` is set; `held` says it got there."""
    held, release = threading.Event(), threading.Event()
    real = offers.look_up

    def holding(session: Session, ids: Any) -> offers.BatchLookup:
        found = real(session, ids)
        if account_id in ids:
            held.set()
            release.wait(20)
        return found

    monkeypatch.setattr(offers, "look_up", holding)
    return held, release


def _while_the_batch_holds_the_row(
    app: Flask, engine: Engine, held: Any, release: Any, action: Any
) -> scan.ScanResult:
    found: list[scan.ScanResult] = []
    scanning = threading.Thread(target=lambda: found.append(scan_now(app)))
    scanning.start()
    assert held.wait(20), "the scan never reached the account's batch"
    acting = threading.Thread(target=action)
    acting.start()
    for _ in range(250):  # the subscriber's or operator's change waits for the locked row
        if waiting_on_a_row_lock(engine):
            break
        threading.Event().wait(0.02)
    else:
        release.set()
        pytest.fail("the change never waited for the scan's row lock")
    release.set()
    scanning.join(30)
    acting.join(30)
    [result] = found
    return result


@pytest.mark.postgres_only
def test_stop_arriving_while_a_batch_holds_the_row_leaves_nothing_to_send(
    app: Flask, admin: AdminClient, engine: Engine, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_account_a_batch(monkeypatch)
    sender = RecordingSender()
    with freeze_time(AFTERNOON):
        other = low(admin, account_number="OTHER-1111", phone="2125550111")
        stopping = low(admin, account_number="ACCT-4821")  # MOM
        held, release = _hold_the_batch_of(monkeypatch, stopping["id"])
        _while_the_batch_holds_the_row(
            app, engine, held, release, lambda: TwilioClient(client).text("+12125550147", "STOP")
        )
        deliver(app, sender)
    assert [phone for phone, _ in sender.sent] == ["+12125550111"]
    assert [p.status for p in prompts_of(engine, stopping["id"])] in ([], ["cancelled"])
    assert len(prompts_of(engine, other["id"])) == 1


@pytest.mark.postgres_only
def test_a_phone_changed_while_a_batch_holds_the_row_sends_the_old_number_nothing(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_account_a_batch(monkeypatch)
    sender = RecordingSender()
    with freeze_time(AFTERNOON):
        low(admin, account_number="OTHER-1111", phone="2125550111")
        moving = low(admin, account_number="ACCT-4821")  # MOM
        held, release = _hold_the_batch_of(monkeypatch, moving["id"])

        def move() -> None:
            response = admin.patch(f"/admin/accounts/{moving['id']}", json={"phone": "2125550199"})
            assert response.status_code == 200, response.get_json()

        _while_the_batch_holds_the_row(app, engine, held, release, move)
        deliver(app, sender)
        assert "+12125550147" not in [phone for phone, _ in sender.sent]
        # The new number is owed its own offer, at the next scan.
        assert scan_now(app).prompted == 1
        deliver(app, sender)
    assert sorted(phone for phone, _ in sender.sent) == ["+12125550111", "+12125550199"]
