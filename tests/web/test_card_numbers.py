"""PCI: a card number is never stored, logged or texted, however it reaches TextPay.

A subscriber's text holding one (any of the formats in tests/card_numbers.py) is masked in the
message log, in `GET /admin/messages`, in consent records and in the logs, charges nothing and
gets the card warning. Both on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col, select

from tests.card_numbers import CARD_TEXTS, NOT_CARDS, VISA, digits_of
from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient
from textpay.db import unit_of_work
from textpay.models import ConsentEvent, Message
from textpay.redaction import MASK
from textpay.timeutil import utcnow

WARNING = "never text a card number"
AMEX = "378282246310005"


def leaks(value: Any, digits: str) -> bool:
    """Whether a stored or shown value holds the card's digits, whatever is between them."""
    return isinstance(value, str) and digits in digits_of(value)


def stored_values(engine: Engine) -> list[Any]:
    """Every value in every column of every table."""
    with unit_of_work(engine) as session:
        return [
            value
            for table in SQLModel.metadata.sorted_tables
            for row in session.connection().execute(table.select())
            for value in row
        ]


def nothing_stored(engine: Engine) -> None:
    """No table holds the Visa or Amex test card's digits, however separated."""
    stored = stored_values(engine)
    assert not [value for value in stored if leaks(value, VISA) or leaks(value, AMEX)]


def message_log(admin: AdminClient) -> list[dict[str, Any]]:
    response = admin.get("/admin/messages", query_string={"phone": MOM})
    assert response.status_code == 200
    found: list[dict[str, Any]] = response.get_json()["messages"]
    return found


def test_a_card_number_texted_any_way_is_masked_everywhere_and_gets_the_warning(
    twilio: TwilioClient,
    admin: AdminClient,
    engine: Engine,
    low_account: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every format in the table, one after another on one account (a fresh database for each
    would cost a minute): the text itself gets the warning; then STOP and START with the card
    in them opt out and in again, so that consent records hold the card's text too."""
    caplog.set_level(logging.DEBUG)
    wrong: list[str] = []
    with freeze_time(utcnow()) as clock:
        for case in CARD_TEXTS:
            clock.tick(timedelta(minutes=1))  # below the flood limit of texts per minute
            answer = twilio.text(MOM, case.text)
            if WARNING not in answer or leaks(answer, case.digits):
                wrong.append(f"{case.name}: answered {answer!r}")
            if "unsubscribed" not in twilio.text(MOM, f"STOP {case.text}"):
                wrong.append(f"{case.name}: STOP did not opt out")
            if "subscribed" not in twilio.text(MOM, f"START {case.text}"):
                wrong.append(f"{case.name}: START did not opt in")
            logged = [r.getMessage() for r in caplog.records]
            if not any(MASK in line for line in logged) or any(
                leaks(line, case.digits) for line in logged
            ):
                wrong.append(f"{case.name}: logged unmasked")
            caplog.clear()
    assert not wrong
    assert charges(engine) == 0
    assert deposits(engine) == 0

    shown = admin.get("/admin/messages", query_string={"phone": MOM, "limit": 1000})
    inbound = [m for m in shown.get_json()["messages"] if m["direction"] == "inbound"]
    assert len(inbound) == 3 * len(CARD_TEXTS)
    assert all(MASK in message["body"] for message in inbound)
    with unit_of_work(engine) as session:
        events = session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all()
        assert [e.kind for e in events] == ["opt_out", "opt_in"] * len(CARD_TEXTS)
        assert all(MASK in event.words for event in events)
        bodies = session.exec(select(Message.body).where(Message.direction == "inbound")).all()
        assert len(bodies) == 3 * len(CARD_TEXTS)
        assert all(MASK in body for body in bodies)
    everything = [*stored_values(engine), *(v for m in inbound for v in m.values())]
    for case in CARD_TEXTS:
        assert not [value for value in everything if leaks(value, case.digits)], case.name


@pytest.mark.parametrize("text", NOT_CARDS)
def test_numbers_that_are_not_card_numbers_are_stored_as_typed(
    text: str,
    twilio: TwilioClient,
    admin: AdminClient,
    engine: Engine,
    low_account: dict[str, Any],
) -> None:
    answer = twilio.text(MOM, text)
    assert WARNING not in answer
    inbound = [m for m in message_log(admin) if m["direction"] == "inbound"]
    assert [m["body"] for m in inbound] == [text]


@pytest.mark.parametrize("sender", ["+13125550199", "opted out"])
def test_a_card_number_from_a_number_with_no_account_or_opted_out_is_masked_too(
    sender: str,
    twilio: TwilioClient,
    admin: AdminClient,
    engine: Engine,
    low_account: dict[str, Any],
) -> None:
    if sender == "opted out":
        sender = MOM
        twilio.text(MOM, "STOP")
    answer = twilio.text(sender, f"my card {VISA[:4]}\u200b{VISA[4:]}")
    assert WARNING not in answer  # nothing to warn about: no payment can follow
    twilio.text(sender, f"START {VISA[:8]}.{VISA[8:]}")  # a consent record, card and all
    with unit_of_work(engine) as session:
        bodies = session.exec(select(Message.body).where(Message.phone == sender)).all()
        assert bodies[-2:] == [f"my card {MASK}", f"START {MASK}"]
    nothing_stored(engine)
    assert charges(engine) == 0
