"""Consent per number in the database: the carrier's word is kept like the subscriber's, and a
number's consent cannot be missed by an account moving onto it at the moment it changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import AdminClient
from tests.web.conftest import MOM
from textpay import consent, messages, outbox
from textpay.accounts import Enrolment, update_account
from textpay.db import unit_of_work
from textpay.models import Account, PhoneConsent
from textpay.schemas import AccountUpdate
from textpay.timeutil import utcnow

DAD = "+12125550148"
STRANGER = "+13125550199"


def test_a_carrier_opt_out_is_remembered_for_an_account_enrolled_later(
    admin: AdminClient, engine: Engine
) -> None:
    with unit_of_work(engine) as session:
        sent = messages.queue_outbound(
            session, phone=STRANGER, account_id=None, body="hello", kind="notice", now=utcnow()
        )
        sent.status, sent.twilio_sid = "sent", "SM" + "a" * 32
    with unit_of_work(engine) as session:
        outbox.report_status(
            session, sid="SM" + "a" * 32, status="undelivered", error_code="21610", now=utcnow()
        )

    enrolled = admin.enrol(phone=STRANGER)
    assert enrolled["opted_out"] is True
    with unit_of_work(engine) as session:
        later = messages.queue_outbound(
            session, phone=STRANGER, account_id=enrolled["id"], body="hi", kind="notice",
            now=utcnow(),
        )  # fmt: skip
        assert later.status == "withheld"


@pytest.mark.parametrize("first", ["move", "stop"])
def test_a_move_onto_a_number_during_its_first_stop_leaves_the_account_opted_out(
    app: Flask, admin: AdminClient, engine: Engine, first: str
) -> None:
    dad = admin.enrol(account_number="ACCT-7730", phone=DAD)
    context = Enrolment(actor="test", gateway=app.extensions["textpay"].gateway)

    def move(session: Session) -> Any:
        return update_account(session, dad["id"], AccountUpdate(phone=MOM), context)

    def stop(session: Session) -> Any:
        consent.opt_out(session, MOM, words="STOP", source="sms", now=utcnow())

    steps: dict[str, Callable[[Session], Any]] = {"move": move, "stop": stop}
    second = steps["stop" if first == "move" else "move"]
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            with unit_of_work(engine) as session:
                second(session)
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    with unit_of_work(engine) as session:
        steps[first](session)
        other = threading.Thread(target=run_second)
        other.start()
        other.join(0.5)
        # The second waits for the first to commit instead of deciding on what it saw before.
        assert other.is_alive()
    other.join(10)
    assert not other.is_alive()
    assert errors == []

    with unit_of_work(engine) as session:
        number = session.get(PhoneConsent, MOM)
        account = session.get(Account, dad["id"])
        assert number is not None
        assert account is not None
        assert (number.opted_out, account.phone, account.opted_out) == (True, MOM, True)
