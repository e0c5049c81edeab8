"""Job: offers nobody answered in time become `expired`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from textpay import prompts
from textpay.db import unit_of_work
from textpay.timeutil import utcnow


def run(db: Engine, *, now: datetime | None = None) -> int:
    with unit_of_work(db) as session:
        return prompts.expire_due(session, now=now or utcnow())
