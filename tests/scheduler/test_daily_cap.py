"""At most N engine-initiated texts per number per 24 hours; answers are never capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox
from tests.web.conftest import MOM
from textpay import messages
from textpay.db import unit_of_work
from textpay.sms import RecordingSender
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
