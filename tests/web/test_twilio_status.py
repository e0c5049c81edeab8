"""Delivery status callbacks: statuses only move forward, and error 21610 opts the number out."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.web.conftest import MOM, prompt_status
from tests.web.twilio_client import TwilioClient, new_sid
from textpay import messages, outbox
from textpay.db import unit_of_work
from textpay.models import Account, Message, StatusReport
from textpay.sms import SendOutcome, SendResult
from textpay.timeutil import utcnow


def sent_message(engine: Engine, account_id: int | None = None) -> tuple[int, str]:
    """An outbound text as the dispatcher leaves it once Twilio accepted it."""
    sid = new_sid()
    with unit_of_work(engine) as session:
        message = messages.queue_outbound(
            session, phone=MOM, account_id=account_id, body="hello", kind="prompt", now=utcnow()
        )
        message.twilio_sid = sid
        message.status = "sent"
        session.add(message)
        session.flush()
        assert message.id is not None
        return message.id, sid


def status_of(engine: Engine, message_id: int) -> tuple[str, str | None]:
    with unit_of_work(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.status, message.error_code


def test_status_only_moves_forward(twilio: TwilioClient, engine: Engine) -> None:
    message_id, sid = sent_message(engine)
    assert twilio.status(sid, "delivered").status_code == 204
    assert status_of(engine, message_id) == ("delivered", None)
    for late in ("sent", "sending", "queued", "undelivered"):
        assert twilio.status(sid, late).status_code == 204
        assert status_of(engine, message_id) == ("delivered", None)
    twilio.status(sid, "read")
    assert status_of(engine, message_id) == ("read", None)


def test_duplicated_callbacks_change_nothing(twilio: TwilioClient, engine: Engine) -> None:
    message_id, sid = sent_message(engine)
    for _ in range(3):
        assert twilio.status(sid, "undelivered", "30003").status_code == 204
    assert status_of(engine, message_id) == ("undelivered", "30003")


def test_error_21610_opts_the_number_out(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    message_id, sid = sent_message(engine, low_account["id"])
    twilio.status(sid, "failed", "21610")
    assert status_of(engine, message_id) == ("failed", "21610")
    with unit_of_work(engine) as session:
        account = session.get(Account, low_account["id"])
        assert account is not None
        assert account.opted_out is True
    assert prompt_status(engine, low_account["prompt_id"]) == "cancelled"
    # Nothing more is offered: YES from the number is an opt-in, not a payment.
    assert "subscribed" in twilio.text(MOM, "YES")


def test_a_callback_that_beats_the_dispatcher_is_applied_when_the_sid_is_recorded(
    twilio: TwilioClient, engine: Engine
) -> None:
    """Twilio can report `delivered` before the dispatcher has stored the SID it was given."""
    sid = new_sid()
    with unit_of_work(engine) as session:
        waiting = messages.queue_outbound(
            session, phone=MOM, account_id=None, body="hello", kind="receipt", now=utcnow()
        )
        waiting_id = waiting.id
    assert waiting_id is not None
    assert twilio.status(sid, "sent").status_code == 204
    assert twilio.status(sid, "delivered").status_code == 204
    with unit_of_work(engine) as session:
        outbox.record(session, waiting_id, SendResult(SendOutcome.ACCEPTED, sid=sid,
                                                      status="queued"), now=utcnow())  # fmt: skip
    assert status_of(engine, waiting_id) == ("delivered", None)
    with unit_of_work(engine) as session:
        assert session.exec(select(StatusReport)).all() == []


def test_a_report_that_raced_the_dispatchers_record_is_applied_by_the_next_claim(
    engine: Engine,
) -> None:
    """On PostgreSQL the callback's transaction and the dispatcher's can commit side by side:
    the report is kept although the SID is recorded a moment later."""
    sid = new_sid()
    message_id, _ = sent_message(engine)
    with unit_of_work(engine) as session:
        session.add(StatusReport(twilio_sid=sid, status="delivered", created_at=utcnow()))
        message = session.get(Message, message_id)
        assert message is not None
        message.twilio_sid = sid  # recorded without seeing the report
        session.add(message)
    with unit_of_work(engine) as session:
        outbox.claim(session, now=utcnow(), limit=10)
    assert status_of(engine, message_id) == ("delivered", None)
    with unit_of_work(engine) as session:
        assert session.exec(select(StatusReport)).all() == []


@pytest.mark.postgres_only
def test_a_callback_whose_sid_is_recorded_between_its_two_reads_is_applied(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's transaction commits the SID just after the callback's update looked for
    it and just before the callback asks whether the SID is known: the status is applied, not
    dropped (it was, and a text stayed `sent` for ever: seen once in the e2e tests under load)."""
    sid = new_sid()
    message_id, _ = sent_message(engine)
    dispatcher = Session(engine)
    recorded = dispatcher.get(Message, message_id)
    assert recorded is not None
    recorded.twilio_sid = sid
    dispatcher.add(recorded)
    dispatcher.flush()  # the SID is written, not committed
    real_apply = messages.apply_status
    calls = []

    def apply_then_the_dispatcher_commits(*args: Any, **kwargs: Any) -> Message | None:
        changed = real_apply(*args, **kwargs)
        calls.append(changed)
        if len(calls) == 1:
            dispatcher.commit()
        return changed

    monkeypatch.setattr(messages, "apply_status", apply_then_the_dispatcher_commits)
    with unit_of_work(engine) as session:
        outbox.report_status(session, sid=sid, status="delivered", error_code=None, now=utcnow())
    dispatcher.close()
    assert calls[0] is None  # the race happened: the first look did not see the SID
    assert status_of(engine, message_id) == ("delivered", None)


def test_unknown_sids_and_statuses_are_accepted_and_ignored(
    twilio: TwilioClient, engine: Engine
) -> None:
    assert twilio.status(new_sid(), "delivered").status_code == 204
    message_id, sid = sent_message(engine)
    assert twilio.status(sid, "teleported").status_code == 204
    assert status_of(engine, message_id) == ("sent", None)


def test_status_callbacks_need_a_signature(twilio: TwilioClient, engine: Engine) -> None:
    message_id, sid = sent_message(engine)
    response = twilio.client.post(
        "/twilio/status", data={"MessageSid": sid, "MessageStatus": "delivered"}
    )
    assert response.status_code == 403
    assert status_of(engine, message_id) == ("sent", None)
