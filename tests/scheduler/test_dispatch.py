"""The outbox dispatcher against the Twilio stand-in: retries, opt-outs, unknown outcomes, and
one bad text among many."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import select
from werkzeug.serving import make_server

from scheduler import dispatch
from tests.standin.twilio import TwilioStandIn, error, slow
from tests.web.conftest import MOM
from textpay import messages
from textpay.db import unit_of_work
from textpay.models import Account, Facility, Message
from textpay.sms import RecordingSender, SendResult, TwilioSender
from textpay.timeutil import utcnow


class Clock:
    """Manual time for the outbox, so backoffs can be passed without waiting."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def queue(engine: Engine, body: str, *, to: str = MOM, engine_initiated: bool = False,
          account_id: int | None = None, now: datetime | None = None) -> int:  # fmt: skip
    with unit_of_work(engine) as session:
        message = messages.queue_outbound(
            session,
            phone=to,
            account_id=account_id,
            body=body,
            kind="prompt" if engine_initiated else "receipt",
            now=now or utcnow(),
            engine_initiated=engine_initiated,
        )
        assert message.id is not None
        return message.id


def message(engine: Engine, message_id: int) -> Message:
    with unit_of_work(engine) as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


def run(engine: Engine, sender: TwilioSender, clock: Callable[[], datetime], **kw: Any) -> Any:
    return dispatch.run(engine, sender, pacer=dispatch.Pacer(0), now=clock, **kw)


def test_a_send_answered_20429_twice_then_201_is_sent_once(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, error(429, 20429), error(429, 20429))
    message_id = queue(engine, "Added $25.00", now=clock.now)

    assert run(engine, twilio_sender, clock).retrying == 1
    assert message(engine, message_id).status == "pending"
    assert run(engine, twilio_sender, clock).sent == 0  # backing off: nothing is due yet
    clock.advance(3)
    assert run(engine, twilio_sender, clock).retrying == 1
    clock.advance(5)
    assert run(engine, twilio_sender, clock).sent == 1
    clock.advance(600)
    assert run(engine, twilio_sender, clock).sent == 0

    sent = message(engine, message_id)
    assert (sent.status, sent.attempts) == ("queued", 3)
    assert sent.twilio_sid is not None
    assert sent.twilio_sid.startswith("SM")
    assert len(standin.sent_to(MOM)) == 3
    assert standin.sent_to(MOM)[-1]["Body"] == "Added $25.00"


def test_a_21610_answer_opts_the_number_out(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender, admin: Any
) -> None:
    account = admin.enrol(timezone="UTC")  # noon UTC is inside its sending hours
    standin.script(MOM, error(400, 21610))
    clock = Clock()
    clock.now = clock.now.replace(hour=12)
    first = queue(engine, "offer", engine_initiated=True, account_id=account["id"], now=clock.now)
    assert run(engine, twilio_sender, clock).failed == 1
    assert (message(engine, first).status, message(engine, first).error_code) == ("failed", "21610")
    with unit_of_work(engine) as session:
        stored = session.get(Account, account["id"])
        assert stored is not None
        assert stored.opted_out
    # Anything else TextPay meant to start with this number is dropped, not sent.
    later = queue(engine, "reminder", engine_initiated=True, account_id=account["id"],
                  now=clock.now)  # fmt: skip
    run(engine, twilio_sender, clock)
    # Withheld when queued (the number had opted out), or canceled when its turn came.
    assert message(engine, later).status in {"withheld", "canceled"}
    assert len(standin.sent_to(MOM)) == 1


def test_a_timeout_after_sending_is_never_resent_blindly(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    """The request went out and no answer came: the text is looked for at Twilio before any
    resend, and found there (tests/scheduler/test_ambiguous_sends.py has the other cases)."""
    clock = Clock()
    standin.script(MOM, slow(1.5))  # longer than the sender's 0.5 s read timeout
    message_id = queue(engine, "Added $25.00", now=clock.now)
    assert run(engine, twilio_sender, clock).ambiguous == 1
    time.sleep(1.2)  # let the stand-in finish the slow request it is still answering
    for _ in range(3):
        clock.advance(3600)
        run(engine, twilio_sender, clock)
    [created] = standin.created_for(MOM)
    assert message(engine, message_id).twilio_sid == created["sid"]
    assert len(standin.sent_to(MOM)) == 1


def test_a_twilio_that_cannot_be_reached_is_retried_later(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    port = standin.port
    standin.stop()
    message_id = queue(engine, "Added $25.00", now=clock.now)
    assert run(engine, twilio_sender, clock).retrying == 1
    assert message(engine, message_id).status == "pending"
    standin.start(port)
    clock.advance(10)
    assert run(engine, twilio_sender, clock).sent == 1
    assert len(standin.sent_to(MOM)) == 1


def test_an_unreachable_twilio_is_retried_for_a_day_then_given_up(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.stop()
    message_id = queue(engine, "Added $25.00", now=clock.now)
    for _ in range(10):  # more tries than Twilio's own errors get: nothing was ever sent
        run(engine, twilio_sender, clock)
        clock.advance(600)
    assert (message(engine, message_id).status, message(engine, message_id).attempts) == (
        "pending",
        10,
    )
    clock.advance(24 * 3600)
    run(engine, twilio_sender, clock)
    assert message(engine, message_id).status == "failed"


def test_invalid_numbers_fail_for_good(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, error(400, 21211))
    message_id = queue(engine, "hello", now=clock.now)
    assert run(engine, twilio_sender, clock).failed == 1
    clock.advance(3600)
    run(engine, twilio_sender, clock)
    assert (message(engine, message_id).status, message(engine, message_id).error_code) == (
        "failed",
        "21211",
    )
    assert len(standin.sent_to(MOM)) == 1


def test_retries_stop_after_the_limit(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, *[error(503, 20503)] * 10)
    message_id = queue(engine, "hello", now=clock.now)
    for _ in range(10):
        run(engine, twilio_sender, clock)
        clock.advance(600)
    assert message(engine, message_id).status == "failed"
    assert len(standin.sent_to(MOM)) == 6


def test_answers_to_subscribers_go_before_offers(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender, admin: Any
) -> None:
    account = admin.enrol(timezone="UTC")
    clock = Clock()
    clock.now = clock.now.replace(hour=12)
    queue(engine, "offer", engine_initiated=True, account_id=account["id"], now=clock.now)
    queue(engine, "receipt", now=clock.now)
    run(engine, twilio_sender, clock)
    assert [r["Body"] for r in standin.requests] == ["receipt", "offer"]


def test_status_callbacks_from_the_stand_in_reach_the_app_signed(
    app: Flask, engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{server.server_port}/twilio/status"
    try:
        message_id = queue(engine, "Added $25.00")
        run(engine, twilio_sender, utcnow, status_callback=callback)
        assert standin.requests[0]["StatusCallback"] == callback
        deadline = time.monotonic() + 10
        while message(engine, message_id).status != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert message(engine, message_id).status == "delivered"
        # The stand-in notes each answer just after the app has applied it: wait for the note.
        while len(standin.callback_results) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert standin.callback_results == [204, 204]
    finally:
        server.shutdown()


def test_the_pacer_keeps_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = dispatch.Pacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        pacer.wait()
    assert now[0] == 2.0  # 9 sends at 4 per second: the 9th goes at t = 2 s
    assert len(slept) == 8
    unlimited = dispatch.Pacer(0, clock=lambda: now[0], sleep=sleep)
    for _ in range(100):
        unlimited.wait()
    assert len(slept) == 8


def test_outbox_rows_are_listed_for_operators(admin: Any, engine: Engine) -> None:
    queue(engine, "Added $25.00")
    listed = admin.get("/admin/messages", query_string={"phone": "(212) 555-0147"}).get_json()
    assert [m["body"] for m in listed["messages"]] == ["Added $25.00"]
    assert listed["messages"][0]["status"] == "pending"
    assert (
        admin.get("/admin/messages", query_string={"status": "unknown"}).get_json()["messages"]
        == []
    )
    with unit_of_work(engine) as session:
        assert len(session.exec(select(Message)).all()) == 1


class FailingFor(RecordingSender):
    """A sender that raises (a bug, not an answer from Twilio) for one number."""

    def __init__(self, phone: str) -> None:
        super().__init__()
        self.phone = phone

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        if to == self.phone:
            raise RuntimeError(f"cannot send {body!r} to {to}")
        return super().send(to=to, body=body, status_callback=status_callback)


def test_one_bad_text_never_stops_the_batch(
    engine: Engine, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A facility saved before empty windows were refused leaves its Florida number no sending
    time, and a second number's send raises: both are logged (without the number or the
    words), counted and passed over, and every other text goes."""
    with unit_of_work(engine) as session:  # as an old release let an operator save it
        session.add(Facility(code="LEGACY", quiet_hours_start="20:00", quiet_hours_end="21:00"))
    florida = admin.enrol(account_number="FL-1", phone="(305) 555-0100", facility="LEGACY")
    broken = admin.enrol(account_number="NY-2", phone="(212) 555-0199")
    fine = admin.enrol(account_number="NY-3", timezone="UTC")
    clock = Clock()
    clock.now = clock.now.replace(hour=16)  # 11am or noon in New York and Florida
    stuck = queue(engine, "offer for Florida", to="+13055550100", engine_initiated=True,
                  account_id=florida["id"], now=clock.now)  # fmt: skip
    lost = queue(engine, "offer for NY-2", to="+12125550199", engine_initiated=True,
                 account_id=broken["id"], now=clock.now)  # fmt: skip
    good = queue(engine, "offer for NY-3", engine_initiated=True, account_id=fine["id"],
                 now=clock.now)  # fmt: skip
    receipt = queue(engine, "Added $25.00", now=clock.now)
    sender = FailingFor("+12125550199")

    with caplog.at_level(logging.ERROR):
        counts = dispatch.run(engine, sender, pacer=dispatch.Pacer(0), now=clock)

    assert (counts.sent, counts.errors) == (2, 2)
    assert sorted(body for _, body in sender.sent) == ["Added $25.00", "offer for NY-3"]
    assert message(engine, good).status == "queued"
    assert message(engine, receipt).status == "queued"
    # The Florida offer waits and is tried again later, not at the head of every batch.
    held = message(engine, stuck)
    assert held.status == "pending"
    assert held.send_after is not None
    assert held.send_after > clock.now
    # The send that raised may have gone: it stays claimed, then is marked unknown, never resent.
    assert message(engine, lost).status == "dispatching"
    clock.advance(600)
    dispatch.run(engine, sender, pacer=dispatch.Pacer(0), now=clock)
    assert message(engine, lost).status == "unknown"
    logged = caplog.text
    assert "+1********00" in logged
    assert "+1********99" in logged
    for secret in ("3055550100", "2125550199", "offer for", "cannot send"):
        assert secret not in logged
