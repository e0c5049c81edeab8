"""SQLite writers wait their turn for the write lock (`db._begin_immediate`): a transaction that
finds it taken gets it once it is free, gives up with the database's error after the busy
timeout, and leaves the connection's own busy timeout as it was either way."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from textpay import db, ledger
from textpay.db import is_sqlite, unit_of_work
from textpay.models import Account, LedgerKind


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


def _post_credits(url: str, writer: int, count: int) -> list[str]:
    """`count` one-cent credits to account 1, each in its own transaction, from a process of
    its own: what went wrong, if anything."""
    engine = db.make_engine(url)
    errors: list[str] = []
    for n in range(count):
        try:
            with unit_of_work(engine) as session:
                ledger.post(session, account_id=1, kind=LedgerKind.CREDIT, amount_cents=1,
                            reference=f"credit:{writer}:{n}")  # fmt: skip
        except Exception as error:  # every failure is the finding
            errors.append(repr(error))
    engine.dispose()
    return errors


def test_writers_in_several_processes_all_get_the_lock_and_lose_nothing(engine: Engine) -> None:
    """Three web workers' worth of writers post at once while another process (the clock's
    scan) takes the write lock for 300 ms at a time: every transaction waits its turn, none
    answers "database is locked", and the balance counts every credit."""
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL's writers wait on row locks, not a database lock")
    database = engine.url.database
    assert database
    with unit_of_work(engine) as session:
        session.add(Account(account_number="A1", phone="+12125550147"))
    writers, each = 3, 60
    holder = sqlite3.connect(database, timeout=10, isolation_level=None, check_same_thread=False)
    with ProcessPoolExecutor(writers, mp_context=multiprocessing.get_context("spawn")) as pool:
        posting = [pool.submit(_post_credits, str(engine.url), w, each) for w in range(writers)]
        for _ in range(3):
            holder.execute("BEGIN IMMEDIATE")
            time.sleep(0.3)
            holder.execute("COMMIT")
            time.sleep(0.05)
        errors = [error for future in posting for error in future.result()]
    holder.close()
    assert errors == []
    with unit_of_work(engine) as session:
        account = session.get(Account, 1)
        assert account is not None
        assert account.balance_cents == writers * each
        assert ledger.verify(session) == []


def test_a_writer_kept_waiting_by_a_long_transaction_tries_less_and_less_often(
    engine: Engine, other_writer: sqlite3.Connection, polls: list[float]
) -> None:
    """While the clock's scan holds the write lock for half a second, a waiting web worker
    tries again every millisecond at first (a text's transaction is over in one), then less
    often: trying every millisecond cost each waiter 2% of a core, which the scan holding the
    lock needs."""
    sleeps = polls
    released = threading.Timer(0.5, other_writer.execute, args=("COMMIT",))
    released.start()
    try:
        with unit_of_work(engine) as session:
            assert session.query(Account).count() == 0
    finally:
        released.join()
    assert sleeps[:4] == [0.0001, 0.0002, 0.0004, 0.0008]  # a short wait is still noticed at once
    assert len(sleeps) < 100, f"{len(sleeps)} tries in half a second"
    assert max(sleeps) <= 0.05  # and the lock, once free, is taken soon
