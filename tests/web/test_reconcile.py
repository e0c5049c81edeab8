"""Charges left pending by a crash are settled once by the reconciler, and the subscriber told."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner
from flask import Flask
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import reconcile
from tests.web.conftest import MOM, charges, deposits, prompt_status
from tests.web.twilio_client import TwilioClient, new_sid
from textpay import engine as turns
from textpay.db import unit_of_work
from textpay.models import Message, PaymentAttempt
from textpay.timeutil import utcnow
from webhooks.cli import cli


def crash_after_phase_one(app: Flask, engine: Engine, sid: str) -> None:
    """What a web process leaves behind when it dies right after committing the accepted
    prompt and the pending attempt, before calling the gateway."""
    config = app.extensions["textpay"].engine_config
    with unit_of_work(engine) as session:
        turn = turns.receive(
            session, turns.InboundSms(sid=sid, sender=MOM, body="YES"), now=utcnow(), config=config
        )
    assert turn.charge is not None


def test_a_charge_the_gateway_never_saw_is_made_once_with_the_same_key(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    sid = new_sid()
    crash_after_phase_one(app, engine, sid)
    assert charges(engine) == 0
    # Twilio retries the webhook: the answer is "processing", and nothing is charged.
    retry = TwilioClient(app.test_client()).text(MOM, "YES", sid=sid)
    assert "processing your payment" in retry
    assert charges(engine) == 0

    parts = app.extensions["textpay"]
    counts = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
    assert (counts.settled, counts.still_pending) == (1, 0)
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert prompt_status(engine, low_account["prompt_id"]) == "funded"
    # Running it again finds nothing to do.
    assert reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0).settled == 0
    with unit_of_work(engine) as session:
        [told] = session.exec(select(Message).where(Message.direction == "outbound")).all()
        [attempt] = session.exec(select(PaymentAttempt)).all()
    assert told.kind == "receipt"
    assert attempt.confirmation in told.body
    assert "New balance $28.10" in told.body


def test_a_charge_the_gateway_declined_is_settled_as_declined(
    app: Flask, admin: Any, engine: Engine, offer: Any
) -> None:
    account = admin.enrol(payment_method={"token": "tok_expiredCard"})
    admin.credit(account["id"], 310, "seed")
    prompt_id = offer(account["id"])
    crash_after_phase_one(app, engine, new_sid())
    parts = app.extensions["textpay"]
    assert reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0).settled == 1
    assert deposits(engine) == 0
    assert prompt_status(engine, prompt_id) == "failed"
    with unit_of_work(engine) as session:
        [told] = session.exec(select(Message).where(Message.direction == "outbound")).all()
    assert told.kind == "payment_failed"
    assert "card expired" in told.body


def test_reconcile_command_leaves_young_attempts_alone(
    app: Flask, engine: Engine, database_url: str, low_account: dict[str, Any]
) -> None:
    crash_after_phase_one(app, engine, new_sid())
    env = {"DATABASE_URL": database_url}
    young = CliRunner().invoke(cli, ["reconcile"], env=env)
    assert young.exit_code == 0, young.output
    assert "settled 0" in young.output
    assert charges(engine) == 0
    now = CliRunner().invoke(cli, ["reconcile", "--grace-seconds", "0"], env=env)
    assert "settled 1, still pending 0" in now.output
    assert deposits(engine) == 1
