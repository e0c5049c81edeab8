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

from textpay import facts
from textpay.db import is_sqlite, unit_of_work
from textpay.lowbalance import in_episode_query, low_accounts_query, runway_accounts_query
from textpay.outbox import due_query
from textpay.timeutil import utcnow

# sqlite3's authorizer actions for reading a column and for a SELECT: SQLite asks the authorizer
# while it compiles (plans) a statement, never while it runs one.
_SQLITE_READ, _SQLITE_SELECT = 20, 21


def plan(engine: Engine, statement: Any) -> str:
    compiled = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    return _explain(engine, compiled)


def plan_bound(engine: Engine, statement: Any, values: dict[str, Any]) -> str:
    """`plan` of a statement built with bound parameters, planned with `values` bound (the
    fixed values it writes in, `db.constant`, are written in here too)."""
    compiled = statement.params(values).compile(engine, compile_kwargs={"render_postcompile": True})
    given = compiled.params
    if is_sqlite(engine):
        return _explain(engine, str(compiled), tuple(str(given[n]) for n in compiled.positiontup))
    return _explain(engine, str(compiled), given)


def _explain(engine: Engine, sql: str, parameters: Any = None) -> str:
    """The database's plan of `sql`, one line per step (PostgreSQL asked with sequential scans
    discouraged)."""
    with engine.connect() as connection:
        if is_sqlite(engine):
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
            return " | ".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + sql, parameters).fetchall()
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


def test_a_text_s_facts_query_is_planned_once_per_connection_on_sqlite(engine: Engine) -> None:
    """Every webhook runs `facts.gather_for_text`. SQLite plans a statement again for every
    execution when one of its parameters is compared with a column a partial index names
    (`message.direction`, `ledger_entry.kind`, `payment_attempt.status`): that planning cost
    ten times the query itself. The fixed values are written into the statement instead
    (`db.constant`), so a second text from another number, at another time, is not planned."""
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL plans through its own prepared statements")
    plannings: list[str] = []

    def authorizer(action: int, table: str | None, *_: Any) -> int:
        if action in (_SQLITE_READ, _SQLITE_SELECT):
            plannings.append(f"{action} {table}")
        return 0  # SQLITE_OK

    def gather(phone: str) -> facts.PhoneFacts:
        now = utcnow()
        return facts.gather_for_text(session, phone, now=now, carrier_answers_keywords=False,
                                     with_deposits=True, sid=f"SM{phone[-4:]}",
                                     inbound_since=now)  # fmt: skip

    with unit_of_work(engine) as session:
        driver = session.connection().connection.driver_connection
        # Set before the first text: setting an authorizer makes SQLite plan everything again.
        driver.set_authorizer(authorizer)
        try:
            gather("+12125550147")
            plannings.clear()
            gather("+12125550148")
            planned_again = list(plannings)
            plannings.clear()
            session.connection().exec_driver_sql("SELECT id FROM account WHERE id = 0")
        finally:
            driver.set_authorizer(None)
    assert plannings, "the authorizer saw a new statement being planned: the check itself works"
    assert planned_again == []


@pytest.mark.parametrize("index", ["ix_message_inbound", "ix_ledger_entry_deposit"])
def test_a_text_s_facts_read_recent_history_only(engine: Engine, index: str) -> None:
    """A text's facts count the number's texts of the last minute (the flood limit) and sum the
    account's deposits of the last day (the daily limit) through indexes by time, so a number
    with years of texts, or an account with years of calls, costs a text no more than a new
    one (without them a YES's facts query was three times slower after two years of calls)."""
    now = utcnow()
    query = facts._phone_query(with_deposits=True, with_sid=True, with_count=True)
    values = {"phone": "+12125550147", "sid": "SM" + "0" * 32, "inbound_since": now,
              "deposits_since": now}  # fmt: skip
    found = plan_bound(engine, query, values)
    assert index in found, found
