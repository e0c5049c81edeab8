"""A count made inside a transaction (a deposit) reaches the metrics only if the transaction
commits: a rolled-back deposit was never money (textpay/metrics.py, `on_commit`)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from textpay import metrics
from textpay.db import unit_of_work


def test_counts_apply_on_commit_and_are_forgotten_on_rollback(engine: Engine) -> None:
    counted: list[str] = []
    with unit_of_work(engine) as session:
        session.execute(text("SELECT 1"))
        metrics.on_commit(session, lambda: counted.append("committed"))
        assert counted == []  # not before the commit
    assert counted == ["committed"]

    def deposit_then_fail() -> None:
        with unit_of_work(engine) as session:
            session.execute(text("SELECT 1"))
            metrics.on_commit(session, lambda: counted.append("rolled back"))
            raise RuntimeError("the transaction fails after the count")

    with pytest.raises(RuntimeError):
        deposit_then_fail()
    with unit_of_work(engine) as session:  # and nothing left over for the next transaction
        session.execute(text("SELECT 1"))
    assert counted == ["committed"]
