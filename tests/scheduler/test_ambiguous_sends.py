"""A send with no clear answer is looked for at Twilio before it is ever sent again.

Twilio takes no idempotency key for creating a message: a 502 or 504 that came back after
Twilio created the message, a connection reset after the request went out, or a read timeout,
followed by a blind retry, texts the subscriber twice. The outbox waits a while, lists the
number's messages at Twilio (by `To` and `DateSent`, matching the body), and records a match as
sent with its SID; only a lookup that answers and finds nothing lets the text go again; a
lookup that fails marks it `unknown`. 429/20429 and refused connections (nothing was sent) are
retried as before, with no lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox
from tests.scheduler.test_dispatch import Clock, message, queue, run
from tests.standin.twilio import (
    Answer,
    TwilioStandIn,
    accepted_then,
    error,
    reset_after_accepting,
    slow,
)
from tests.web.conftest import MOM
from textpay import messages
from textpay.db import unit_of_work
from textpay.outbox import LOOK_AFTER, MAX_ATTEMPTS
from textpay.sms import RecordingSender, SendOutcome, SendResult, TwilioSender
from textpay.timeutil import utcnow

RECEIPT = "TextPay: added $25.00 to acct ...4821 (Mom). New balance $28.10."


def wait_until(check: Callable[[], object], *, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize(
    "answer",
    [accepted_then(502, 20500), accepted_then(504, 20504), reset_after_accepting(), slow(1.5)],
    ids=["accepted-then-502", "accepted-then-504", "reset-after-accepting", "read-timeout"],
)
def test_a_text_twilio_took_before_an_unclear_answer_is_found_and_never_sent_twice(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender, answer: Answer
) -> None:
    clock = Clock()
    standin.script(MOM, answer)
    message_id = queue(engine, RECEIPT, now=clock.now)

    assert run(engine, twilio_sender, clock).ambiguous == 1
    waiting = message(engine, message_id)
    assert (waiting.status, waiting.twilio_sid) == ("pending", None)
    assert waiting.sent_at == clock.now  # it may have gone: it counts as one of the day's texts
    wait_until(lambda: standin.created_for(MOM))  # a slow answer creates it after we gave up
    clock.advance(LOOK_AFTER.total_seconds() - 1)
    run(engine, twilio_sender, clock)
    assert standin.lookups == []  # not looked for at once: Twilio's list can lag behind

    clock.advance(1)
    assert run(engine, twilio_sender, clock).sent == 1
    [created] = standin.created_for(MOM)
    found = message(engine, message_id)
    assert found.twilio_sid == created["sid"]
    assert found.status in messages.STATUS_RANK  # Twilio's own status for it
    assert standin.calls == [("create", MOM), ("list", MOM)]
    [query] = standin.lookups
    assert query["To"] == MOM
    assert query["DateSent>"] == f"{clock.now - LOOK_AFTER:%Y-%m-%d}T00:00:00Z"
    clock.advance(3600)
    run(engine, twilio_sender, clock)
    assert len(standin.sent_to(MOM)) == 1
    assert len(standin.created_for(MOM)) == 1


def test_a_5xx_for_a_text_twilio_never_took_is_retried_once_after_a_lookup(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, error(502, 20500))
    message_id = queue(engine, RECEIPT, now=clock.now)
    assert run(engine, twilio_sender, clock).ambiguous == 1
    assert message(engine, message_id).error_code == "20500"
    clock.advance(LOOK_AFTER.total_seconds())
    assert run(engine, twilio_sender, clock).sent == 1

    assert standin.calls == [("create", MOM), ("list", MOM), ("create", MOM)]
    [created] = standin.created_for(MOM)
    sent = message(engine, message_id)
    assert (sent.twilio_sid, sent.attempts, sent.error_code) == (created["sid"], 2, None)


@pytest.mark.parametrize(
    "lookup",
    [error(500, 20500), error(429, 20429), error(401, 20003), slow(1.5)],
    ids=["lookup-500", "lookup-429", "lookup-401", "lookup-timeout"],
)
def test_a_text_whose_lookup_fails_is_unknown_and_never_sent_again(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender, lookup: Answer
) -> None:
    clock = Clock()
    standin.script(MOM, accepted_then(502, 20500))
    standin.script_lookups(lookup)
    message_id = queue(engine, RECEIPT, now=clock.now)
    run(engine, twilio_sender, clock)
    clock.advance(LOOK_AFTER.total_seconds())
    assert run(engine, twilio_sender, clock).unknown == 1
    for _ in range(3):
        clock.advance(3600)
        run(engine, twilio_sender, clock)
    unknown = message(engine, message_id)
    assert (unknown.status, unknown.twilio_sid) == ("unknown", None)
    assert standin.calls == [("create", MOM), ("list", MOM)]
    assert len(standin.created_for(MOM)) == 1


def test_the_same_words_sent_earlier_are_not_taken_for_this_text(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    """Only a message created since this text's unclear try matches it."""
    clock = Clock()
    first = queue(engine, RECEIPT, now=clock.now)
    run(engine, twilio_sender, clock)
    assert message(engine, first).twilio_sid is not None
    time.sleep(0.01)
    clock.now = utcnow() + timedelta(minutes=10)  # the same words, ten minutes later
    standin.script(MOM, error(503, 20503))
    second = queue(engine, RECEIPT, now=clock.now)
    run(engine, twilio_sender, clock)
    clock.advance(LOOK_AFTER.total_seconds())
    assert run(engine, twilio_sender, clock).sent == 1
    assert len(standin.created_for(MOM)) == 2
    assert message(engine, second).twilio_sid != message(engine, first).twilio_sid


def test_429_and_refused_connections_are_retried_without_a_lookup(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, error(429, 20429), error(429, 20429))
    message_id = queue(engine, RECEIPT, now=clock.now)
    assert run(engine, twilio_sender, clock).retrying == 1
    clock.advance(3)
    assert run(engine, twilio_sender, clock).retrying == 1
    port = standin.port
    standin.stop()
    clock.advance(5)
    assert run(engine, twilio_sender, clock).retrying == 1  # connection refused
    standin.start(port)
    clock.advance(10)
    assert run(engine, twilio_sender, clock).sent == 1
    assert standin.lookups == []
    assert message(engine, message_id).sent_at == clock.now
    assert len(standin.created_for(MOM)) == 1


def test_after_the_last_try_only_a_lookup_decides(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    """Every try answered 503: each resend follows a lookup, and after the last one a final
    lookup finds nothing, so the text failed (it never reached Twilio)."""
    clock = Clock()
    standin.script(MOM, *[error(503, 20503)] * 10)
    message_id = queue(engine, RECEIPT, now=clock.now)
    for _ in range(10):
        run(engine, twilio_sender, clock)
        clock.advance(600)
    assert message(engine, message_id).status == "failed"
    assert standin.calls == [("create", MOM)] + [("list", MOM), ("create", MOM)] * (
        MAX_ATTEMPTS - 1
    ) + [("list", MOM)]
    assert standin.created_for(MOM) == []


def test_a_text_twilio_took_on_the_last_try_is_found_by_the_final_lookup(
    engine: Engine, standin: TwilioStandIn, twilio_sender: TwilioSender
) -> None:
    clock = Clock()
    standin.script(MOM, *[error(503, 20503)] * (MAX_ATTEMPTS - 1), accepted_then(503, 20503))
    message_id = queue(engine, RECEIPT, now=clock.now)
    for _ in range(10):
        run(engine, twilio_sender, clock)
        clock.advance(600)
    [created] = standin.created_for(MOM)
    assert message(engine, message_id).twilio_sid == created["sid"]
    assert len(standin.sent_to(MOM)) == MAX_ATTEMPTS


def test_a_text_waiting_for_its_lookup_counts_against_the_cap_but_not_against_itself(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Default cap: three engine-initiated texts a day. The unclear one may have arrived, so a
    fourth waits for tomorrow; but its own earlier try does not hold the unclear one back."""
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender([SendResult(SendOutcome.AMBIGUOUS, error_code="20500")])
    with freeze_time("2026-11-26 15:00:00") as clock:  # 10am in New York
        with unit_of_work(engine) as session:
            for n in range(4):
                messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                        body=f"notice {n}", kind="prompt", now=utcnow(),
                                        engine_initiated=True)  # fmt: skip
        counts = deliver(app, sender)
        assert (counts.ambiguous, counts.sent) == (1, 2)
        clock.tick(LOOK_AFTER)
        assert deliver(app, sender).sent == 1  # not found at Twilio: sent now
    assert [body for _, body in sender.sent] == ["notice 1", "notice 2", "notice 0"]
    assert [m.status for m in outbox(engine)] == ["queued", "queued", "queued", "pending"]
