"""Operator settings as the request paths read them: held per process for a few seconds.

The global defaults and every facility's overrides are read by nearly every text (its limits,
its sending window, the daily cap its words quote) and change a few times a year, so each
process keeps one copy of them, loaded with two queries and kept for `TTL_SECONDS`. A change
made through `textpay.operator_settings` clears the copy at once in the process that made it;
other processes (the other web workers, the clock) see it within `TTL_SECONDS`.

The copies are detached from any session: read them, never change them. Code that changes
settings loads the rows itself (`policy.get_global_settings`, `operator_settings`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from textpay.models import Facility, GlobalSettings

# How stale another process's view of a settings change may be, in seconds (README: Deploying).
TTL_SECONDS = 5.0

_Row = TypeVar("_Row", GlobalSettings, Facility)


@dataclass(frozen=True)
class Snapshot:
    global_settings: GlobalSettings
    facilities: Mapping[int, Facility]
    loaded_at: float
    generation: int

    def facility(self, facility_id: int | None) -> Facility | None:
        return self.facilities.get(facility_id) if facility_id is not None else None


class _Copies:
    """This process's copies, one per database engine, and how many times they were cleared."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_engine: WeakKeyDictionary[Engine, Snapshot] = WeakKeyDictionary()
        self.generation = 0


_copies = _Copies()


def current(session: Session, *, facility_id: int | None = None) -> Snapshot:
    """The settings of the database `session` talks to, loaded now if this process holds no
    copy younger than `TTL_SECONDS` (or a change here cleared it), or the copy does not know
    `facility_id` (a facility created since)."""
    engine = session.get_bind().engine
    found = _copies.by_engine.get(engine)
    now = time.monotonic()
    if (
        found is not None
        and found.generation == _copies.generation
        and now - found.loaded_at < TTL_SECONDS
        and (facility_id is None or facility_id in found.facilities)
    ):
        return found
    generation = _copies.generation
    fresh = Snapshot(_load_global(session), _load_facilities(session), now, generation)
    with _copies.lock:
        _copies.by_engine[engine] = fresh
    return fresh


def changed(session: Session) -> None:
    """Settings were changed in `session`: forget the copies now (later reads in this
    transaction see the change), and again when the transaction ends, so that a copy read
    while it was uncommitted, or rolled back, is not kept. "Ends": committed, rolled back, or
    closed without either (a closed session fires no rollback event); a savepoint's end too.
    The listener stays with the session (registered once however often this is called): at
    worst a later transaction of the same session reloads the copy once more."""
    invalidate()
    event.listen(session, "after_transaction_end", _forget_on_end)


def _forget_on_end(session: Session, transaction: object) -> None:
    invalidate()


def invalidate() -> None:
    """Forget every copy: the next read in this process loads the settings again."""
    with _copies.lock:
        _copies.generation += 1
        _copies.by_engine.clear()


def global_row(session: Session) -> GlobalSettings:
    """The global settings row itself (in `session`, to change), created with the defaults the
    first time it is needed."""
    row = session.get(GlobalSettings, 1)
    if row is None:
        row = GlobalSettings(id=1)
        session.add(row)
        session.flush()
    return row


def _load_global(session: Session) -> GlobalSettings:
    return _detached(GlobalSettings, global_row(session))


def _load_facilities(session: Session) -> dict[int, Facility]:
    return {
        facility.id: _detached(Facility, facility)
        for facility in session.exec(select(Facility))
        if facility.id is not None
    }


def _detached(model: type[_Row], row: _Row) -> _Row:
    """A copy that belongs to no session (the session's own object stays as it was)."""
    values = {column.key: getattr(row, column.key) for column in model.__table__.columns}  # type: ignore[attr-defined]
    if "state_quiet_hours" in values:
        values["state_quiet_hours"] = {k: list(v) for k, v in values["state_quiet_hours"].items()}
    return model(**values)
