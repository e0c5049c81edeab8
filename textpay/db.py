"""Database engine construction and the unit of work.

Owns how TextPay talks to SQLite (the embedded default) and PostgreSQL (production): connection
options, SQLite pragmas and locking, and `unit_of_work`, the one way the edges open a transaction.
Domain functions receive the session it yields and never commit it themselves.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    any_,
    bindparam,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, InvalidatePoolError, OperationalError
from sqlmodel import Session, SQLModel, col, create_engine

from textpay import (
    models,  # noqa: F401  (registers the tables on SQLModel.metadata)
    pg_cursor,
    writer_queue,
)
from textpay.policy import get_global_settings

# A pooled PostgreSQL connection idle this long is pinged before it is used (`_ping_after_idle`).
PING_AFTER_IDLE_SECONDS = 1.0
# How long a SQLite writer waits for another writer before giving up. Long enough to ride out a
# burst of webhooks, short enough to answer Twilio well inside its 15 s timeout.
SQLITE_BUSY_TIMEOUT_MS = 5_000
# How often a SQLite transaction waiting for the write lock tries again: first after 0.1 ms,
# doubling to 1 ms (`_begin_immediate`); once it has waited longer than a text's transaction
# takes, after a tenth of the time it has waited, up to 25 ms.
_FIRST_RETRY_SECONDS = 0.0001
_LONGEST_RETRY_SECONDS = 0.001
_LONG_WAIT_RETRY_SECONDS = 0.025


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def on_postgresql(session: Session) -> bool:
    """Whether `session` talks to PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def id_in(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids`: on PostgreSQL one array parameter (`= ANY`), whose statement psycopg
    converts once instead of parsing 500 placeholders for every batch."""
    if on_postgresql(session):
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))  # type: ignore[no-any-return]
    return col(column).in_(list(ids))


def text_in(session: Session, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column IN values` for strings, as `id_in`."""
    if on_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))  # type: ignore[no-any-return]
    return col(column).in_(list(values))


def constant(value: str | int) -> Any:
    """`value` written into the statement itself instead of sent as a parameter, for the fixed
    values hot statements compare a column with (`direction = 'inbound'`, `status = 'pending'`).

    Why: when a bound parameter is compared with a column that a partial index's WHERE names
    (`message.direction`, `prompt.status`, `payment_attempt.status`, `ledger_entry.kind`),
    SQLite cannot tell from the statement whether the partial index applies, so it plans the
    statement again for every execution with the values bound. A text's facts query spent
    0.19 ms being planned and 0.04 ms running; with the values written in, SQLite plans it once
    per connection and reuses it. The statement's text is the same for every execution, so
    SQLAlchemy's and the driver's statement caches still hold it."""
    return literal(value, literal_execute=True)


def commit_without_disk_wait() -> ColumnElement[Any]:
    """A column that, returned by a PostgreSQL statement, lets the statement's transaction
    commit without waiting for the disk: `SET LOCAL synchronous_commit = off` in the form of a
    function (`set_config(..., is_local => true)`), so that it rides in a statement the
    transaction runs anyway instead of costing one more. Only for a transaction whose loss
    would cost nothing that matters (`messages.record_inbound`'s `wait_for_disk`).

    What it gives up: if the database server itself crashes (not TextPay), or its host loses
    power, within a moment of the commit (up to three times `wal_writer_delay`, 0.6 s by
    default), the transaction is lost as if it never ran; the database stays consistent, and a
    later commit that waits flushes every earlier one with it. Under synchronous replication
    such a commit does not wait for the standby either, so a failover may lose it too.
    `is_local`: the setting ends with the transaction (committed or rolled back), so the pooled
    connection's next one waits again. SQLite's write-ahead log with `synchronous=NORMAL`
    (`_configure_sqlite`) already commits every transaction this way, so there is nothing to
    ask of it.

    What it gains: on the 2-core machine a COMMIT waited about 0.2 ms for the disk (more under
    load) with the worker idle, and seven texts in ten are BALs; PostgreSQL's webhook
    throughput rose by about a tenth (docs/performance.md, sixth round)."""
    return func.set_config("synchronous_commit", "off", True)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine for `url` with the options each backend needs.

    `hide_parameters`: a database error's text (and `echo`) never carries the statement's
    parameters, which hold subscribers' phone numbers and the words of their texts; an error
    logged with its traceback would otherwise write them to the log.
    """
    if url.startswith("sqlite"):
        connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        queue = writer_queue.queue_path(make_url(url).database)
        if queue is not None:
            connect_args["factory"] = writer_queue.connection_class(queue)
        engine = create_engine(url, echo=echo, hide_parameters=True, connect_args=connect_args)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args=_psycopg_connect_args(url),
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
    )
    _ping_after_idle(engine)
    return engine


def _psycopg_connect_args(url: str) -> dict[str, Any]:
    """psycopg's connections get TextPay's cursor (`pg_cursor`: columns described on demand);
    another driver gets nothing of ours."""
    if make_url(url).get_driver_name() == "psycopg":
        return {"cursor_factory": pg_cursor.Cursor}
    return {}


def _ping_after_idle(engine: Engine) -> None:
    """Survive a database restart without restarting TextPay: a pooled connection that sat
    idle for `PING_AFTER_IDLE_SECONDS` is pinged before it is used, and a dead one makes the
    pool replace it and every connection pooled before it (as SQLAlchemy's `pool_pre_ping`).

    Not `pool_pre_ping` itself, which pings on every checkout: a round trip and 0.1 ms of a
    worker's CPU each time, and a YES checks out four connections (its three phases and the
    sandbox's charge). A connection used a moment ago is not pinged: if the server went away
    in that moment, the statement that finds out fails like any statement during an outage,
    and the pool is renewed all the same."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")  # None: a new connection, just opened
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise InvalidatePoolError(str(error)) from error
            raise


def _configure_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, and BEGIN IMMEDIATE so writers queue instead of deadlocking.

    With pysqlite's default deferred transactions, two connections that both read and then write
    each hold a shared lock and wait for the other: one of them fails with "database is locked"
    regardless of the busy timeout. Taking the write lock at BEGIN makes writers wait their turn
    (SQLite's answer to `SELECT ... FOR UPDATE`), which is the behaviour the ledger relies on.
    TextPay's own writers take their turn in the writers' queue first (`writer_queue`), so the
    BEGIN finds the lock free unless a writer outside TextPay holds it.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of pysqlite's own handling.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if isinstance(dbapi_connection, writer_queue.QueuedConnection):
            # It checkpoints after its turn (`writer_queue`); SQLite's own is the backstop.
            pages = writer_queue.BACKSTOP_CHECKPOINT_PAGES
            cursor.execute(f"PRAGMA wal_autocheckpoint={pages}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        dbapi_connection = connection.connection.dbapi_connection
        if not isinstance(dbapi_connection, writer_queue.QueuedConnection):
            _begin_immediate(dbapi_connection)
            return
        # The queue and BEGIN IMMEDIATE share one busy timeout: a turn not given within it
        # leaves BEGIN what is left (nothing), and the writer is refused as it was before.
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        deadline = time.monotonic() + timeout
        dbapi_connection.take_turn(timeout=timeout)  # held until commit
        try:
            _begin_immediate(dbapi_connection, deadline=deadline)
        except BaseException:
            dbapi_connection.end_turn()
            raise


def _begin_immediate(dbapi_connection: sqlite3.Connection, deadline: float | None = None) -> None:
    """`BEGIN IMMEDIATE`, waiting for the write lock by trying again every 0.1 to 1 ms until
    `deadline` (by default `SQLITE_BUSY_TIMEOUT_MS` from now). A TextPay writer has queued for
    its turn (`writer_queue`) before it gets here, so this wait is for a writer outside TextPay
    (the `sqlite3` shell), for a database without a queue, or what is left of the timeout
    after a turn that did not come.

    Why not SQLite's own busy timeout: its handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50,
    50, then 100 ms between tries, so a writer that finds the lock taken by a transaction of 1
    ms (a text's) often sleeps 10 to 100 ms after it was freed: with two web workers that was
    the slowest texts' whole wait. The busy timeout is turned off only around the BEGIN (it
    still covers the rare busy read and the connection's setup), and the BEGIN goes straight to
    the driver: it is the first statement of every transaction.

    A wait longer than a text's transaction (the clock's scan holds the lock) tries less often,
    after a tenth of the time waited so far (up to 25 ms): trying every millisecond cost each
    waiter 2% of a core (sixteen gthread workers: a third of one), taken from the very
    transaction they waited for. The lock is still taken within a tenth of the wait."""
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    try:
        started = time.monotonic()
        if deadline is None:
            deadline = started + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = _FIRST_RETRY_SECONDS
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                now = time.monotonic()
                if "locked" not in str(error) or now + pause > deadline:
                    # As SQLAlchemy raises a database's errors, for the web's 503 answer.
                    raise OperationalError("BEGIN IMMEDIATE", None, error) from error
            time.sleep(pause)
            patience = min(max((now - started) / 10, _LONGEST_RETRY_SECONDS),
                           _LONG_WAIT_RETRY_SECONDS)  # fmt: skip
            pause = min(pause * 2, patience)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """Open a session in a transaction: commit when the block succeeds, roll back when it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def core(session: Session) -> Connection:
    """The session's connection in its transaction, for a Core statement that reads or writes
    rows without ORM objects (an `UPDATE` by id, an `INSERT ... RETURNING id`). The session's
    own `execute` runs every statement through the ORM's per-statement machinery first, which
    cost more than the statement (0.20 against 0.07 ms for the YES's `UPDATE` on SQLite). What
    the session has pending is flushed first, as its autoflush would."""
    session.flush()
    return session.connection()


def columns_of(model: type[SQLModel], row: type[tuple[Any, ...]]) -> list[Any]:
    """The columns of `model`'s table that the named tuple `row` is made of, in its order: for
    statements whose rows are read as plain tuples rather than ORM objects."""
    table = model.__table__  # type: ignore[attr-defined]
    return [table.c[name] for name in row._fields]  # type: ignore[attr-defined]


def insert_returning_id(session: Session, row: SQLModel) -> int:
    """Insert `row` with one prepared Core `INSERT ... RETURNING id` and give it its id. The row
    stays out of the session (it is a record of what was written, not a thing to change): the
    hot path's inserts skip the ORM's flush, which cost more than the insert itself."""
    table = row.__table__  # type: ignore[attr-defined]
    values = {
        column.key: getattr(row, column.key) for column in table.columns if column.key != "id"
    }
    new_id = int(core(session).execute(_insert_returning_id(table), values).scalar_one())
    row.id = new_id
    return new_id


def returning_objects(model: type[SQLModel], statement: Any) -> Any:
    """`statement`, an `UPDATE` of `model`'s table, made to return the rows it changed as `model`
    objects that the session then holds as they now are (an object it held before is
    refreshed). Build it once and execute it with `session.execute`.

    Not `update(Model)...returning(Model)`: SQLAlchemy runs such ORM-enabled DML on a fresh copy
    of the statement every time, so it builds the statement's cache key anew on every execution
    (a long walk for the deposit's `UPDATE`, whose episode re-arm is six `CASE`s): 0.45 ms
    against 0.20 ms read this way, for the same SQL."""
    table = model.__table__  # type: ignore[attr-defined]
    return (
        select(model)
        .from_statement(statement.returning(*table.columns))
        .execution_options(populate_existing=True)
    )


@lru_cache(maxsize=32)
def _insert_returning_id(table: Any) -> Any:
    return insert(table).returning(table.c.id)


def is_unique_violation(error: Exception) -> bool:
    """True when `error` is a unique-constraint race another transaction won.

    Callers retry their unit of work once: the second attempt finds the winner's row and answers
    as a replay.
    """
    if not isinstance(error, IntegrityError):
        return False
    text = str(error.orig).lower()
    return "unique" in text or "duplicate key" in text


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaError(Exception):
    """The database holds a schema the migrations did not make."""


def create_schema(engine: Engine) -> None:
    """Upgrade the database to the newest migration and make sure the global settings row
    exists. Safe to run again (it is what `textpay init-db` and the `release` phase do)."""
    # Alembic (with Mako and Pygments behind it) is imported here, not with this module: the web
    # app and the clock use the engine and never migrate.
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415

    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        if tables & set(SQLModel.metadata.tables) and "alembic_version" not in tables:
            raise SchemaError(
                "this database has TextPay tables but no migration history (made by an early "
                "development build); recreate it, e.g. delete textpay.db"
            )
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with unit_of_work(engine) as session:
        get_global_settings(session)
