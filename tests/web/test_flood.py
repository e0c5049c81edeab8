"""The per-number flood limit: at most `inbound_per_minute` texts a minute get an answer, however
many arrive at once; STOP is always answered."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.web.conftest import MOM, charges
from tests.web.twilio_client import TwilioClient
from textpay import consent
from textpay.db import unit_of_work
from textpay.timeutil import utcnow

LIMIT = 20  # EngineConfig.inbound_per_minute's default


def flood(app: Flask, *, senders: int, each: int, phone: str = MOM, body: str = "BAL") -> list[str]:
    """`senders` threads, each with its own connection to the app, posting `each` texts from
    `phone` as fast as they can, all starting together; every reply."""
    start = threading.Barrier(senders)
    replies: list[str] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def sender() -> None:
        client = TwilioClient(app.test_client())
        try:
            start.wait()
            for _ in range(each):
                answer = client.text(phone, body)
                with lock:
                    replies.append(answer)
        except BaseException as failure:  # reported by the test, not lost in the thread
            failures.append(failure)

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(replies) == senders * each
    return replies


def test_one_at_a_time_the_limit_holds_and_lifts_after_a_minute(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    with freeze_time(utcnow()) as clock:
        answers = [twilio.text(MOM, "BAL") for _ in range(LIMIT + 5)]
        assert sum(1 for a in answers if a) == LIMIT
        assert all("acct ...4821" in a for a in answers[:LIMIT])
        assert twilio.text(MOM, "YES") == ""  # no payment from a flood either
        assert charges(engine) == 0
        assert "unsubscribed" in twilio.text(MOM, "STOP")  # STOP always answers
        clock.tick(timedelta(seconds=61))
        assert "subscribed" in twilio.text(MOM, "START")


def test_parallel_senders_get_no_more_answers_than_the_limit(
    app: Flask, low_account: dict[str, Any]
) -> None:
    """Eight senders at once used to get 21-24 answers: each turn counted the texts committed
    before it and missed the ones beside it. Five numbers (Mom's, and four no account knows,
    which are answered too) so that a lucky interleaving cannot hide the race. Both databases:
    PostgreSQL's per-number advisory lock and SQLite's BEGIN IMMEDIATE each serialise the turns
    (with a deferred BEGIN, SQLite answers some of these texts 503)."""
    numbers = [MOM, *(f"+1212555{n:04d}" for n in range(201, 205))]
    answered = {phone: sum(1 for r in flood(app, senders=8, each=6, phone=phone) if r)
                for phone in numbers}  # fmt: skip
    assert answered == dict.fromkeys(numbers, LIMIT)


def test_stop_is_answered_in_the_middle_of_a_flood(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    stop: list[str] = []
    flooding = threading.Thread(target=lambda: flood(app, senders=8, each=6))
    flooding.start()
    stop.append(TwilioClient(app.test_client()).text(MOM, "STOP"))
    flooding.join(timeout=120)
    assert "unsubscribed" in stop[0]
    with unit_of_work(engine) as session:
        assert consent.is_opted_out(session, MOM)
