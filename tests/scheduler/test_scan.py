"""The low-balance scan: one offer per episode, at an allowed hour, for the right accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from scheduler import expire
from tests.conftest import AdminClient
from tests.scheduler.helpers import (
    count_prompts,
    deliver,
    outbox,
    prompts_of,
    run_queued_scans,
    scan_now,
)
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient
from textpay import lowbalance
from textpay.models import Account
from textpay.sms import RecordingSender
from webhooks.cli import cli

# 2:05pm in New York (EST, UTC-5) on a Thursday.
AFTERNOON = "2026-11-26 19:05:00"


def low(admin: AdminClient, cents: int = 310, **fields: Any) -> dict[str, Any]:
    account = admin.enrol(**fields)
    admin.credit(account["id"], 1000, f"seed-{account['id']}")
    admin.usage(account["id"], 1000 - cents, f"calls-{account['id']}")
    return account


def test_a_low_account_gets_one_offer_per_episode(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin)
        healthy = admin.enrol(account_number="RICH-1", phone="2125550100")
        admin.credit(healthy["id"], 5000, "seed-rich")

        first = scan_now(app)
        assert (first.prompted, first.held, first.skipped) == (1, 0, 0)
        [offer] = outbox(engine)
        assert offer.engine_initiated
        assert offer.kind == "prompt"
        assert "acct ...4821 (Mom): balance $3.10 as of 2:05pm" in offer.body
        assert "Reply YES to add $25.00" in offer.body
        assert "Offer ends 2:05pm tomorrow" in offer.body

        # The same episode: no second offer, scan after scan.
        for _ in range(3):
            clock.tick(timedelta(minutes=5))
            assert scan_now(app).prompted == 0
        assert count_prompts(engine) == 1
        [prompt] = prompts_of(engine, account["id"])
        assert prompt.expires_at == datetime(2026, 11, 27, 19, 5, tzinfo=UTC)


def test_the_offer_reaches_the_subscriber_and_yes_funds_it(
    app: Flask, admin: AdminClient, client: Any
) -> None:
    sender = RecordingSender()
    with freeze_time(AFTERNOON):
        account = low(admin)
        scan_now(app)
        assert deliver(app, sender).sent == 1
        [(to, body)] = sender.sent
        assert to == MOM
        assert "Reply YES" in body
        assert "added $25.00" in TwilioClient(client).text(MOM, "YES")
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["balance_cents"] == 2810


def test_topping_up_re_arms_the_account_for_a_new_episode(
    app: Flask, admin: AdminClient, engine: Engine, client: Any
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin)
        scan_now(app)
        deliver(app, RecordingSender())
        TwilioClient(client).text(MOM, "YES")  # $28.10: back above the $5.00 threshold
        clock.tick(timedelta(hours=1))
        assert scan_now(app).prompted == 0
        admin.usage(account["id"], 2500, "long-call")  # $3.10 again: a new episode
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).prompted == 1
    assert [p.status for p in prompts_of(engine, account["id"])] == ["funded", "pending"]


def test_one_reminder_after_the_cooldown_and_no_more(
    app: Flask, admin: AdminClient, engine: Engine, client: Any
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin)
        scan_now(app)
        deliver(app, RecordingSender())
        TwilioClient(client).text(MOM, "NO")
        clock.tick(timedelta(hours=71))
        assert scan_now(app).prompted == 0  # cooldown is 72 hours
        clock.tick(timedelta(hours=1, minutes=1))
        assert scan_now(app).prompted == 1
        assert [m.kind for m in outbox(engine)] == ["prompt", "reminder"]
        clock.tick(timedelta(days=10))
        assert scan_now(app).prompted == 0
    assert len(prompts_of(engine, account["id"])) == 2


def test_an_offer_made_at_night_waits_for_morning_and_lasts_from_then(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time("2026-11-27 03:30:00") as clock:  # 10:30pm in New York
        account = low(admin)
        result = scan_now(app)
        assert (result.prompted, result.held) == (1, 1)
        [offer] = outbox(engine)
        morning = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)  # 8:00am in New York
        assert offer.send_after == morning
        [prompt] = prompts_of(engine, account["id"])
        assert prompt.expires_at == morning + timedelta(hours=24)
        assert deliver(app, sender).sent == 0
        clock.move_to("2026-11-27 13:00:01")
        assert deliver(app, sender).sent == 1


def test_stricter_states_and_unknown_zones_are_respected(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time("2026-11-27 01:30:00"):  # 8:30pm New York, 7:30pm Chicago
        low(admin, account_number="FL-1", phone="(305) 555-0100")  # Florida: until 8pm
        low(admin, account_number="NY-1", phone="(212) 555-0100")  # New York: until 9pm
        low(admin, account_number="TX-1", phone="(214) 555-0100", timezone="America/Chicago")
        scan_now(app)
        waiting = {m.phone: m.send_after for m in outbox(engine)}
    now = datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
    assert waiting["+13055550100"] == datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    assert waiting["+12125550100"] == now
    assert waiting["+12145550100"] == now


def test_an_operator_added_state_window_holds_offers(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    table = {"TX": ["09:00", "20:00"]}
    assert admin.patch("/admin/settings", json={"state_quiet_hours": table}).status_code == 200
    with freeze_time("2026-11-27 14:30:00"):  # 8:30am in Dallas
        low(admin, account_number="TX-1", phone="(214) 555-0100")
        scan_now(app)
        [offer] = outbox(engine)
    assert offer.send_after == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 9:00am in Dallas


def test_who_is_left_out(app: Flask, admin: AdminClient, engine: Engine, client: Any) -> None:
    with freeze_time(AFTERNOON):
        low(admin, account_number="OFF-1", phone="2125550101", textpay_enabled=False)
        low(admin, account_number="NOCARD-1", phone="2125550102", payment_method=None)
        low(admin, account_number="STOP-1", phone="2125550103")
        TwilioClient(client).text("+12125550103", "STOP")
        low(admin, account_number="FINE-1", phone="2125550104", threshold_cents=200)
        result = scan_now(app)
    assert result.prompted == 0
    assert outbox(engine) == []


def test_facility_thresholds_apply(app: Flask, admin: AdminClient, engine: Engine) -> None:
    admin.put("/admin/facilities/HARRIS", json={"low_balance_threshold_cents": 1500})
    with freeze_time(AFTERNOON):
        low(admin, cents=1200, facility="HARRIS")  # above the global $5, below Harris's $15
        assert scan_now(app).prompted == 1


def test_dry_run_prints_the_offer_and_changes_nothing(
    admin: AdminClient, engine: Engine, database_url: str
) -> None:
    with freeze_time(AFTERNOON):
        low(admin)
        result = CliRunner().invoke(cli, ["scan", "--dry-run"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "prompt to +12125550147" in result.output
    assert "Reply YES to add $25.00" in result.output
    assert "would have: prompted 1" in result.output
    assert outbox(engine) == []
    assert count_prompts(engine) == 0


def test_the_admin_api_queues_the_scan_and_the_clock_runs_it(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """`POST /admin/scan` answers at once, having run nothing; the clock's job runs it."""
    with freeze_time(AFTERNOON) as clock:
        low(admin)
        response = admin.post("/admin/scan", headers={"X-TextPay-Actor": "dana"})
        assert response.status_code == 202
        queued = response.get_json()
        assert response.headers["Location"] == f"/admin/scans/{queued['id']}"
        assert queued["status"] == "queued"
        assert queued["requested_by"] == "dana"
        assert queued["created_at"] == "2026-11-26T19:05:00+00:00"
        assert (queued["started_at"], queued["finished_at"]) == (None, None)
        assert count_prompts(engine) == 0  # the web worker ran no scan

        clock.tick(timedelta(seconds=2))
        assert run_queued_scans(app).done == 1
        body = admin.get(response.headers["Location"]).get_json()
    assert body["status"] == "done"
    counts = [body[k] for k in ("prompted", "autopay_charged", "held", "skipped", "errors")]
    assert counts == [1, 0, 0, 0, 0]
    assert body["started_at"] == body["finished_at"] == "2026-11-26T19:05:02+00:00"
    assert count_prompts(engine) == 1


def test_offers_expire(app: Flask, admin: AdminClient, engine: Engine) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin)
        scan_now(app)
        clock.tick(timedelta(hours=23))
        assert expire.run(engine) == 0
        clock.tick(timedelta(hours=1, seconds=1))
        assert expire.run(engine) == 1
    assert [p.status for p in prompts_of(engine, account["id"])] == ["expired"]


def _operator_changes_after_the_plan(
    monkeypatch: pytest.MonkeyPatch, account_id: int, **values: Any
) -> None:
    """An operator's PATCH that commits after the scan planned and before its batch."""
    planned = lowbalance.plan

    def plan_then_operator(session: Session, **kwargs: Any) -> lowbalance.Plan:
        result = planned(session, **kwargs)
        session.execute(
            update(Account)
            .where(Account.id == account_id)  # type: ignore[arg-type]
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result

    monkeypatch.setattr(lowbalance, "plan", plan_then_operator)


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_autopay_never_charges_an_account_suspended_after_the_plan(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    with freeze_time(AFTERNOON):
        account = low(admin, autopay_enabled=True)
        _operator_changes_after_the_plan(monkeypatch, account["id"], status=status)
        scan_now(app)
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["status"] == status
    assert charges(engine) == 0, f"a {status} account's card was charged by AutoPay"
    assert deposits(engine) == 0


def test_no_offer_for_an_account_closed_after_the_plan(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with freeze_time(AFTERNOON):
        account = low(admin)
        _operator_changes_after_the_plan(monkeypatch, account["id"], status="closed")
        result = scan_now(app)
    assert result.prompted == 0
    assert prompts_of(engine, account["id"]) == []
