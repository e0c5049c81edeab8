"""The web process rehearses a YES and a BAL before its workers are forked (`webhooks.rehearsal`,
called by gunicorn.conf.py's `when_ready`): a worker's first YES then runs only statements
compiled already, and the rehearsal leaves no trace in the database, the logs or the money."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from tests.web.conftest import MOM, app_engine, deposits
from tests.web.test_statement_budget import counted
from tests.web.twilio_client import TwilioClient
from textpay import ledger, settings_cache
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.rehearsal import FICTIONAL_NUMBERS, unused_number
from webhooks import create_app
from webhooks.rehearsal import rehearse


def _everything(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    with engine.connect() as connection:
        return {
            table.name: sorted(
                connection.execute(select(table)).all(), key=lambda row: repr(tuple(row))
            )
            for table in SQLModel.metadata.sorted_tables
        }


def _fresh_worker(settings: Settings) -> Flask:
    """An app as a new worker has it: its own engine, nothing compiled yet (the fixtures'
    requests went through another app), no copy of the settings."""
    settings_cache.invalidate()
    return create_app(settings)


def _first_yes_compiled(app: Flask) -> tuple[str, list[str]]:
    """The reply to the app's first YES, more than the settings' lifetime after its start, and
    the statements of TextPay's own (not the sandbox gateway's, which stands in for the
    processor's side of a network call) that SQLAlchemy had to compile for it."""
    settings_cache.invalidate()
    twilio = TwilioClient(app.test_client())
    with counted(app_engine(app)) as seen:
        reply = twilio.text(MOM, "YES 4821")
    return reply, [s for s in seen.compiled if "sandbox_charge" not in s.lower()]


@pytest.mark.usefixtures("two_accounts")
def test_a_worker_s_first_yes_compiles_nothing_once_the_text_was_rehearsed(
    settings: Settings, engine: Engine
) -> None:
    worker = _fresh_worker(settings)
    assert rehearse(worker) is True
    reply, compiled = _first_yes_compiled(worker)
    assert "added $25.00" in reply
    assert "New balance $28.10" in reply
    assert deposits(engine) == 1
    assert compiled == []


@pytest.mark.usefixtures("two_accounts")
def test_without_the_rehearsal_the_first_yes_compiles_its_statements(settings: Settings) -> None:
    """What the rehearsal spares a worker (30-70 ms of its first YES on the 2-core machine,
    with every text queued behind it waiting)."""
    reply, compiled = _first_yes_compiled(_fresh_worker(settings))
    assert "added $25.00" in reply
    assert len(compiled) >= 9, compiled


def test_the_rehearsal_leaves_nothing_behind(
    app: Flask, engine: Engine, two_accounts: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """No row added or changed (an account, a text, an entry, an audit line, a consent, a
    sandbox charge), no money moved, no log line: it ran in a transaction rolled back,
    charging no card."""
    before = _everything(engine)
    with caplog.at_level(logging.DEBUG):
        assert rehearse(app) is True
    assert _everything(engine) == before
    assert deposits(engine) == 0
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []
    logged = [r for r in caplog.records if r.name.startswith(("textpay", "webhooks"))]
    assert logged == []
    assert not any(number in caplog.text for number in FICTIONAL_NUMBERS)
    assert two_accounts["first"]["phone"] not in caplog.text


def test_a_fictional_number_someone_used_is_left_alone(
    app: Flask, engine: Engine, twilio: TwilioClient
) -> None:
    """A staging database may have texted from a fictional number and opted it out (STOP), or
    enrolled an account on one: the rehearsal takes the next one free, and still runs."""
    assert "unsubscribed" in twilio.text(FICTIONAL_NUMBERS[0], "STOP").lower()
    with unit_of_work(engine) as session:
        assert unused_number(session) == FICTIONAL_NUMBERS[1]
    before = _everything(engine)
    assert rehearse(app) is True
    assert _everything(engine) == before


@pytest.mark.postgres_only
def test_a_table_locked_at_start_delays_the_web_by_seconds_not_for_ever(
    app: Flask, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """gunicorn waits for the rehearsal before it forks its workers: a migration or a
    `VACUUM FULL` holding a table must not keep the web from starting."""
    outcome: list[bool] = []
    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE message IN ACCESS EXCLUSIVE MODE"))
        with caplog.at_level(logging.WARNING, logger="webhooks.rehearsal"):
            rehearsal = threading.Thread(target=lambda: outcome.append(rehearse(app)))
            rehearsal.start()
            rehearsal.join(timeout=60)  # the lock is held for as long as the test lets it
        alive = rehearsal.is_alive()
        blocker.rollback()
    rehearsal.join(timeout=60)
    assert not alive, "the rehearsal waited for the lock"
    assert outcome == [False]
    assert "rehearsal of a text failed" in caplog.text


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
