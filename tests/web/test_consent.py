"""Consent belongs to the phone number: STOP, START, enrolment and phone changes, seen from the
subscriber's phone and the operator's admin API."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import reconcile
from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox, scan_now
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient, new_sid
from textpay import engine as turns
from textpay import funding
from textpay.db import unit_of_work
from textpay.models import ConsentEvent, Message, PhoneConsent
from textpay.sms import RecordingSender
from textpay.timeutil import utcnow

# 2:05pm in New York on a Thursday: inside every sending window.
AFTERNOON = "2026-11-26 19:05:00"
DAD = "+12125550148"
STRANGER = "+13125550199"


def low(admin: AdminClient, **fields: Any) -> dict[str, Any]:
    """An enrolled account at $3.10, below the $5.00 threshold: the scan offers it a top-up."""
    account = admin.enrol(**fields)
    admin.credit(account["id"], 1000, f"seed-{account['id']}")
    admin.usage(account["id"], 690, f"calls-{account['id']}")
    return account


def show(admin: AdminClient, account_id: int) -> dict[str, Any]:
    shown: dict[str, Any] = admin.get(f"/admin/accounts/{account_id}").get_json()
    return shown


def move(admin: AdminClient, account_id: int, phone: str) -> dict[str, Any]:
    response = admin.patch(f"/admin/accounts/{account_id}", json={"phone": phone})
    assert response.status_code == 200, response.get_json()
    moved: dict[str, Any] = response.get_json()
    return moved


def messages_to(admin: AdminClient, phone: str) -> list[dict[str, Any]]:
    found = admin.get("/admin/messages", query_string={"phone": phone}).get_json()["messages"]
    return [m for m in found if m["direction"] == "outbound"]


def consent_events(engine: Engine, phone: str) -> list[str]:
    with unit_of_work(engine) as session:
        events = session.exec(
            select(ConsentEvent).where(ConsentEvent.phone == phone).order_by(ConsentEvent.id)  # type: ignore[arg-type]
        )
        return [e.kind for e in events]


def test_an_account_moved_onto_a_number_that_said_stop_gets_no_offer(
    app: Flask, admin: AdminClient, twilio: TwilioClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        admin.enrol(account_number="ACCT-4821", phone=MOM)
        assert "unsubscribed" in twilio.text(MOM, "STOP")
        dad = low(admin, account_number="ACCT-7730", phone=DAD, nickname="Dad")

        moved = move(admin, dad["id"], "(212) 555-0147")
        assert moved["phone"] == MOM
        assert moved["opted_out"] is True
        assert moved["opted_out_at"] is not None

        assert scan_now(app).prompted == 0
        assert outbox(engine) == []
        # The number's next STOP is honoured (silently: it already got its confirmation).
        assert twilio.text(MOM, "STOP") == ""
        assert show(admin, dad["id"])["opted_out"] is True
        # Operators cannot switch a number's consent back on behind the subscriber's back.
        refused = admin.patch(f"/admin/accounts/{dad['id']}", json={"opted_out": False})
        assert refused.status_code == 422
        assert show(admin, dad["id"])["opted_out"] is True


def test_consent_stays_with_the_number_when_an_account_moves(
    app: Flask, admin: AdminClient, twilio: TwilioClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        mom = low(admin, account_number="ACCT-4821", phone=MOM)
        sis = admin.enrol(account_number="ACCT-3344", phone=MOM, nickname="Sis")
        assert "unsubscribed" in twilio.text(MOM, "STOP")
        assert show(admin, sis["id"])["opted_out"] is True  # both accounts on the number

        # Off the opted-out number onto one that never said STOP: texts may go again.
        moved = move(admin, mom["id"], DAD)
        assert (moved["opted_out"], moved["opted_out_at"]) == (False, None)
        assert scan_now(app).prompted == 1
        [offer] = outbox(engine)
        assert offer.phone == DAD

        # And back: the number still says STOP, so the account is opted out again.
        assert move(admin, mom["id"], MOM)["opted_out"] is True
        assert show(admin, sis["id"])["opted_out"] is True

        # START from the number brings back every account on it.
        assert "you're subscribed" in twilio.text(MOM, "START")
        assert show(admin, mom["id"])["opted_out"] is False
        assert show(admin, sis["id"])["opted_out"] is False


def test_stop_before_enrolment_is_remembered(
    app: Flask, admin: AdminClient, twilio: TwilioClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        assert "unsubscribed" in twilio.text(MOM, "STOP")
        assert twilio.text(MOM, "STOP") == ""  # one confirmation per number, enrolled or not
        assert consent_events(engine, MOM) == ["opt_out"]

        account = low(admin, account_number="ACCT-4821", phone="(212) 555-0147")
        assert account["opted_out"] is True
        assert scan_now(app).prompted == 0
        assert outbox(engine) == []

        assert "you're subscribed" in twilio.text(MOM, "START")
        assert show(admin, account["id"])["opted_out"] is False
        assert scan_now(app).prompted == 1


def test_start_before_enrolment_is_remembered_too(
    admin: AdminClient, twilio: TwilioClient, engine: Engine
) -> None:
    assert "unsubscribed" in twilio.text(STRANGER, "STOP")
    assert "you're subscribed" in twilio.text(STRANGER, "START")
    assert consent_events(engine, STRANGER) == ["opt_out", "opt_in"]
    assert admin.enrol(phone=STRANGER)["opted_out"] is False


def test_texts_waiting_for_the_old_number_are_withdrawn_when_the_phone_changes(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        account = low(admin, account_number="ACCT-4821", phone=MOM)
        assert scan_now(app).prompted == 1
        [offer] = messages_to(admin, MOM)
        assert offer["status"] == "pending"

        moved = move(admin, account["id"], DAD)
        assert moved["pending_prompt"] is None  # the offer was made to the old number
        [withdrawn] = messages_to(admin, MOM)
        assert withdrawn["status"] == "canceled"
        sender = RecordingSender()
        deliver(app, sender)
        assert [to for to, _ in sender.sent if to == MOM] == []


def test_a_receipt_settled_after_stop_is_withheld_and_never_sent(
    app: Flask, admin: AdminClient, twilio: TwilioClient, engine: Engine, low_account: Any
) -> None:
    # The subscriber said YES and the web process died before charging the card.
    config = app.extensions["textpay"].engine_config
    with unit_of_work(engine) as session:
        yes = turns.InboundSms(sid=new_sid(), sender=MOM, body="YES")
        assert turns.receive(session, yes, now=utcnow(), config=config).charge is not None
    assert "unsubscribed" in twilio.text(MOM, "STOP")

    parts = app.extensions["textpay"]
    assert reconcile.run(engine, parts.gateway, config, grace_seconds=0).settled == 1
    assert deposits(engine) == 1  # the money is settled whatever the number says
    [receipt] = messages_to(admin, MOM)
    assert receipt["kind"] == "receipt"
    assert receipt["status"] == "withheld"

    sender = RecordingSender()
    deliver(app, sender)
    assert sender.sent == []
    assert [m["status"] for m in messages_to(admin, MOM)] == ["withheld"]
    # Opting back in does not send an out-of-date receipt either.
    twilio.text(MOM, "START")
    deliver(app, sender)
    assert sender.sent == []


def test_stops_arriving_at_once_all_succeed_and_are_recorded_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(account_number="ACCT-4821", phone=MOM)
    senders = [MOM] * 8 + [STRANGER] * 8
    barrier = threading.Barrier(len(senders))
    statuses: list[int] = []
    lock = threading.Lock()

    def subscriber(phone: str) -> None:
        client = TwilioClient(app.test_client())
        barrier.wait()
        response = client.sms(phone, "STOP")
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=subscriber, args=(p,)) for p in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * len(senders)
    assert show(admin, account["id"])["opted_out"] is True
    with unit_of_work(engine) as session:
        numbers = {c.phone: c.opted_out for c in session.exec(select(PhoneConsent))}
    assert numbers == {MOM: True, STRANGER: True}
    assert consent_events(engine, MOM) == ["opt_out"]
    assert consent_events(engine, STRANGER) == ["opt_out"]


def test_after_stop_the_only_text_is_the_confirmation_even_mid_charge(
    admin: AdminClient,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """YES, and while the card is being charged the subscriber sends STOP (two texts at once).
    The STOP is confirmed; the YES's answer, given after that confirmation, must not be a
    receipt text to a number that has opted out (the money still settles)."""
    real = funding.call_gateway
    stop_reply: list[str] = []

    def slow_gateway(*args: Any, **kwargs: Any) -> Any:
        stop_reply.append(twilio.text(MOM, "STOP"))
        return real(*args, **kwargs)

    monkeypatch.setattr(funding, "call_gateway", slow_gateway)
    answer = twilio.text(MOM, "YES")
    assert stop_reply, "STOP was answered"
    assert "unsubscribed" in stop_reply[0]
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert answer == "", f"texted after STOP's confirmation: {answer!r}"
    with unit_of_work(engine) as session:
        sent = [
            m.body
            for m in session.exec(select(Message).where(Message.direction == "outbound"))
            if m.status not in ("withheld", "canceled")
        ]
    assert sent == []
