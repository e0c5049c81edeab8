"""PCI: a card number is never stored, logged or texted, however it reaches TextPay.

A subscriber's text holding one (any of the formats in tests/card_numbers.py) is masked in the
message log, in `GET /admin/messages`, in consent records and in the logs, charges nothing and
gets the card warning. An operator's field holding one is refused with a 422 naming the field,
and nothing is stored. Both on SQLite and PostgreSQL.
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
            # Texts are logged by length only (textpay/logsafe.py scrubs the rest): whatever is
            # logged must not hold the card's digits.
            if not logged or any(leaks(line, case.digits) for line in logged):
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


# --- Operator fields -------------------------------------------------------------------------

CARD_FORMATS = [
    "4242 4242 4242 4242",
    "4242.4242.4242.4242",
    "4242-4242-4242-4242",
    "(4242)(4242)(4242)(4242)",
    "Mom 4242\u200b4242\u200b4242\u200b4242",
    "\u0664\u0662\u0664\u0662" * 4,  # Arabic-Indic digits
    "3782 822463 10005",
]


def refused(response: Any, field: str) -> None:
    """A 422 validation problem that names `field` and shows no card number."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "/problems/validation-error"
    assert field in {error["field"] for error in body["errors"]}
    shown = response.get_data(as_text=True)
    assert not leaks(shown, VISA)
    assert not leaks(shown, AMEX)


ENROL = {
    "account_number": "ACCT-7730",
    "phone": "(212) 555-0199",
    "nickname": "Dad",
    "payment_method": {"token": "tok_visa", "brand": "visa", "last4": "4242"},
}


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("nickname", lambda card: {"nickname": card}),
        ("account_number", lambda card: {"account_number": card}),
        ("phone", lambda card: {"phone": card}),
        ("facility", lambda card: {"facility": card}),
        ("timezone", lambda card: {"timezone": card}),
        ("payment_method.token", lambda card: {"payment_method": {"token": card}}),
        (
            "payment_method.brand",
            # The field holds 20 characters at most: the card's digits alone, then.
            lambda card: {
                "payment_method": {
                    "token": "tok_visa",
                    "brand": card if len(card) <= 20 else digits_of(card),
                }
            },
        ),
    ],
)
def test_enrolment_refuses_a_card_number_in_any_text_field(
    field: str, change: Any, admin: AdminClient, engine: Engine
) -> None:
    for card in CARD_FORMATS:
        refused(admin.post("/admin/accounts", json={**ENROL, **change(card)}), field)
    assert admin.get("/admin/accounts").get_json()["accounts"] == []
    nothing_stored(engine)


def test_a_phone_number_is_checked_as_a_phone_number_and_never_repeats_a_card(
    admin: AdminClient,
) -> None:
    # A valid mobile number in China that passes the card rule (13 digits, Luhn-valid): it is
    # stored as E.164, as every phone is, and never refused as a card number.
    created = admin.enrol(phone="+86 138 0013 8002")
    assert created["phone"] == "+8613800138002"
    for card in CARD_FORMATS:
        for path in ("/admin/accounts", "/admin/messages"):
            refused(admin.get(path, query_string={"phone": card}), "phone")


def test_a_nickname_holding_a_card_number_is_refused_and_never_texted(
    admin: AdminClient, twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    account_id = low_account["id"]
    for card in CARD_FORMATS:
        refused(admin.patch(f"/admin/accounts/{account_id}", json={"nickname": card}), "nickname")
    assert admin.get(f"/admin/accounts/{account_id}").get_json()["nickname"] == "Mom"
    assert "(Mom)" in twilio.text(MOM, "BAL")


def test_a_credit_or_refund_reason_holding_a_card_number_is_refused(
    admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    account_id = low_account["id"]
    before = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()["entries"]
    for card in CARD_FORMATS:
        for kind in ("credit", "refund"):
            response = admin.post(
                f"/admin/accounts/{account_id}/credits",
                json={"amount_cents": 500, "reason": f"goodwill, card {card}", "kind": kind},
                headers={"Idempotency-Key": f"reason-{kind}"},
            )
            refused(response, "reason")
    assert admin.get(f"/admin/accounts/{account_id}/ledger").get_json()["entries"] == before
    nothing_stored(engine)


@pytest.mark.parametrize(
    ("field", "body"),
    [("name", lambda card: {"name": card}), ("timezone", lambda card: {"timezone": card})],
)
def test_a_facility_field_holding_a_card_number_is_refused(
    field: str, body: Any, admin: AdminClient, engine: Engine
) -> None:
    for card in CARD_FORMATS:
        refused(admin.put("/admin/facilities/F1", json=body(card)), field)
    assert admin.get("/admin/facilities/F1").status_code == 404
    nothing_stored(engine)


def test_a_facility_code_that_is_a_card_number_is_refused(admin: AdminClient) -> None:
    for code in (VISA, "4242-4242-4242-4242", "3782_822463_10005"):
        refused(admin.put(f"/admin/facilities/{code}", json={"name": "North"}), "code")
        missing = admin.get(f"/admin/facilities/{code}")
        assert missing.status_code == 404
        assert not leaks(missing.get_data(as_text=True), digits_of(code))
    assert admin.get("/admin/facilities").get_json()["facilities"] == []


def test_an_operator_name_holding_a_card_number_is_refused(
    admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    response = admin.patch(
        f"/admin/accounts/{low_account['id']}",
        json={"nickname": "Mother"},
        headers={"X-TextPay-Actor": "ops 4242 4242 4242 4242"},
    )
    refused(response, "X-TextPay-Actor")
    assert admin.get(f"/admin/accounts/{low_account['id']}").get_json()["nickname"] == "Mom"
    nothing_stored(engine)


def test_a_call_id_that_looks_like_a_card_number_is_still_a_usage_reference(
    admin: AdminClient, low_account: dict[str, Any]
) -> None:
    # The calling platform's call ids (Asterisk's `epoch.sequence`) are machine identifiers,
    # never texted: refusing the one in ten that passes the Luhn check would lose call charges.
    reference = "1705312345.1007"  # 14 digits, Luhn-valid
    response = admin.usage(low_account["id"], 100, reference)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["reference"] == f"usage:{reference}"
