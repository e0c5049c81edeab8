"""Running the engine's jobs in tests, with the clock wherever freezegun put it."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import dispatch, queued_scans, scan
from textpay.db import unit_of_work
from textpay.models import Message, Prompt
from textpay.sms import RecordingSender


def scan_now(app: Flask, **kwargs: Any) -> scan.ScanResult:
    parts = app.extensions["textpay"]
    return scan.run(parts.engine, parts.gateway, parts.engine_config, **kwargs)


def run_queued_scans(app: Flask, **kwargs: Any) -> queued_scans.QueueCounts:
    """One tick of the clock's job that runs the scans operators queued."""
    parts = app.extensions["textpay"]
    return queued_scans.run(parts.engine, parts.gateway, parts.engine_config, **kwargs)


def deliver(app: Flask, sender: RecordingSender) -> dispatch.DispatchCounts:
    parts = app.extensions["textpay"]
    return dispatch.run(parts.engine, sender, pacer=dispatch.Pacer(0), batch=10_000)


def outbox(engine: Engine, **filters: Any) -> list[Message]:
    with unit_of_work(engine) as session:
        statement = select(Message).where(Message.direction == "outbound")
        for name, value in filters.items():
            statement = statement.where(getattr(Message, name) == value)
        return list(session.exec(statement.order_by(Message.id)))  # type: ignore[arg-type]


def prompts_of(engine: Engine, account_id: int) -> list[Prompt]:
    with unit_of_work(engine) as session:
        return list(
            session.exec(
                select(Prompt).where(Prompt.account_id == account_id).order_by(Prompt.id)  # type: ignore[arg-type]
            )
        )


def count_prompts(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(Prompt)).one())


def waiting_on_a_row_lock(engine: Engine) -> bool:
    """PostgreSQL: whether a session of this database is waiting for a lock (a row's)."""
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        ).scalar()
    return bool(waiting)
