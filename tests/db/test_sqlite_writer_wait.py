"""SQLite writers wait their turn for the write lock (`db._begin_immediate`): a transaction that
finds it taken gets it once it is free, gives up with the database's error after the busy
timeout, and leaves the connection's own busy timeout as it was either way."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from textpay import db
from textpay.db import is_sqlite, unit_of_work
from textpay.models import Account


@pytest.fixture
def other_writer(engine: Engine) -> Iterator[sqlite3.Connection]:
    """Another process's connection to the same file, holding the write lock."""
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL's writers wait on row locks, not a database lock")
    database = engine.url.database
    assert database
    holder = sqlite3.connect(database, timeout=0, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.close()


def _busy_timeout(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("PRAGMA busy_timeout")).scalar_one())


def test_a_writer_gets_the_lock_once_another_writer_commits(
    engine: Engine, other_writer: sqlite3.Connection
) -> None:
    released = threading.Timer(0.2, other_writer.execute, args=("COMMIT",))
    released.start()
    try:
        with unit_of_work(engine) as session:  # waits for the other writer's COMMIT
            assert session.query(Account).count() == 0
    finally:
        released.join()
    assert _busy_timeout(engine) == db.SQLITE_BUSY_TIMEOUT_MS


def test_a_writer_gives_up_after_the_busy_timeout_with_the_database_s_error(
    engine: Engine, other_writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    with pytest.raises(OperationalError, match="locked"), unit_of_work(engine) as session:
        session.query(Account).count()
    other_writer.execute("ROLLBACK")
    with unit_of_work(engine) as session:  # the connection is still good
        assert session.query(Account).count() == 0
