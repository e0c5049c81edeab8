"""What the outbox sends is still true when it leaves.

An offer made at night waits for the morning. If by then it was paid, declined or has run out,
or its account was closed or taken off TextPay, or the number said STOP, the subscriber must
not wake up to it. And the offer can only be accepted once its text has actually gone out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import AdminClient
from tests.scheduler.helpers import deliver, outbox
from tests.web.conftest import MOM
from textpay import messages, prompts
from textpay.db import unit_of_work
from textpay.models import Account, PhoneConsent, Prompt
from textpay.policy import effective_for_account
from textpay.sms import RecordingSender, SendOutcome, SendResult
from textpay.timeutil import utcnow

NIGHT = "2026-11-27 03:00:00"  # 10pm in New York: too late to text
MORNING = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)  # 8am in New York


def offer_at_night(engine: Engine, account_id: int, *, kind: str = "prompt") -> tuple[int, int]:
    """An offer made at night, its text held in the outbox until the morning, as the scan
    leaves it. Returns the offer's id and the text's."""
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        offer = prompts.offer(session, account, effective_for_account(session, account),
                              now=utcnow(), starts_at=MORNING)  # fmt: skip
        text = messages.queue_outbound(session, phone=account.phone, account_id=account_id,
                                       body=f"TextPay {kind}: reply YES to add $25.00", kind=kind,
                                       now=utcnow(), send_after=MORNING,
                                       engine_initiated=True)  # fmt: skip
        text.prompt_id = offer.id
        session.add(text)
        assert offer.id is not None
        assert text.id is not None
        return offer.id, text.id


def set_offer(engine: Engine, prompt_id: int, **values: object) -> None:
    with unit_of_work(engine) as session:
        session.execute(update(Prompt).where(Prompt.id == prompt_id).values(**values))  # type: ignore[arg-type]


def stop_without_withdrawing(session: Session, phone: str) -> None:
    """A STOP whose transaction raced the scan's: the number is opted out, but the text the
    scan queued at the same moment was not there to be withdrawn."""
    session.merge(PhoneConsent(phone=phone, opted_out=True, changed_at=utcnow()))
    session.execute(update(Account).where(Account.phone == phone).values(opted_out=True))  # type: ignore[arg-type]


def offer_of(engine: Engine, prompt_id: int) -> Prompt:
    with unit_of_work(engine) as session:
        found = session.get(Prompt, prompt_id)
        assert found is not None
        return found


CHANGES: dict[str, Callable[[Engine, AdminClient, int, int], None]] = {
    "paid at the counter": lambda e, a, acct, p: set_offer(e, p, status="funded"),
    "declined": lambda e, a, acct, p: set_offer(e, p, status="declined"),
    "past its end": lambda e, a, acct, p: set_offer(
        e, p, expires_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    ),
    "account closed": lambda e, a, acct, p: _patch(a, acct, status="closed"),
    "account suspended": lambda e, a, acct, p: _patch(a, acct, status="suspended"),
    "TextPay switched off": lambda e, a, acct, p: _patch(a, acct, textpay_enabled=False),
    "number opted out": lambda e, a, acct, p: _stop(e),
}


def _patch(admin: AdminClient, account_id: int, **fields: object) -> None:
    response = admin.patch(f"/admin/accounts/{account_id}", json=fields)
    assert response.status_code == 200, response.get_json()


def _stop(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        stop_without_withdrawing(session, MOM)


@pytest.mark.parametrize("kind", ["prompt", "reminder"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_an_offer_held_overnight_is_dropped_if_it_is_no_longer_true(
    app: Flask, admin: AdminClient, engine: Engine, change: str, kind: str
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time(NIGHT) as clock:
        prompt_id, text_id = offer_at_night(engine, account["id"], kind=kind)
        deliver(app, sender)
        assert outbox(engine, id=text_id)[0].status == "pending"  # waiting for the morning
        CHANGES[change](engine, admin, account["id"], prompt_id)
        clock.move_to(MORNING)
        counts = deliver(app, sender)
    assert sender.sent == []
    assert counts.sent == 0
    assert outbox(engine, id=text_id)[0].status == "canceled"
    assert offer_of(engine, prompt_id).acceptable_after is None


def test_an_offer_still_open_in_the_morning_goes_and_becomes_acceptable_when_sent(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time(NIGHT) as clock:
        prompt_id, text_id = offer_at_night(engine, account["id"])
        deliver(app, sender)
        assert offer_of(engine, prompt_id).acceptable_after is None  # not sent: no YES yet
        clock.move_to("2026-11-27 13:00:07")
        assert deliver(app, sender).sent == 1
    assert [body for _, body in sender.sent] == ["TextPay prompt: reply YES to add $25.00"]
    sent = outbox(engine, id=text_id)[0]
    assert sent.status == "queued"
    assert offer_of(engine, prompt_id).acceptable_after == sent.sent_at
    assert sent.sent_at == datetime(2026, 11, 27, 13, 0, 7, tzinfo=UTC)


def test_an_offer_whose_send_is_retried_is_not_acceptable_until_it_goes(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender([SendResult(SendOutcome.RETRY, error_code="20429")])
    with freeze_time(MORNING) as clock:
        prompt_id, _ = offer_at_night(engine, account["id"])
        assert deliver(app, sender).retrying == 1
        assert offer_of(engine, prompt_id).acceptable_after is None
        clock.tick(60)
        assert deliver(app, sender).sent == 1
    assert offer_of(engine, prompt_id).acceptable_after == datetime(2026, 11, 27, 13, 1, tzinfo=UTC)


def test_a_receipt_still_goes_to_an_account_closed_since(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """A receipt is true whatever became of the account: the money moved."""
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time(MORNING):
        with unit_of_work(engine) as session:
            messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                    body="Added $25.00", kind="receipt", now=utcnow())  # fmt: skip
        _patch(admin, account["id"], status="closed")
        assert deliver(app, sender).sent == 1
    assert [body for _, body in sender.sent] == ["Added $25.00"]


def test_nothing_goes_to_a_number_that_said_stop_since_it_was_queued(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(timezone="America/New_York")
    sender = RecordingSender()
    with freeze_time(MORNING):
        with unit_of_work(engine) as session:
            receipt = messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                              body="Added $25.00", kind="receipt",
                                              now=utcnow())  # fmt: skip
            notice = messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                             body="AutoPay is off", kind="autopay_disabled",
                                             now=utcnow(), engine_initiated=True)  # fmt: skip
            ids = [receipt.id, notice.id]
        with unit_of_work(engine) as session:
            stop_without_withdrawing(session, MOM)
        deliver(app, sender)
    assert sender.sent == []
    assert [m.status for m in outbox(engine) if m.id in ids] == ["canceled", "canceled"]
