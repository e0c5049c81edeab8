"""AutoPay: the scan charges enrolled accounts itself, declines retry on a schedule, limits hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, prompts_of, scan_now
from tests.scheduler.test_scan import AFTERNOON, low
from tests.web.conftest import charges, deposits
from textpay.db import unit_of_work
from textpay.models import ConsentEvent


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
