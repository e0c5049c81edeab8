"""Card expiry: a warning 30 days and 7 days before the card on file expires, once each per card,
kept to the sending window and the daily cap, never after STOP nor for a closed account; and
AutoPay never charges an expired card, texting the card link instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import card_expiry as card_expiry_job
from scheduler import clock, scan
from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox, scan_now
from tests.scheduler.test_scan import low
from tests.web.conftest import MOM, charges
from tests.web.twilio_client import TwilioClient
from textpay import card_expiry
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import AuditLogEntry, CardExpiryNotice, Lease
from textpay.sms import RecordingSender
from textpay.timeutil import utcnow
from textpay.wiring import build
from webhooks.cli import cli

# A card printed 03/27, on a New York number: good until 2027-04-01 00:00 EDT (04:00 UTC).
MARCH_2027 = {"token": "tok_visa", "exp_month": 3, "exp_year": 2027}
BEFORE_WARNINGS = "2027-02-28 15:00:00"  # 31 days and 13 hours before
FIRST_WARNING_DAY = "2027-03-02 15:00:00"  # 10am EST: 29 days and 13 hours before
SECOND_WARNING_DAY = "2027-03-25 15:00:00"  # 11am EDT: 6 days and 13 hours before
AFTER_EXPIRY = "2027-04-01 15:00:00"
FIRST_TEXT = (
    "TextPay: card ...4242 on file for acct ...4821 (Mom) expires 03/27. Text CARD to update it."
)


def run_job(app: Flask) -> card_expiry_job.CardExpiryResult:
    parts = app.extensions["textpay"]
    return card_expiry_job.run(parts.engine, parts.engine_config)


def enrol(admin: AdminClient, **fields: Any) -> dict[str, Any]:
    return admin.enrol(timezone="America/New_York", payment_method=MARCH_2027, **fields)


def warnings(engine: Engine) -> list[str]:
    return [m.body for m in outbox(engine, kind="card_expiring")]


def test_one_warning_30_days_before_and_one_7_days_before_however_often_the_job_runs(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time(BEFORE_WARNINGS) as clock:
        enrol(admin)
        assert run_job(app).warned == 0
        clock.move_to(FIRST_WARNING_DAY)
        assert run_job(app).warned == 1
        assert run_job(app).warned == 0  # a rerun, or a second clock's run
        deliver(app, sender)
        clock.tick(timedelta(days=1))
        assert run_job(app).warned == 0
        clock.move_to(SECOND_WARNING_DAY)
        assert run_job(app).warned == 1
        clock.tick(timedelta(hours=2))
        assert run_job(app).warned == 0
        deliver(app, sender)
        clock.move_to(AFTER_EXPIRY)
        assert run_job(app).warned == 0  # expired: no more warnings
    assert [body for _, body in sender.sent] == [FIRST_TEXT, FIRST_TEXT]
    [first, second] = outbox(engine, kind="card_expiring")
    assert first.engine_initiated  # counted against the daily cap, held to the window
    assert first.sent_at == datetime(2027, 3, 2, 15, 0, tzinfo=UTC)
    assert second.sent_at == datetime(2027, 3, 25, 17, 0, tzinfo=UTC)


def test_a_card_added_inside_the_last_7_days_gets_one_warning_not_two(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(SECOND_WARNING_DAY) as clock:
        enrol(admin)
        assert run_job(app).warned == 1
        clock.tick(timedelta(days=1))
        assert run_job(app).warned == 0
    with unit_of_work(engine) as session:
        kinds = [n.kind for n in session.exec(select(CardExpiryNotice))]
    assert kinds == ["7_days"]


def test_a_new_card_is_not_warned_about_and_a_new_expiring_card_is_warned_about_afresh(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(FIRST_WARNING_DAY) as clock:
        account = enrol(admin)
        mine = enrol(admin, account_number="ACCT-5555", phone="(212) 555-0199")
        assert run_job(app).warned == 2
        # One subscriber puts a card good till 2030 on file; the other a card that also
        # expires in March (a new card: its own warning).
        renewed = {"payment_method": {"token": "tok_visa", "exp_month": 12, "exp_year": 2030}}
        assert admin.patch(f"/admin/accounts/{account['id']}", json=renewed).status_code == 200
        another = {"payment_method": {"token": "tok_mastercard", "exp_month": 3, "exp_year": 2027}}
        assert admin.patch(f"/admin/accounts/{mine['id']}", json=another).status_code == 200
        clock.tick(timedelta(days=1))
        assert run_job(app).warned == 1
        clock.move_to(SECOND_WARNING_DAY)
        assert run_job(app).warned == 1
    by_phone = [(m.phone, m.body.split(" on file")[0]) for m in outbox(engine)]
    assert by_phone == [
        (MOM, "TextPay: card ...4242"),
        ("+12125550199", "TextPay: card ...4242"),
        ("+12125550199", "TextPay: card ...4444"),  # the new card's first warning
        ("+12125550199", "TextPay: card ...4444"),  # and its second
    ]


def test_no_warning_after_stop_and_none_that_was_waiting_goes_after_it(
    app: Flask, admin: AdminClient, engine: Engine, client: FlaskClient
) -> None:
    sender = RecordingSender()
    with freeze_time("2027-03-02 06:00:00") as clock:  # 1am in New York: queued for 8am
        enrol(admin)
        enrol(admin, account_number="ACCT-5555", phone="(212) 555-0199")
        assert run_job(app).warned == 2
        TwilioClient(client).text("+12125550199", "STOP")  # the waiting text is withdrawn
        TwilioClient(client).text(MOM, "STOP")
        clock.move_to(FIRST_WARNING_DAY)
        deliver(app, sender)
        assert run_job(app).warned == 0
        # A number that opted out before its warning was due gets none at all.
        clock.move_to(SECOND_WARNING_DAY)
        assert run_job(app).warned == 0
        deliver(app, sender)
    assert sender.sent == []
    assert warnings(engine) == [FIRST_TEXT, FIRST_TEXT.replace("4821", "5555")]
    assert {m.status for m in outbox(engine, kind="card_expiring")} == {"canceled"}


def test_no_warning_for_a_closed_or_suspended_account_nor_one_waiting_when_it_closed(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time("2027-03-02 06:00:00") as clock:  # 1am in New York
        closed = enrol(admin, account_number="ACCT-1111", phone="(212) 555-0101")
        suspended = enrol(admin, account_number="ACCT-2222", phone="(212) 555-0102")
        closing = enrol(admin, account_number="ACCT-3333", phone="(212) 555-0103")
        for account, status in ((closed, "closed"), (suspended, "suspended")):
            patched = admin.patch(f"/admin/accounts/{account['id']}", json={"status": status})
            assert patched.status_code == 200
        assert run_job(app).warned == 1
        admin.patch(f"/admin/accounts/{closing['id']}", json={"status": "closed"})
        clock.move_to(FIRST_WARNING_DAY)
        deliver(app, sender)
    assert sender.sent == []
    assert [m.status for m in outbox(engine, kind="card_expiring")] == ["canceled"]


def test_warnings_wait_for_the_sending_window(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time("2027-03-02 06:00:00") as clock:  # 1am in New York
        enrol(admin)
        assert run_job(app).warned == 1
        [queued] = outbox(engine)
        assert queued.send_after == datetime(2027, 3, 2, 13, 0, tzinfo=UTC)  # 8am EST
        deliver(app, sender)
        assert sender.sent == []
        clock.move_to("2027-03-02 13:00:01")
        deliver(app, sender)
    assert [body for _, body in sender.sent] == [FIRST_TEXT]


def test_autopay_accounts_are_warned_first_when_the_daily_cap_leaves_room_for_one(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time(FIRST_WARNING_DAY) as clock:
        assert admin.patch("/admin/settings", json={"daily_message_cap": 1}).status_code == 200
        enrol(admin)  # TextPay, enrolled first
        enrol(admin, account_number="ACCT-7777", nickname="Dad", autopay_enabled=True)
        assert run_job(app).warned == 2
        deliver(app, sender)
        assert [body for _, body in sender.sent] == [
            "TextPay: card ...4242 on file for acct ...7777 (Dad) expires 03/27. Text CARD 7777 "
            "to update it."
        ]
        held = outbox(engine, status="pending")
        assert [m.body for m in held] == [
            "TextPay: card ...4242 on file for acct ...4821 (Mom) expires 03/27. Text CARD 4821 "
            "to update it."
        ]
        assert held[0].send_after == datetime(2027, 3, 3, 15, 0, tzinfo=UTC)  # a day later
        clock.move_to("2027-03-03 15:00:01")
        deliver(app, sender)
    assert len(sender.sent) == 2


def test_the_warning_in_spanish(app: Flask, admin: AdminClient, engine: Engine) -> None:
    with freeze_time(FIRST_WARNING_DAY):
        enrol(admin, language="es", nickname="")
        run_job(app)
    [body] = warnings(engine)
    assert body.startswith("TextPay: la tarjeta ...4242 registrada para la cuenta ...4821 ")
    assert body.endswith("vence en 03/27. Envie TARJETA para actualizarla.")  # folded: 1 segment


def test_a_second_clock_steps_aside_while_the_lease_is_held(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(FIRST_WARNING_DAY):
        enrol(admin)
        with unit_of_work(engine) as session:
            session.add(Lease(name=card_expiry_job.LEASE, holder="another-host:1:clock",
                              expires_at=utcnow() + timedelta(seconds=30)))  # fmt: skip
        stepped_aside = run_job(app)
        assert (stepped_aside.leader, stepped_aside.warned) == (False, 0)
    with freeze_time("2027-03-02 15:01:00"):  # the other clock's lease has lapsed
        assert run_job(app).warned == 1
    assert len(warnings(engine)) == 1


def test_the_same_plan_carried_out_twice_queues_one_text(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Two clocks that both planned before either queued: the second finds the notice."""
    config = app.extensions["textpay"].engine_config
    with freeze_time(FIRST_WARNING_DAY):
        enrol(admin)
        with unit_of_work(engine) as session:
            due = card_expiry.plan(session, now=utcnow())
        with unit_of_work(engine) as session:
            first = card_expiry.warn(session, due, now=utcnow(), config=config)
        with unit_of_work(engine) as session:
            second = card_expiry.warn(session, due, now=utcnow(), config=config)
    assert (first.queued, second.queued, second.already) == (1, 0, 1)
    assert len(warnings(engine)) == 1


# AutoPay and an expired card. AFTERNOON in test_scan is 2026-11-26 19:05 UTC.
AFTERNOON = "2026-11-26 19:05:00"
OCTOBER_2026 = {"token": "tok_visa", "exp_month": 10, "exp_year": 2026}


def test_autopay_does_not_charge_an_expired_card_and_texts_the_card_link_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    sender = RecordingSender()
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True, payment_method=OCTOBER_2026)
        first = scan_now(app)
        assert (first.autopay_charged, first.autopay_card_expired, first.skipped) == (0, 1, 1)
        clock.tick(timedelta(minutes=5))
        again = scan_now(app)
        assert (again.autopay_charged, again.autopay_card_expired) == (0, 1)  # counted, not texted
        deliver(app, sender)
        assert charges(engine) == 0
        [notice] = outbox(engine)
        assert notice.kind == "card_expired"
        assert notice.body == (
            "TextPay: AutoPay couldn't add money to acct ...4821: card ...4242 expired 10/26, so "
            "nothing was charged. New card: http://localhost:5000/card/[link] (works once, for "
            "30 min)."
        )
        [(_, sent)] = sender.sent
        assert re.search(r"/card/[A-Za-z0-9_-]{43} \(works once", sent)  # a live link, sent
        with unit_of_work(engine) as session:
            [entry] = session.exec(
                select(AuditLogEntry).where(AuditLogEntry.action == "account.autopay_card_expired")
            ).all()
        assert entry.actor == "system"
        assert entry.after is not None
        assert entry.after["reason"] == "card_expired"
        assert (entry.after["card_last4"], entry.after["exp_month"]) == ("4242", 10)
        # A new card on file: the next scan charges it.
        renewed = {"payment_method": {"token": "tok_visa", "exp_month": 12, "exp_year": 2030}}
        assert admin.patch(f"/admin/accounts/{account['id']}", json=renewed).status_code == 200
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 1
    assert charges(engine) == 1


def test_a_card_is_good_through_the_last_day_of_its_month_in_the_subscribers_zone(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """11/26 on a Los Angeles number: still good at 11:30pm on Nov 30 there (Dec 1 in UTC)."""
    november = {"token": "tok_visa", "exp_month": 11, "exp_year": 2026}
    with freeze_time("2026-12-01 07:30:00"):  # 11:30pm Nov 30 in Los Angeles
        low(admin, autopay_enabled=True, payment_method=november,
            timezone="America/Los_Angeles")  # fmt: skip
        result = scan_now(app)
    assert (result.autopay_charged, result.autopay_card_expired) == (1, 0)


def test_the_dry_run_says_an_expired_card_would_be_skipped(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        low(admin, autopay_enabled=True, payment_method=OCTOBER_2026)
        result = scan_now(app, dry_run=True)
    assert [p["kind"] for p in result.planned] == ["autopay_card_expired"]
    assert outbox(engine) == []
    assert isinstance(result, scan.ScanResult)


def test_the_cli_runs_the_job_once_and_the_clock_runs_it_daily(
    admin: AdminClient, engine: Engine, database_url: str, settings: Settings
) -> None:
    with freeze_time(FIRST_WARNING_DAY):
        enrol(admin)
        ran = CliRunner().invoke(cli, ["card-expiry"], env={"DATABASE_URL": database_url})
        again = CliRunner().invoke(cli, ["card-expiry"], env={"DATABASE_URL": database_url})
    assert ran.exit_code == 0, ran.output
    assert "warned 1," in ran.output
    assert "warned 0," in again.output
    assert warnings(engine) == [FIRST_TEXT]
    parts = build(settings)
    jobs = {job.id: job for job in clock.background(parts, RecordingSender()).get_jobs()}
    assert str(jobs["card_expiry"].trigger) == "cron[hour='14', minute='10']"
    parts.db.dispose()
