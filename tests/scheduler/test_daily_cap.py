"""At most N engine-initiated texts per number per 24 hours, however many dispatchers run;
answers are never capped."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from scheduler import dispatch
from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox
from tests.web.conftest import MOM
from textpay import messages
from textpay import outbox as outbox_rules
from textpay.db import unit_of_work
from textpay.sms import RecordingSender, SendOutcome, SendResult, new_sid
from textpay.timeutil import utcnow


def test_the_fourth_text_in_a_day_waits_until_the_first_is_a_day_old(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time("2026-11-26 15:00:00") as clock:  # 10am in New York
        for n in range(4):
            with unit_of_work(engine) as session:
                messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                        body=f"notice {n}", kind="prompt", now=utcnow(),
                                        engine_initiated=True)  # fmt: skip
            deliver(app, sender)
            clock.tick(timedelta(hours=1))
        with unit_of_work(engine) as session:
            messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                    body="receipt", kind="receipt", now=utcnow())  # fmt: skip
        deliver(app, sender)
        assert [body for _, body in sender.sent] == ["notice 0", "notice 1", "notice 2", "receipt"]
        held = next(m for m in outbox(engine) if m.body == "notice 3")
        assert held.status == "pending"
        assert held.send_after == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
        clock.move_to("2026-11-27 15:00:01")
        deliver(app, sender)
    assert sender.sent[-1][1] == "notice 3"


def queue_notices(engine: Engine, account_id: int, count: int) -> None:
    with unit_of_work(engine) as session:
        for n in range(count):
            messages.queue_outbound(session, phone=MOM, account_id=account_id,
                                    body=f"notice {n}", kind="prompt", now=utcnow(),
                                    engine_initiated=True)  # fmt: skip


def sent_bodies(engine: Engine) -> list[str]:
    return [m.body for m in outbox(engine) if m.sent_at is not None]


def record_all(engine: Engine, claimed: list[outbox_rules.Outgoing]) -> None:
    for item in claimed:
        with unit_of_work(engine) as session:
            outbox_rules.record(session, item.message_id, SendResult(SendOutcome.ACCEPTED,
                                sid=new_sid(), status="queued"), now=utcnow())  # fmt: skip


def test_texts_claimed_by_another_dispatcher_count_against_the_cap(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """A dispatcher that has claimed two texts and is still sending them: the next claim
    counts them, and lets only one more go."""
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time("2026-11-26 15:00:00"):  # 10am in New York
        queue_notices(engine, account["id"], 4)
        with unit_of_work(engine) as session:
            first = outbox_rules.claim(session, now=utcnow(), limit=2)
        assert len(first) == 2
        assert deliver(app, sender).sent == 1
        record_all(engine, first)
        assert deliver(app, sender).sent == 0
    assert sorted(sent_bodies(engine)) == ["notice 0", "notice 1", "notice 2"]
    held = next(m for m in outbox(engine) if m.body == "notice 3")
    assert (held.status, held.send_after) == ("pending", datetime(2026, 11, 27, 15, 0, tzinfo=UTC))


def test_a_text_of_unknown_outcome_counts_against_the_cap(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """It may have arrived: it is one of the day's texts."""
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender([SendResult(SendOutcome.UNKNOWN)])
    with freeze_time("2026-11-26 15:00:00"):
        queue_notices(engine, account["id"], 4)
        counts = deliver(app, sender)
    assert (counts.unknown, counts.sent) == (1, 2)
    assert [m.status for m in outbox(engine)] == ["unknown", "queued", "queued", "pending"]


@pytest.mark.postgres_only
def test_two_dispatchers_claiming_at_once_keep_to_the_cap(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """Each takes different rows (SKIP LOCKED), both for the same number: only one may weigh
    that number's cap at a time, or both see two texts left and four go out."""
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time("2026-11-26 15:00:00"):
        queue_notices(engine, account["id"], 4)
        with unit_of_work(engine) as one:
            first = outbox_rules.claim(one, now=utcnow(), limit=2)
            with unit_of_work(engine) as other:  # while the first has not committed
                second = outbox_rules.claim(other, now=utcnow(), limit=2)
        assert (len(first), len(second)) == (2, 0)
        record_all(engine, first + second)
        deliver(app, sender)
        deliver(app, sender)
    assert len(sent_bodies(engine)) == 3


@pytest.mark.postgres_only
def test_many_dispatchers_running_together_send_no_more_than_the_cap(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    parts = app.extensions["textpay"]
    with freeze_time("2026-11-26 15:00:00"):
        queue_notices(engine, account["id"], 12)
        for _ in range(3):
            start = threading.Barrier(6)

            def dispatcher(wait: threading.Barrier = start) -> None:
                wait.wait()
                dispatch.run(parts.engine, sender, pacer=dispatch.Pacer(0), batch=2)

            threads = [threading.Thread(target=dispatcher) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert len(sender.sent) == 3
    assert len(sent_bodies(engine)) == 3
