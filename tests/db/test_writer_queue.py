"""SQLite's writers queue in the kernel (`textpay/writer_queue.py`): a TextPay writer that finds
another TextPay writer's transaction open starts the moment it ends, without the polling of
`BEGIN IMMEDIATE` (whose sleeps left the lock idle while texts waited), and a turn is never
kept by a transaction that is over: committed, rolled back, closed, collected, or its process
killed. Each wait here is bounded, so that a regression fails instead of hanging the suite."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from textpay import db, writer_queue
from textpay.db import is_sqlite, make_engine, unit_of_work
from textpay.models import Account

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0  # seconds: generous, for a busy machine; a hang is the failure looked for


@pytest.fixture
def sqlite_engine(engine: Engine) -> Engine:
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL's writers wait on row locks, not a database lock")
    return engine


def _in_thread(work: Callable[[], Any]) -> dict[str, Any]:
    """Run `work` in a thread and wait for it (bounded): its result or its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as error:  # the error is the finding
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the writer is still waiting: its turn never came"
    return outcome


def _count_accounts(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return session.exec(select(func.count()).select_from(Account)).one()


@pytest.fixture
def holding(sqlite_engine: Engine) -> Iterator[Callable[[float], threading.Thread]]:
    """Start a TextPay transaction in another thread that stays open `seconds` after it began,
    then commits; returns once that transaction holds the lock."""
    threads: list[threading.Thread] = []

    def hold(seconds: float) -> threading.Thread:
        began = threading.Event()
        number = len(threads)

        def run() -> None:
            with unit_of_work(sqlite_engine) as session:
                session.add(Account(account_number=f"HELD-{number}", phone="+12125550147"))
                session.flush()  # the transaction has begun: it holds the turn and the lock
                began.set()
                time.sleep(seconds)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert began.wait(DEADLINE)
        threads.append(thread)
        return thread

    yield hold
    for thread in threads:
        thread.join(DEADLINE)


def test_a_writer_behind_another_starts_when_it_commits_without_polling(
    sqlite_engine: Engine, holding: Callable[[float], threading.Thread], polls: list[float]
) -> None:
    holder = holding(0.3)
    started = time.monotonic()
    # It saw the held transaction's committed row.
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 1}
    waited = time.monotonic() - started
    holder.join(DEADLINE)
    assert waited >= 0.2  # it did wait for the other writer...
    assert polls == []  # ...in the queue: BEGIN IMMEDIATE found the lock free at once


def test_writers_in_other_processes_queue_too(sqlite_engine: Engine, polls: list[float]) -> None:
    """A clock process (here a child Python) holds a transaction; this process's writer waits
    in the queue, not by polling, and starts once the child commits."""
    with _child_holding(sqlite_engine, seconds=0.3) as child:
        assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 1}
    assert child.returncode == 0
    assert polls == []


@contextmanager
def _child_holding(engine: Engine, *, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another TextPay process (a child Python) in a transaction it holds `seconds`, then
    commits; entered once it holds the turn, left once it has exited."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THEN_COMMIT, str(engine.url), str(seconds)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        yield child
    finally:
        child.wait(DEADLINE)


_HOLD_THEN_COMMIT = """
import sys, time
from textpay.db import make_engine, unit_of_work
from textpay.models import Account
engine = make_engine(sys.argv[1])
with unit_of_work(engine) as session:
    session.add(Account(account_number="CHILD", phone="+12125550148"))
    session.flush()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_process_killed_in_its_transaction_lets_the_next_writer_in(
    sqlite_engine: Engine,
) -> None:
    with _child_holding(sqlite_engine, seconds=3600) as child:
        os.kill(child.pid, signal.SIGKILL)
    # Its row was never committed; its turn and SQLite's lock went with it.
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 0}


def test_a_rolled_back_transaction_ends_its_turn(sqlite_engine: Engine, polls: list[float]) -> None:
    def failing_view() -> None:
        with unit_of_work(sqlite_engine) as session:
            session.add(Account(account_number="GONE", phone="+12125550147"))
            session.flush()
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        failing_view()
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 0}
    assert polls == []


@pytest.mark.parametrize("ending", ["commit", "rollback", "close", "collect"])
def test_a_driver_connection_ends_its_turn_however_its_transaction_ends(
    sqlite_engine: Engine,
    holding: Callable[[float], threading.Thread],
    polls: list[float],
    ending: str,
) -> None:
    """Out of the pool (whose return rolls back and so ends a turn too), the driver's own
    connection: its turn ends with its transaction, and with the connection itself."""
    connection = sqlite_engine.raw_connection()
    raw = connection.dbapi_connection
    assert isinstance(raw, writer_queue.QueuedConnection)
    connection.detach()  # the pool forgets it: nothing else will end its transaction
    raw.take_turn(timeout=DEADLINE)
    raw.execute("BEGIN IMMEDIATE")
    if ending == "collect":
        del connection, raw
        gc.collect()
    else:
        getattr(raw, ending)()
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 0}
    # And this thread, which held that turn, still queues (it does not think it holds one).
    holder = holding(0.2)
    assert _count_accounts(sqlite_engine) == 1
    holder.join(DEADLINE)
    assert polls == []


@pytest.mark.parametrize("thread", ["main", "other"])
def test_behind_a_transaction_longer_than_the_busy_timeout_a_writer_is_refused_in_time(
    sqlite_engine: Engine,
    holding: Callable[[float], threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
    thread: str,
) -> None:
    """A ledger check or a stuck process holds its transaction: a writer behind it is refused
    with SQLite's "locked" error after the busy timeout (the web's 503), as before the queue,
    not kept waiting; the place it gave up is freed, and the next writer gets in."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    holder = holding(1.5)

    def refused() -> float:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            _count_accounts(sqlite_engine)
        return time.monotonic() - started

    # The main thread waits on the alarm; any other thread hands its wait to the queue's thread.
    waited = refused() if thread == "main" else _in_thread(refused)["result"]
    assert 0.25 <= waited < 1.2
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    holder.join(DEADLINE)
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 5_000)
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 1}


def test_an_alarm_someone_else_set_is_left_alone(
    sqlite_engine: Engine, holding: Callable[[float], threading.Thread], polls: list[float]
) -> None:
    rang: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: rang.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.6)
        holder = holding(0.2)
        assert _count_accounts(sqlite_engine) == 1  # waited in the queue's thread instead
        holder.join(DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while not rang and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rang == [signal.SIGALRM]  # its alarm still rang, to its own handler
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert polls == []


def test_where_locks_on_the_queue_fail_writers_go_without_it(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS makes `flock` a POSIX lock, refused (EBADF) on a file open for reading only; other
    network file systems may refuse locks outright. TextPay then works as before the queue."""

    class RefusingFcntl:
        LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            if operation & fcntl.LOCK_EX:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            fcntl.flock(fd, operation)

    monkeypatch.setattr(writer_queue, "fcntl", RefusingFcntl)
    sqlite_engine.dispose()  # connections opened from now on
    with unit_of_work(sqlite_engine) as session:
        session.add(Account(account_number="A1", phone="+12125550147"))
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 1}


def test_a_second_transaction_of_the_same_thread_is_refused_not_stuck(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that opens a second transaction while its first holds the lock would wait for
    itself in the queue: it skips the queue, and SQLite refuses it after the busy timeout, as
    before there was a queue."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)

    def nested() -> None:
        with unit_of_work(sqlite_engine) as outer:
            outer.add(Account(account_number="OUTER", phone="+12125550147"))
            outer.flush()
            with unit_of_work(sqlite_engine) as inner:
                inner.exec(select(func.count()).select_from(Account)).one()

    outcome = _in_thread(nested)
    assert isinstance(outcome.get("error"), OperationalError)
    assert "locked" in str(outcome["error"])
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 0}


def test_without_a_place_for_the_queue_writers_still_take_turns(tmp_path: Path) -> None:
    """The queue's file cannot be made (here a directory is in its way; a read-only directory
    does the same): the database works as before, BEGIN IMMEDIATE's retries alone."""
    database = tmp_path / "textpay.db"
    (tmp_path / "textpay.db-writers").mkdir()
    engine = make_engine(f"sqlite:///{database}")
    try:
        db.create_schema(engine)
        with unit_of_work(engine) as session:
            session.add(Account(account_number="A1", phone="+12125550147"))
        assert _count_accounts(engine) == 1
    finally:
        engine.dispose()


def test_a_database_in_memory_has_no_queue() -> None:
    assert writer_queue.queue_path(None) is None
    assert writer_queue.queue_path(":memory:") is None
    assert writer_queue.queue_path("file:shared?mode=memory&cache=shared") is None
    assert writer_queue.queue_path("/srv/textpay.db") == "/srv/textpay.db-writers"


def test_processes_naming_the_database_differently_share_one_queue(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "textpay.db").symlink_to(tmp_path / "data" / "textpay.db")
    spellings = [
        str(tmp_path / "data" / "textpay.db"),
        str(tmp_path / "data" / ".." / "data" / "textpay.db"),
        str(tmp_path / "textpay.db"),  # through the symlink
    ]
    assert {writer_queue.queue_path(name) for name in spellings} == {
        str((tmp_path / "data" / "textpay.db-writers").resolve())
    }


def test_without_a_thread_to_wait_in_a_writer_still_gets_in_and_the_next_waits_in_turn(
    sqlite_engine: Engine,
    holding: Callable[[float], threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
    polls: list[float],
) -> None:
    """A process at its thread limit cannot start the queue's waiting thread: the writer (of a
    thread other than the main one) waits by BEGIN IMMEDIATE's retries instead of failing, and
    once a thread can start, writers wait in the queue again."""
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        if thread.name == "sqlite-writers-queue":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refused)
    holder = holding(0.2)
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 1}
    holder.join(DEADLINE)
    assert polls  # it polled
    monkeypatch.setattr(threading.Thread, "start", start)
    polls.clear()
    holder = holding(0.2)
    started = time.monotonic()
    assert _in_thread(lambda: _count_accounts(sqlite_engine)) == {"result": 2}
    assert time.monotonic() - started < 0.2 + 1.0  # not a whole busy timeout
    holder.join(DEADLINE)
    assert polls == []


def _queue_files_open(path: str) -> int:
    return sum(
        1 for fd in Path("/proc/self/fd").iterdir()
        if os.path.realpath(fd) == path
    )  # fmt: skip


def test_waits_given_up_behind_a_stuck_writer_hold_no_files(
    sqlite_engine: Engine,
    holding: Callable[[float], threading.Thread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a transaction that outlasts many busy timeouts (a clock job retried every
    second meets it each time), the waits given up do not each keep a file open."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to count open files")
    path = writer_queue.queue_path(sqlite_engine.url.database)
    assert path
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    holder = holding(2.0)
    before = _queue_files_open(path)
    for _ in range(20):
        outcome = _in_thread(lambda: _count_accounts(sqlite_engine))
        assert isinstance(outcome.get("error"), OperationalError)
    assert _queue_files_open(path) <= before + 2  # the pool's connections, and the one waiting
    holder.join(DEADLINE)


def test_a_writer_interrupted_as_its_turn_came_frees_it(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, polls: list[float]
) -> None:
    """An exception raised by a signal handler (a caller's own time limit; Ctrl-C in a shell
    that carries on) landing just as the lock came: the turn is freed, not left with the
    connection back in the pool."""
    real_wait = writer_queue.QueuedConnection._wait_for_turn

    class TimeLimit(Exception):
        """What a caller's own alarm handler raises."""

    def interrupted(self: writer_queue.QueuedConnection, queue: Any, timeout: float) -> bool:
        assert real_wait(self, queue, timeout)
        raise TimeLimit

    monkeypatch.setattr(writer_queue.QueuedConnection, "_wait_for_turn", interrupted)
    with pytest.raises(TimeLimit):
        _count_accounts(sqlite_engine)
    monkeypatch.setattr(writer_queue.QueuedConnection, "_wait_for_turn", real_wait)
    # Another process's writer (its own engine: this one's pool would hand back the very
    # connection that holds the lock).
    other = make_engine(str(sqlite_engine.url))
    try:
        started = time.monotonic()
        assert _in_thread(lambda: _count_accounts(other)) == {"result": 0}
        assert time.monotonic() - started < 1.0
    finally:
        other.dispose()
    assert polls == []


def test_a_busy_timeout_of_zero_gives_up_at_once_in_the_main_thread(tmp_path: Path) -> None:
    """A timer of 0 is no timer at all: the wait must not become endless."""
    path = str(tmp_path / "queue")
    other = open(path, "wb")  # noqa: SIM115 (closed below)
    mine = open(path, "rb")  # noqa: SIM115 (closed below)
    fcntl.flock(other.fileno(), fcntl.LOCK_EX)
    release = threading.Timer(5, fcntl.flock, args=(other.fileno(), fcntl.LOCK_UN))
    release.start()
    try:
        started = time.monotonic()
        assert writer_queue._wait_on_alarm(mine, 0) is False
        assert time.monotonic() - started < 1.0
    finally:
        release.cancel()
        other.close()
        mine.close()


def _in_database_file(engine: Engine) -> int:
    """Accounts in the database file itself, the write-ahead log left unread (`immutable`):
    what a checkpoint has copied there."""
    import sqlite3  # noqa: PLC0415

    path = engine.url.database
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(reader.execute("SELECT count(*) FROM account").fetchone()[0])
    finally:
        reader.close()


def _add_account(engine: Engine, number: str) -> None:
    with unit_of_work(engine) as session:
        session.add(Account(account_number=number, phone="+12125550147"))


def test_the_log_is_checkpointed_after_the_turn_is_handed_on_not_in_it(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint (two fsyncs, and the whole of a disk's stall) must not hold every other
    writer back: the next writer can take the turn while it runs, and it does copy the log."""
    monkeypatch.setattr(writer_queue, "CHECKPOINT_EVERY_COMMITS", 3)
    monkeypatch.setattr(writer_queue, "_COMMITS", writer_queue._CommitCount())
    queue_file = writer_queue.queue_path(sqlite_engine.url.database)
    assert queue_file is not None
    turn_free_during: list[bool] = []
    real = writer_queue.QueuedConnection.checkpoint

    def watched(connection: writer_queue.QueuedConnection) -> None:
        with open(queue_file, "rb") as other_writer:
            try:
                fcntl.flock(other_writer.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                turn_free_during.append(True)
                fcntl.flock(other_writer.fileno(), fcntl.LOCK_UN)
            except BlockingIOError:
                turn_free_during.append(False)
        real(connection)

    monkeypatch.setattr(writer_queue.QueuedConnection, "checkpoint", watched)
    raw = sqlite_engine.raw_connection()  # outside any transaction: the log copied, emptied
    raw.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    before = _in_database_file(sqlite_engine)
    for number in range(3):
        _add_account(sqlite_engine, f"CKPT-{number}")
    assert turn_free_during == [True]
    assert _in_database_file(sqlite_engine) == before + 3


def test_sqlite_s_own_checkpoint_is_only_the_backstop(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    assert pages == writer_queue.BACKSTOP_CHECKPOINT_PAGES


def test_the_log_stays_short_without_sqlite_s_own_checkpoint(sqlite_engine: Engine) -> None:
    """Three hundred commits of about 7 pages each write some 9 MB of log, under SQLite's
    backstop (16 MB), so SQLite would copy none of it: TextPay's writers do, every hundred
    commits, and the log's file peaks near a hundred commits' worth."""
    for number in range(300):
        _add_account(sqlite_engine, f"LOG-{number}")
    assert _in_database_file(sqlite_engine) >= 200
    wal = Path(f"{sqlite_engine.url.database}-wal")
    assert wal.stat().st_size < 6_000_000


def test_a_checkpoint_waits_for_no_writer(
    sqlite_engine: Engine, holding: Callable[[float], threading.Thread]
) -> None:
    """Outside the turn, a checkpoint that waited for writers (FULL, RESTART) would hold up
    the text that made it for as long as the next writer's transaction: it must not wait."""
    holder = holding(3.0)
    connection = sqlite_engine.raw_connection()
    raw = connection.dbapi_connection
    assert isinstance(raw, writer_queue.QueuedConnection)
    started = time.monotonic()
    raw.checkpoint()
    waited = time.monotonic() - started
    connection.close()
    holder.join(DEADLINE)
    assert waited < 1.5


def test_a_commit_stands_when_its_checkpoint_fails(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_queue, "CHECKPOINT_EVERY_COMMITS", 1)
    monkeypatch.setattr(writer_queue, "_COMMITS", writer_queue._CommitCount())
    real_execute = sqlite3.Connection.execute

    def failing_checkpoint(self: sqlite3.Connection, sql: str, *args: Any) -> Any:
        if "wal_checkpoint" in sql:
            raise sqlite3.OperationalError("disk I/O error")
        return real_execute(self, sql, *args)

    monkeypatch.setattr(writer_queue.QueuedConnection, "execute", failing_checkpoint)
    with caplog.at_level("WARNING", logger="textpay.writer_queue"):
        _add_account(sqlite_engine, "STANDS-1")  # no error: it was committed
        _add_account(sqlite_engine, "STANDS-2")
    assert _count_accounts(sqlite_engine) == 2
    warnings = [r for r in caplog.records if "could not be checkpointed" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once a text
    assert "disk I/O error" in warnings[0].getMessage()
