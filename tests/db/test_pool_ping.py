"""PostgreSQL connections are pinged after they sat idle, not on every use (`db._ping_after_idle`).

What an operator notices: after a database restart during a quiet spell, the next text is
answered (the pool finds its dead connections before using them), and under load no round trip
is spent on a ping before every transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from textpay import db

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = db.make_engine(database_url)
    yield built
    built.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The pings the engine sends (each a round trip to the server)."""
    sent: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        sent.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def kill_backend(database_url: str, pid: int) -> None:
    """What a database restart does to a pooled connection: its server process ends."""
    other = db.make_engine(database_url)
    with other.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(engine: Engine, pings: list[Any]) -> None:
    first = backend_pid(engine)
    for _ in range(5):
        assert backend_pid(engine) == first  # the same pooled connection, each time
    assert pings == []


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced_before_use(
    engine: Engine, database_url: str, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = backend_pid(engine)
    kill_backend(database_url, dead)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has sat idle long enough
    assert backend_pid(engine) != dead  # answered, on a new connection
    assert len(pings) == 1


def test_without_the_ping_the_dead_connection_fails_its_statement(
    engine: Engine, database_url: str, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case the ping is for, shown without it: a connection used a moment ago is trusted,
    and if its server went away meanwhile the statement fails (as any statement during an
    outage); the pool is renewed, and the next statement is answered."""
    dead = backend_pid(engine)
    kill_backend(database_url, dead)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != dead
    assert pings == []
