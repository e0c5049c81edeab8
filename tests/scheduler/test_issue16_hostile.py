"""Issue 16 attacked from the clock's side: card-expiry warnings around month and year ends, in
zones either side of UTC, for cards with no expiry, and for cards changed while a warning waits
in the outbox; AutoPay and an expired card; the runway rule against odd call charges."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.scheduler.helpers import count_prompts, deliver, outbox, prompts_of, scan_now
from tests.scheduler.test_card_expiry import enrol, run_job
from tests.scheduler.test_runway import calling
from tests.scheduler.test_scan import low
from tests.web.conftest import MOM, charges
from tests.web.twilio_client import TwilioClient
from textpay.db import unit_of_work
from textpay.models import Account, CardExpiryNotice
from textpay.sms import RecordingSender

DECEMBER_2026 = {"token": "tok_visa", "exp_month": 12, "exp_year": 2026}
RENEWED = {"payment_method": {"token": "tok_visa", "exp_month": 12, "exp_year": 2030}}


def notices(engine: Engine) -> list[tuple[int, str]]:
    with unit_of_work(engine) as session:
        return [(n.account_id, n.kind) for n in session.exec(select(CardExpiryNotice))]


def test_a_warning_waiting_for_the_morning_is_not_sent_once_a_new_card_is_on_file(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The warning is queued at 1am; the family puts a card good till 2030 on file before 8am.
    "Your card expires 03/27" would no longer be true when it leaves: it must not be sent."""
    sender = RecordingSender()
    with freeze_time("2027-03-02 06:00:00") as clock:  # 1am in New York
        account = enrol(admin)
        assert run_job(app).warned == 1
        assert admin.patch(f"/admin/accounts/{account['id']}", json=RENEWED).status_code == 200
        clock.move_to("2027-03-02 15:00:00")
        deliver(app, sender)
    assert sender.sent == []
    assert [m.status for m in outbox(engine, kind="card_expiring")] == ["canceled"]


def test_a_new_expiry_for_the_same_card_while_its_warning_waits_is_not_the_old_warning(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Same token, expiry moved from 03/27 to 03/30 (the processor's card updater): the queued
    "expires 03/27" is stale."""
    sender = RecordingSender()
    with freeze_time("2027-03-02 06:00:00") as clock:
        account = enrol(admin)
        assert run_job(app).warned == 1
        moved = {"payment_method": {"token": "tok_visa", "exp_month": 3, "exp_year": 2030}}
        assert admin.patch(f"/admin/accounts/{account['id']}", json=moved).status_code == 200
        clock.move_to("2027-03-02 15:00:00")
        deliver(app, sender)
    assert sender.sent == []


def test_autopays_expired_card_notice_waiting_for_the_morning_is_dropped_once_renewed(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """AutoPay skipped an expired card at 1am and queued the card link; a new card went on file
    before 8am (and the next scan charged it): "card ...4242 expired, nothing was charged, new
    card: <link>" would be false when it leaves."""
    sender = RecordingSender()
    with freeze_time("2027-01-05 06:00:00") as clock:  # 1am in New York
        account = low(admin, autopay_enabled=True, payment_method=DECEMBER_2026,
                      timezone="America/New_York")  # fmt: skip
        assert scan_now(app).autopay_card_expired == 1
        assert admin.patch(f"/admin/accounts/{account['id']}", json=RENEWED).status_code == 200
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).autopay_charged == 1
        clock.move_to("2027-01-05 15:00:00")
        deliver(app, sender)
    assert [m.kind for m in outbox(engine, status="canceled")] == ["card_expired"]
    assert "expired" not in " ".join(body for _, body in sender.sent)


def test_december_cards_are_warned_in_december_and_january_cards_across_new_year(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    december = admin.enrol(timezone="America/New_York", payment_method=DECEMBER_2026)
    january_2027 = {"token": "tok_visa", "exp_month": 1, "exp_year": 2027}
    january = admin.enrol(timezone="America/New_York", account_number="ACCT-0101",
                          phone="(212) 555-0101", payment_method=january_2027)  # fmt: skip
    runs = []
    for moment in ("2026-12-01 15:00:00",  # 31 days before 12/26 ends: nothing yet
                   "2026-12-02 15:00:00",  # 12/26's first
                   "2026-12-25 15:00:00",  # 12/26's second
                   "2026-12-31 15:00:00",  # nothing new
                   "2027-01-01 15:00:00",  # 12/26 has expired: nothing
                   "2027-01-02 15:00:00",  # 01/27's first, across the new year
                   "2027-01-25 15:00:00"):  # 01/27's second  # fmt: skip
        with freeze_time(moment):
            runs.append(run_job(app).warned)
    assert runs == [0, 1, 1, 0, 0, 1, 1]
    assert sorted(notices(engine)) == sorted([(december["id"], "30_days"),
                                              (december["id"], "7_days"),
                                              (january["id"], "30_days"),
                                              (january["id"], "7_days")])  # fmt: skip


def test_a_december_card_is_good_till_new_year_in_honolulu_and_not_in_kiritimati(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """New Year's Eve at 11pm in Honolulu is 9am on Jan 1 in UTC and 11pm on Jan 1 on
    Kiritimati (UTC+14): the 12/26 card is charged for Honolulu only."""
    with freeze_time("2027-01-01 09:00:00"):
        low(admin, autopay_enabled=True, payment_method=DECEMBER_2026,
            timezone="Pacific/Honolulu")  # fmt: skip
        low(admin, account_number="ACCT-1414", phone="(212) 555-0114", autopay_enabled=True,
            payment_method=DECEMBER_2026, timezone="Pacific/Kiritimati")  # fmt: skip
        result = scan_now(app)
    assert (result.autopay_charged, result.autopay_card_expired) == (1, 1)
    assert charges(engine) == 1


def test_a_card_with_no_expiry_is_never_warned_about_and_autopay_still_charges_it(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time("2026-12-20 15:00:00"):
        low(admin, autopay_enabled=True, payment_method={"token": "tok_visa"})
        assert run_job(app).warned == 0
        assert scan_now(app).autopay_charged == 1
    assert notices(engine) == []


def test_an_expiry_changed_and_changed_back_is_not_warned_about_twice(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time("2027-03-02 15:00:00") as clock:
        account = enrol(admin)
        assert run_job(app).warned == 1
        path = f"/admin/accounts/{account['id']}"
        away = {"payment_method": {"token": "tok_visa", "exp_month": 4, "exp_year": 2027}}
        back = {"payment_method": {"token": "tok_visa", "exp_month": 3, "exp_year": 2027}}
        assert admin.patch(path, json=away).status_code == 200
        clock.tick(timedelta(days=1))
        assert run_job(app).warned == 0  # 04/27 is not due yet
        assert admin.patch(path, json=back).status_code == 200
        clock.tick(timedelta(days=1))
        assert run_job(app).warned == 0  # 03/27 had its first warning already
    assert notices(engine) == [(account["id"], "30_days")]


def test_odd_card_expiries_are_refused_not_5xx(admin: AdminClient) -> None:
    for method in ({"token": "tok_visa", "exp_month": 13, "exp_year": 2027},
                   {"token": "tok_visa", "exp_month": 0, "exp_year": 2027},
                   {"token": "tok_visa", "exp_month": 12, "exp_year": 10**12},
                   {"token": "tok_visa", "exp_month": "12", "exp_year": 2027},
                   {"token": "tok_visa", "exp_month": 12.0, "exp_year": 2027},
                   {"token": "tok_visa", "exp_month": True, "exp_year": 2027}):  # fmt: skip
        response = admin.post("/admin/accounts", json={"account_number": "ODD-1",
                                                       "phone": "2125550100",
                                                       "payment_method": method})  # fmt: skip
        assert response.status_code == 422, (method, response.status_code)


def test_a_runway_offer_is_not_made_again_by_a_one_cent_charge(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Runway offered; a run of one-cent charges (a calling platform's rounding entries) must
    never give a second offer in the same episode, nor divide by zero."""
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time("2026-11-20 19:05:00") as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM)
        assert scan_now(app).prompted == 1
        for n in range(10):
            assert admin.usage(account["id"], 1, f"rounding-{n}").status_code == 201
            clock.tick(timedelta(minutes=10))
            assert scan_now(app).prompted == 0
        assert admin.get(f"/admin/accounts/{account['id']}").status_code == 200
    assert count_prompts(engine) == 1


def test_the_runway_of_an_account_with_a_huge_balance_does_not_overflow(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The runway index multiplies the balance by hours: a rich account (a facility's trust
    account topped up by many large credits) must still take charges and scans."""
    assert admin.patch("/admin/settings", json={"runway_days": 90}).status_code == 200
    with freeze_time("2026-11-20 19:05:00") as clock:
        account = admin.enrol()
        for n in range(20):
            assert admin.credit(account["id"], 1_000_000, f"big-{n}").status_code == 201
        for n in range(6):
            assert admin.usage(account["id"], 1_000_000, f"calls-{n}").status_code == 201
            clock.tick(timedelta(hours=1))
        got = admin.get(f"/admin/accounts/{account['id']}").get_json()
        assert got["balance_cents"] == 14_000_000
        assert got["runway_estimate_days"] == 16  # $140,000 at $60,000 a week
        assert scan_now(app).errors == 0
    with unit_of_work(engine) as session:
        row = session.get(Account, account["id"])
        assert row is not None
        assert row.usage_pace_cents == 6_000_000


def test_a_declined_runway_offer_is_not_made_again_without_money_in(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The pace drifts with a few small calls (6, 7, 7 days left), then a large call brings the
    runway back under 5 days: the same episode, since no money came in. It gets the one
    reminder any episode gets after the cooldown, and no fresh offer after that."""
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time("2026-11-20 19:05:00") as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM)  # $20.00, 4 days left
        assert scan_now(app).prompted == 1
        deliver(app, RecordingSender())
        clock.tick(timedelta(minutes=1))
        assert "no top-up" in TwilioClient(app.test_client()).text(MOM, "NO")
        before = episode_of(engine, account["id"])
        for n, (day, cents) in enumerate([(4, 1), (1, 1), (1, 1), (1, 900)]):
            clock.tick(timedelta(days=day))  # 6, 7, 7, then 3 days left
            assert admin.usage(account["id"], cents, f"drift-{n}").status_code == 201
            scan_now(app)
        clock.tick(timedelta(days=7))
        scan_now(app)
        assert episode_of(engine, account["id"])[0] == before[0]  # never re-armed
    statuses = [p.status for p in prompts_of(engine, account["id"])]
    assert statuses in (["declined", "pending"], ["declined", "expired"])  # the one reminder


def episode_of(engine: Engine, account_id: int) -> tuple[int, int]:
    with unit_of_work(engine) as session:
        row = session.get(Account, account_id)
        assert row is not None
        return row.episode_seq, row.episode_prompts
