"""Bad input and abuse: fuzzed webhooks, floods, oversized bodies, and secrets kept out of logs.

The webhook fuzzes run on SQLite and PostgreSQL (which refuses NUL in text, and values longer
than a column): signed requests, every field of `/twilio/sms` and `/twilio/status` usually valid,
often hostile, sometimes absent; never a 5xx, never a broken ledger.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import MOM, charges
from tests.web.twilio_client import TWILIO_AUTH_TOKEN, TwilioClient, reply_text
from textpay import ledger, messages, outbox
from textpay.db import unit_of_work
from textpay.messages import STATUS_RANK
from textpay.models import Message
from textpay.sms import SendOutcome, SendResult
from textpay.timeutil import utcnow

URL = "http://localhost/twilio/sms"
FIELDS = ["MessageSid", "From", "To", "Body", "NumMedia", "AccountSid", "MediaUrl0"]
values = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789+() -", max_size=20),
    st.sampled_from([MOM, "+13125550199", "SM" + "a" * 32, "YES", "STOP", "BAL", "SI 40"]),
    st.text(min_size=1500, max_size=2000),
)
forms = st.lists(st.tuples(st.sampled_from(FIELDS), values), max_size=12)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples in every run: CI must not pass by luck
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pairs=forms)
def test_fuzzed_signed_webhooks_never_500_and_never_break_the_ledger(
    app: Flask, engine: Engine, low_account: dict[str, Any], pairs: list[tuple[str, str]]
) -> None:
    form = MultiDict(pairs)
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(URL, form)
    response = app.test_client().post(
        "/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}
    )
    # 413 for bodies over 64 KiB (many 2,000-character fields add up).
    assert response.status_code in (200, 400, 413), response.get_data(as_text=True)[:300]
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []
    assert charges(engine) <= 1  # one offer: at most one charge, whatever arrives


# Hostile values for any field: NUL and other control characters, text in other scripts and
# digits that are not ASCII, strings far longer than any column, and arbitrary Unicode.
HOSTILE_SAMPLES = [
    "", "\x00", "SM\x00" + "a" * 31, "SM" + "a" * 32 + "\x00", "+1212555\x000147", "YES\x00",
    "\x00STOP", "30003\x00", "delivered\x00", "1" * 11, "\r\n", "\x7f\x1b[31m", "\u202eSEY",
    "Ω" * 300, "🙂" * 600, "是", "نعم", "4242 4242 4242 4242", "+١٢١٢٥٥٥٠١٤٧", "٣٠٠٠٣",
    "３０００３", "ＹＥＳ", "ЅТОР", "SM" + "ａ" * 32,  # noqa: RUF001 (look-alikes are the point)
]  # fmt: skip
HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_SAMPLES),
    st.text(max_size=40),
    st.text(max_size=40).map(lambda text: text + "\x00" + text),
    st.text(alphabet=st.characters(min_codepoint=0x370, max_codepoint=0x1FFFF), max_size=60),
    st.text(min_size=2000, max_size=5000),
)
OUTBOUND_SID = "SM" + "e" * 32  # a text TextPay sent, as the fixture records it
SIDS = st.one_of(
    st.integers(1, 10**6).map(lambda n: f"SM{n:032x}"),  # mostly fresh texts
    st.sampled_from([OUTBOUND_SID, "SM" + "f" * 32, "MM" + "1" * 32]),  # ours, and replays
)
SMS_FIELDS = {
    "MessageSid": SIDS,
    "From": st.sampled_from([MOM, "+13125550199", "(212) 555-0147", "+447700900123"]),
    "Body": st.sampled_from(["YES", "YES 40", "SI 40", "NO", "BAL", "STOP", "START", "HELP",
                             "CARD", "AUTOPAY ON", "ESPAÑOL"]),
    "To": st.just("+12125550100"),
    "AccountSid": st.just("AC" + "0" * 32),
    "NumMedia": st.sampled_from(["0", "1"]),
}  # fmt: skip
STATUS_FIELDS = {
    "MessageSid": SIDS,
    "MessageStatus": st.sampled_from(sorted(STATUS_RANK)),
    "ErrorCode": st.sampled_from(["30003", "30005", "21610", "0", "1234567890"]),
    "To": st.just(MOM),
}


@st.composite
def forms(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]]) -> dict[str, str | None]:
    """A webhook as Twilio sends it, with up to three of its fields hostile or left out (so
    each hostile value meets otherwise valid requests, which reach the database)."""
    form: dict[str, str | None] = {name: draw(valid) for name, valid in fields.items()}
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=3)):
        form[name] = draw(st.one_of(HOSTILE, HOSTILE, st.none()))
    return form


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples in every run: CI must not pass by luck
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def signed_post(app: Flask, path: str, form: dict[str, str | None]) -> int:
    """Post `form` (fields that are None left out) signed as Twilio signs; the status code."""
    present = MultiDict([(name, value) for name, value in form.items() if value is not None])
    url = "http://localhost" + path
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, present)
    response = app.test_client().post(path, data=present, headers={"X-Twilio-Signature": signature})
    event(f"{path} answered {response.status_code}")
    return response.status_code


@pytest.fixture
def outbound_text(engine: Engine) -> int:
    """A text TextPay sent, which Twilio accepted as OUTBOUND_SID."""
    with unit_of_work(engine) as session:
        queued = messages.queue_outbound(session, phone=MOM, account_id=None, body="hello",
                                         kind="receipt", now=utcnow())  # fmt: skip
        assert queued.id is not None
        outbox.record(session, queued.id, SendResult(SendOutcome.ACCEPTED, sid=OUTBOUND_SID,
                                                     status="queued"), now=utcnow())  # fmt: skip
        return queued.id


@FUZZ
@given(form=forms(SMS_FIELDS))
def test_every_field_of_an_inbound_text_fuzzed_never_5xx(
    app: Flask, engine: Engine, low_account: dict[str, Any], outbound_text: int,
    form: dict[str, str | None],
) -> None:  # fmt: skip
    assert signed_post(app, "/twilio/sms", form) in (200, 400, 413)
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []
        sent = session.get(Message, outbound_text)
        assert sent is not None
        assert sent.direction == "outbound"  # never taken for an inbound text
    assert charges(engine) <= 1  # one offer: at most one charge, whatever arrives


@FUZZ
@given(form=forms(STATUS_FIELDS))
def test_every_field_of_a_status_callback_fuzzed_never_5xx(
    app: Flask, engine: Engine, outbound_text: int, form: dict[str, str | None]
) -> None:
    assert signed_post(app, "/twilio/status", form) in (204, 400, 413)
    with unit_of_work(engine) as session:
        sent = session.get(Message, outbound_text)
        assert sent is not None
        code = sent.error_code
        assert code is None or (code.isascii() and code.isdigit())


def test_a_flooding_number_stops_getting_answers_but_stop_still_works(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    answers = [twilio.text(MOM, "BAL") for _ in range(20)]
    assert all("acct ...4821" in a for a in answers)
    assert twilio.text(MOM, "BAL") == ""
    assert twilio.text(MOM, "YES") == ""  # no payments from a flood either
    assert charges(engine) == 0
    assert "unsubscribed" in twilio.text(MOM, "STOP")


def test_oversized_webhooks_are_refused_with_413(twilio: TwilioClient) -> None:
    response = twilio.sms(MOM, "x" * 70_000)
    assert response.status_code == 413


def test_the_admin_token_is_never_logged(
    app: Flask, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin.enrol()
    admin.get("/admin/accounts/1")
    app.test_client().get("/admin/accounts", headers={"Authorization": "Bearer wrong-guess"})
    assert ADMIN_TOKEN not in caplog.text
    assert "wrong-guess" not in caplog.text


def test_replies_are_valid_twiml_even_for_markup(
    twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    response = twilio.sms(MOM, "<Response><Message>free money</Message></Response>")
    assert "didn't understand" in reply_text(response)
