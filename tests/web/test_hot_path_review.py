"""The rewritten webhook hot path (issue 14) against the rules it must keep: a YES's credit
survives whatever happens to its words, the episode ends exactly at the account's threshold
(its own, its facility's or the global one, changed a moment ago), nothing is said after STOP,
and a MessageSid seen twice, even at once, is answered once and charged once."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from scheduler import reconcile
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient
from textpay import ledger, replies, settlement
from textpay.db import unit_of_work
from textpay.models import Message, PaymentAttempt


def ledger_is_sound(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []


def the_attempt(engine: Engine) -> PaymentAttempt:
    with unit_of_work(engine) as session:
        [attempt] = session.exec(select(PaymentAttempt)).all()
        return attempt


def texts_to(engine: Engine, phone: str) -> list[Message]:
    with unit_of_work(engine) as session:
        return list(
            session.exec(
                select(Message).where(Message.direction == "outbound", Message.phone == phone)
            )
        )


def reconcile_now(app: Flask) -> reconcile.ReconcileCounts:
    parts = app.extensions["textpay"]
    return reconcile.run(parts.engine, parts.gateway, parts.engine_config, grace_seconds=0)


# --- the receipt's words fail: the credit stays, and the receipt is texted later ------------


def test_a_receipt_that_cannot_be_worded_keeps_the_credit_and_is_texted_later(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = replies.receipt

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(replies, "receipt", broken)
    assert twilio.text(MOM, "YES") == ""
    assert (charges(engine), deposits(engine)) == (1, 1)
    attempt = the_attempt(engine)
    assert attempt.status == "succeeded"
    assert attempt.notified_at is None  # given back: someone must still tell

    monkeypatch.setattr(replies, "receipt", real)
    assert reconcile_now(app).told == 1
    [receipt] = texts_to(engine, MOM)
    assert receipt.kind == "receipt"
    assert "New balance $28.10" in receipt.body
    assert reconcile_now(app).told == 0
    ledger_is_sound(engine)


def test_a_database_error_while_wording_the_receipt_keeps_the_credit(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The words need queries of their own (the account's facts, the settings copy); one that
    fails (a statement timeout, a dropped connection) on PostgreSQL aborts the transaction.
    The card was charged: the deposit must stay, and the receipt be texted later."""
    real = settlement.voice
    broken_once: list[bool] = []

    def failing_query(session: Session, *args: Any, **kwargs: Any) -> Any:
        if not broken_once:
            broken_once.append(True)
            session.execute(text("SELECT no_such_column FROM account"))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(settlement, "voice", failing_query)
    response = twilio.sms(MOM, "YES")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert broken_once
    assert (charges(engine), deposits(engine)) == (1, 1)
    attempt = the_attempt(engine)
    assert (attempt.status, attempt.notified_at) == ("succeeded", None)
    assert reconcile_now(app).told == 1
    [receipt] = texts_to(engine, MOM)
    assert "New balance $28.10" in receipt.body
    ledger_is_sound(engine)
