"""AutoPay: the scan charges enrolled accounts itself, declines retry on a schedule, limits hold."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import scan
from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, prompts_of, scan_now
from tests.scheduler.test_scan import AFTERNOON, low
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient
from textpay import lowbalance
from textpay.db import is_postgresql, unit_of_work
from textpay.models import Account, ConsentEvent, Lease
from textpay.timeutil import utcnow


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def test_autopay_charges_the_preset_and_sends_a_receipt(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True)
        result = scan_now(app)
        assert (result.autopay_charged, result.prompted) == (1, 0)
        assert balance(admin, account["id"]) == 2810
        [receipt] = outbox(engine)
        assert receipt.kind == "autopay_receipt"
        assert receipt.engine_initiated
        assert "AutoPay added $25.00 to acct ...4821 (Mom). New balance $28.10" in receipt.body
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 0  # back above the threshold
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert prompts_of(engine, account["id"]) == []


def test_a_declining_card_is_retried_on_schedule_then_autopay_turns_off(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(
            admin, autopay_enabled=True, payment_method={"token": "tok_insufficientFunds"}
        )
        assert scan_now(app).autopay_declined == 1
        clock.tick(timedelta(hours=23))
        assert scan_now(app).autopay_declined == 0  # not before the retry is due
        clock.tick(timedelta(hours=1, minutes=1))
        assert scan_now(app).autopay_declined == 1  # +1 day
        clock.tick(timedelta(days=2))
        assert scan_now(app).autopay_declined == 0
        clock.tick(timedelta(days=1, minutes=1))
        assert scan_now(app).autopay_declined == 1  # +3 days: the last try
        shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
        assert shown["autopay_enabled"] is False
        # Falls back to TextPay: the next scan offers a top-up by text instead.
        clock.tick(timedelta(minutes=5))
        fallback = scan_now(app)
        assert (fallback.prompted, fallback.autopay_declined) == (1, 0)

    texts = outbox(engine)
    assert [m.kind for m in texts] == [
        "autopay_declined",
        "autopay_declined",
        "autopay_disabled",
        "prompt",
    ]
    assert "card ...9995 (insufficient funds)" in texts[0].body
    assert "We'll try again Nov 27 2:05pm" not in texts[0].body
    assert "try again 2:05pm tomorrow" in texts[0].body
    assert "AutoPay is now off" in texts[2].body
    assert charges(engine) == 3
    assert deposits(engine) == 0
    assert balance(admin, account["id"]) == 310
    with unit_of_work(engine) as session:
        [event] = session.exec(select(ConsentEvent)).all()
    assert (event.kind, event.source) == ("autopay_off", "system")


def test_autopay_never_charges_past_the_daily_limit(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    limits = {"daily_deposit_limit_cents": 5000, "max_deposit_cents": 5000}
    assert admin.patch("/admin/settings", json=limits).status_code == 200
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True)
        for call in range(3):
            assert scan_now(app).autopay_charged == (1 if call < 2 else 0)
            admin.usage(account["id"], 2500, f"call-{call}")  # drained again
            clock.tick(timedelta(minutes=10))
        result = scan_now(app)
        assert (result.autopay_charged, result.skipped) == (0, 1)
    assert charges(engine) == 2
    assert deposits(engine) == 2


def test_autopay_is_skipped_while_a_charge_is_in_flight(
    app: Flask, admin: AdminClient, engine: Engine, settings: Any
) -> None:
    with freeze_time(AFTERNOON):
        low(admin, autopay_enabled=True, payment_method={"token": "tok_slow"})
        first = scan_now(app, gateway_timeout=0.05)
        assert first.autopay_pending == 1
        second = scan_now(app, gateway_timeout=0.05)
        assert (second.autopay_pending, second.skipped) == (0, 1)
    assert charges(engine) == 1


def test_one_autopay_charge_per_low_episode_even_while_still_below_the_threshold(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Threshold $60, preset $25, balance $10: one charge brings it to $35, still low. Scans
    every few minutes used to charge again each time; the episode ends only at $60."""
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, cents=1000, autopay_enabled=True, threshold_cents=6000)
        assert scan_now(app).autopay_charged == 1
        for _ in range(3):
            clock.tick(timedelta(minutes=5))
            assert scan_now(app).autopay_charged == 0
        assert balance(admin, account["id"]) == 3500
        # Back at the threshold, the episode ends; the next time it runs low, AutoPay charges.
        assert admin.credit(account["id"], 2500, "goodwill").status_code == 201
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 0
        admin.usage(account["id"], 5000, "long-calls")  # $10.00 again: a new episode
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 1
    assert charges(engine) == 2
    assert [m.kind for m in outbox(engine)] == ["autopay_receipt", "autopay_receipt"]


def test_autopay_on_after_it_turned_itself_off_starts_a_fresh_schedule(
    app: Flask, admin: AdminClient, engine: Engine, client: Any
) -> None:
    """Three declines turned AutoPay off. The subscriber turns it back on: the next decline is
    the first of a new schedule (a retry in a day), not a fourth that turns it off at once."""
    with freeze_time(AFTERNOON) as clock:
        account = low(
            admin, autopay_enabled=True, payment_method={"token": "tok_insufficientFunds"}
        )
        for wait in (timedelta(days=1, minutes=1), timedelta(days=3, minutes=1), None):
            assert scan_now(app).autopay_declined == 1
            if wait:
                clock.tick(wait)
        assert admin.get(f"/admin/accounts/{account['id']}").get_json()["autopay_enabled"] is False
        TwilioClient(client).text(MOM, "AUTOPAY ON")
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_declined == 1  # a new try, under a new slot
        shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
        assert shown["autopay_enabled"] is True
    with unit_of_work(engine) as session:
        row = session.get(Account, account["id"])
        assert row is not None
        assert row.autopay_failures == 1
        assert row.autopay_retry_at is not None
        assert row.autopay_retry_at - row.updated_at == timedelta(days=1)
    assert [m.kind for m in outbox(engine)][-1] == "autopay_declined"


def test_a_stale_plan_never_charges_a_card_that_just_declined(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two scanners planned at the same moment; the first charged and got a decline. The
    second must see the decline on the fresh row and wait for the retry, not charge again."""
    with freeze_time(AFTERNOON):
        low(admin, autopay_enabled=True, payment_method={"token": "tok_insufficientFunds"})
        with unit_of_work(engine) as session:
            stale = lowbalance.plan(session, now=utcnow())
        assert [c.action for c in stale.candidates] == [lowbalance.Action.AUTOPAY]
        assert scan_now(app).autopay_declined == 1
        monkeypatch.setattr(lowbalance, "plan", lambda session, now: stale)
        second = scan_now(app)
    assert (second.autopay_declined, second.autopay_charged, second.skipped) == (0, 0, 1)
    assert charges(engine) == 1


def test_a_second_scanner_steps_aside_while_the_first_holds_the_lead(
    app: Flask, admin: AdminClient, engine: Engine, database_url: str
) -> None:
    """On SQLite the lead is the `scan` lease row; on PostgreSQL an advisory lock. Held by
    another process, a scan does nothing; given back, the next scan does the work once."""
    with freeze_time(AFTERNOON):
        low(admin, autopay_enabled=True)
        with held_scan_lead(engine):
            result = scan_now(app)
            assert result.leader is False
            assert charges(engine) == 0
        assert scan_now(app).autopay_charged == 1
        assert scan_now(app).autopay_charged == 0
    assert charges(engine) == 1


@contextmanager
def held_scan_lead(engine: Engine) -> Iterator[None]:
    if is_postgresql(engine):
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": scan.SCAN_LOCK_KEY})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": scan.SCAN_LOCK_KEY})
                connection.commit()
        return
    with unit_of_work(engine) as session:
        session.merge(Lease(name=scan.SCAN_LEASE, holder="another-host:1:clock",
                            expires_at=utcnow() + timedelta(minutes=2)))  # fmt: skip
    try:
        yield
    finally:
        with unit_of_work(engine) as session:
            session.merge(Lease(name=scan.SCAN_LEASE, holder="", expires_at=utcnow()))


def test_a_lease_left_by_a_dead_scanner_on_this_host_is_taken_at_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """A clock killed mid-scan on SQLite leaves its lease; the next scan need not wait for it
    to lapse when its holder's process is gone."""
    if is_postgresql(engine):
        pytest.skip("PostgreSQL releases an advisory lock when its session dies")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with freeze_time(AFTERNOON):
        low(admin, autopay_enabled=True)
        with unit_of_work(engine) as session:
            session.merge(Lease(name=scan.SCAN_LEASE, holder=f"{socket.gethostname()}:{gone.pid}:x",
                                expires_at=utcnow() + timedelta(minutes=10)))  # fmt: skip
        assert scan_now(app).autopay_charged == 1
