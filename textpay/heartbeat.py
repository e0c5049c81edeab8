"""The clock's heartbeat: proof, in the database, that a clock process is alive and running jobs.

A clock beats every `BEAT_SECONDS` by renewing a lease named `clock:heartbeat` in the `lease`
table (the one the scanners take turns with) for `STALE_AFTER`, three beats: the lease says
"a clock is alive until then". Whoever beat last holds it (several clocks on PostgreSQL share
it; any one alive keeps it fresh). No new table: the row's expiry is the beat's time plus
`STALE_AFTER`, so the last beat's time is read back from it, and its holder names the process.

`/healthz` and `/metrics` read it: `never` (no clock ever beat on this database), `ok`, or
`stale` once the lease has lapsed (three beats missed: the clock died, hangs, or cannot reach
the database).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from textpay.models import Lease

LEASE_NAME = "clock:heartbeat"
BEAT_SECONDS = 15
STALE_AFTER = timedelta(seconds=3 * BEAT_SECONDS)


@dataclass(frozen=True)
class ClockHealth:
    state: str  # "ok", "stale" or "never"
    age_seconds: float | None  # since the last beat; None when there never was one
    holder: str = ""

    def as_dict(self) -> dict[str, Any]:
        age = None if self.age_seconds is None else round(self.age_seconds, 1)
        return {"state": self.state, "age_seconds": age}


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def beat(session: Session, *, now: datetime, holder: str | None = None) -> None:
    """Record that this clock is alive now (one upsert)."""
    values = {
        "name": LEASE_NAME,
        "holder": holder or holder_name(),
        "expires_at": now + STALE_AFTER,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Lease).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        )
    )


def last_beat_column() -> Any:
    """The scalar subquery giving the last beat's lease expiry (None: never), to be read in one
    statement with something else."""
    return select(col(Lease.expires_at)).where(col(Lease.name) == LEASE_NAME).scalar_subquery()


def health_of(expires_at: datetime | None, *, now: datetime) -> ClockHealth:
    if expires_at is None:
        return ClockHealth("never", None)
    last = expires_at - STALE_AFTER
    age = max(0.0, (now - last).total_seconds())
    return ClockHealth("ok" if expires_at > now else "stale", age)


def health(session: Session, *, now: datetime) -> ClockHealth:
    expires_at = session.execute(
        select(col(Lease.expires_at)).where(col(Lease.name) == LEASE_NAME)
    ).scalar_one_or_none()
    return health_of(expires_at, now=now)
