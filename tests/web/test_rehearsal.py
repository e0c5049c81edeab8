"""The web process rehearses a YES and a BAL before its workers are forked (`webhooks.rehearsal`,
called by gunicorn.conf.py's `when_ready`): a worker's first YES then runs only statements
compiled already, and the rehearsal leaves no trace in the database, the logs or the money."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from tests.web.conftest import MOM, app_engine, deposits
from tests.web.test_statement_budget import counted
from tests.web.twilio_client import TwilioClient
from textpay import ledger
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.rehearsal import REHEARSAL_PHONE
from webhooks import create_app
from webhooks.rehearsal import rehearse


def _rows_by_table(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


def _first_yes_compiled(app: Flask, twilio: TwilioClient) -> tuple[str, list[str]]:
    """The reply to the process's first YES, and the statements of TextPay's own (not the
    sandbox gateway's, which stands in for the processor's side of a network call) that
    SQLAlchemy had to compile for it."""
    with counted(app_engine(app)) as seen:
        reply = twilio.text(MOM, "YES 4821")
    return reply, [s for s in seen.compiled if "sandbox_charge" not in s.lower()]


@pytest.mark.usefixtures("two_accounts")
def test_a_worker_s_first_yes_compiles_nothing_once_the_text_was_rehearsed(
    app: Flask, engine: Engine, twilio: TwilioClient
) -> None:
    assert rehearse(app) is True
    reply, compiled = _first_yes_compiled(app, twilio)
    assert "added $25.00" in reply
    assert "New balance $28.10" in reply
    assert deposits(engine) == 1
    assert compiled == []


@pytest.mark.usefixtures("two_accounts")
def test_without_the_rehearsal_the_first_yes_compiles_its_statements(
    app: Flask, twilio: TwilioClient
) -> None:
    """What the rehearsal spares a worker (30-70 ms of its first YES on the 2-core machine,
    with every text queued behind it waiting)."""
    reply, compiled = _first_yes_compiled(app, twilio)
    assert "added $25.00" in reply
    assert len(compiled) >= 5, compiled


def test_the_rehearsal_leaves_nothing_behind(
    app: Flask, engine: Engine, two_accounts: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """No row (an account, a text, an entry, an audit line, a sandbox charge), no balance
    moved, no log line: it ran in a transaction rolled back, charging no card."""
    before = _rows_by_table(engine)
    with caplog.at_level(logging.DEBUG):
        assert rehearse(app) is True
    assert _rows_by_table(engine) == before
    assert deposits(engine) == 0
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []
    logged = [r for r in caplog.records if r.name.startswith(("textpay", "webhooks"))]
    assert logged == []
    assert REHEARSAL_PHONE not in caplog.text
    assert two_accounts["first"]["phone"] not in caplog.text


def test_a_rehearsal_that_cannot_run_is_logged_and_the_web_starts_anyway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database without TextPay's tables yet (`textpay init-db` not run): the workers will
    answer 503 until it is, and compile their statements on first use once it is."""
    app = create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/empty.db"))
    with caplog.at_level(logging.WARNING, logger="webhooks.rehearsal"):
        assert rehearse(app) is False
    assert "rehearsal of a text failed" in caplog.text


def test_an_app_without_textpay_has_nothing_to_rehearse() -> None:
    assert rehearse(Flask("floor")) is False
