"""TextPay's psycopg cursor (`textpay.pg_cursor`): a result's columns described on demand, the
same columns psycopg would describe, and never the columns of another result."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from textpay import pg_cursor


@pytest.fixture
def pg_engine(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("the cursor is psycopg's")
    return engine


def test_the_engine_s_connections_describe_results_with_textpay_s_cursor(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        assert isinstance(cursor, pg_cursor.Cursor)
        cursor.execute("SELECT 1 AS one, 'two'::text AS two")
        described = cursor.description
        assert described is not None
        assert len(described) == 2
        assert [(c.name, c.type_code) for c in described] == [("one", 23), ("two", 25)]
        assert described[1].name == "two"
        assert [c.name for c in described[:1]] == ["one"]


def test_a_statement_without_rows_has_no_description(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("CREATE TEMPORARY TABLE scratch (id int)")
        assert cursor.description is None
        cursor.execute("INSERT INTO scratch VALUES (1)")
        assert cursor.description is None
        cursor.execute("INSERT INTO scratch VALUES (2) RETURNING id")
        assert [c.name for c in cursor.description or []] == ["id"]
        cursor.execute("SELECT")  # no columns, yet a result of rows, as psycopg describes it
        assert cursor.description is not None
        assert len(cursor.description) == 0


def test_a_description_read_after_its_cursor_moved_on_refuses(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SELECT 1 AS first")
        first = cursor.description
        assert first is not None
        cursor.execute("SELECT 2 AS second")
        with pytest.raises(RuntimeError, match="moved on"):
            list(first)
        assert "moved on" in repr(first)  # a log line or a debugger is not refused
        # Read while current, it stays what it was.
        second = cursor.description
        assert second is not None
        assert [c.name for c in second] == ["second"]
        cursor.execute("SELECT 3 AS third")
        assert [c.name for c in second] == ["second"]


def test_sqlalchemy_results_name_their_columns(pg_engine: Engine) -> None:
    """Text SQL, whose columns SQLAlchemy reads from the description every time."""
    with pg_engine.connect() as connection:
        row = connection.execute(text("SELECT 7 AS seven, 'x' AS ex")).one()
        assert row._mapping == {"seven": 7, "ex": "x"}
