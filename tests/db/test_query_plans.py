"""The scan and the dispatcher read only what they need: their queries use the partial indexes.

SQLite and PostgreSQL only use a partial index when the query's WHERE implies the index's own
predicate; these tests fail if a query drifts from it and falls back to reading every row.
PostgreSQL is asked with sequential scans discouraged, since on a near-empty test table it
would rightly prefer one.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from textpay.db import is_sqlite
from textpay.lowbalance import in_episode_query, low_accounts_query, runway_accounts_query
from textpay.outbox import due_query
from textpay.timeutil import utcnow


def plan(engine: Engine, statement: Any) -> str:
    compiled = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        if is_sqlite(engine):
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled).fetchall()
            return " | ".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + compiled).fetchall()
        return " | ".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda: low_accounts_query(500), "ix_account_low_balance_scan"),
        (lambda: runway_accounts_query(7 * 24), "ix_account_runway_scan"),
        (in_episode_query, "ix_account_in_episode"),
        (lambda: due_query(utcnow(), 50), "ix_message_outbox"),
    ],
    ids=["low-balance scan", "runway scan", "re-arm sweep", "outbox claim"],
)
def test_query_uses_its_partial_index(engine: Engine, query: Any, index: str) -> None:
    found = plan(engine, query())
    assert index in found, found
