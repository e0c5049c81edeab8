"""SQLite's writers waiting for the write lock in a queue the kernel keeps, not by polling.

Every TextPay transaction on SQLite takes the database's write lock at its start (`BEGIN
IMMEDIATE`, textpay/db.py). SQLite has no way to wait for that lock except trying again after a
sleep, so a writer that finds it taken wakes up some time after it was freed, and meanwhile
the lock sits idle while texts queue behind it. With two web workers that idle gap, and the
CPU spent trying, were the difference between the workers sharing the lock well and not.

So each connection to a database file also holds an exclusive `flock` on a file beside it
(`<database>-writers`) for exactly the span of its transaction: taken before `BEGIN IMMEDIATE`,
released after `COMMIT` or `ROLLBACK` (or when the connection is closed or collected). A writer
that finds it held sleeps in the kernel and is woken the moment the one ahead finishes: no
polling, no gap. Every process that opens the database through `db.make_engine` (web workers,
the clock, the CLI) queues there; a writer that does not (the `sqlite3` shell) is still waited
for by `BEGIN IMMEDIATE`'s own retries, which remain the authority: the queue only orders
TextPay's writers before they ask SQLite.

The price: a place in the queue has no time limit. A TextPay transaction that never ends keeps
the writers behind it waiting, where SQLite's lock alone failed them after the busy timeout
(`db.SQLITE_BUSY_TIMEOUT_MS`): a web worker then waits until gunicorn's timeout replaces it
(12 s, under Twilio's 15), as for any stuck request. TextPay holds no transaction across a call
to Twilio or to the card processor (the card charge runs between two transactions, the outbox
sends between its claim and its record), so a transaction lasts as long as its statements; and
a turn held by a process that dies is freed by the kernel with it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from typing import IO, Any

_SUFFIX = "-writers"
# Per thread, the queues it holds a turn in. A second connection of the same thread that began a
# transaction while the first holds the lock would wait for itself: it skips the queue and is
# refused by BEGIN IMMEDIATE after the busy timeout, as it was before the queue.
_HELD = threading.local()


def _held() -> set[str]:
    held: set[str] | None = getattr(_HELD, "paths", None)
    if held is None:
        held = _HELD.paths = set()
    return held


class QueuedConnection(sqlite3.Connection):
    """A SQLite connection that takes its turn in its database's writer queue for the span of
    each transaction (`take_turn` before `BEGIN`; released by `commit`, `rollback`, `close`).
    `queue_path` is set on a subclass made per database (`connection_class`)."""

    queue_path: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn_held_in: set[str] | None = None  # the taking thread's set, while a turn is held
        self._queue: IO[bytes] | None
        try:
            # Read-only is enough for a lock: a process of another user that may read the file
            # queues too. A file object, not a bare descriptor: a connection collected without
            # `close` still closes it, and so frees its turn.
            self._queue = os.fdopen(
                os.open(self.queue_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644), "rb"
            )
        except OSError:
            self._queue = None  # a read-only directory: BEGIN IMMEDIATE's retries alone

    def take_turn(self) -> None:
        """Wait until no other TextPay writer of this database is in a transaction, and hold
        that until this connection's transaction ends."""
        held = _held()
        if self._turn_held_in is not None or self._queue is None or self.queue_path in held:
            return
        fcntl.flock(self._queue.fileno(), fcntl.LOCK_EX)
        held.add(self.queue_path)
        self._turn_held_in = held

    def end_turn(self) -> None:
        """Let the next writer in (done by `commit`, `rollback` and `close`; call it when the
        transaction the turn was taken for never began)."""
        if self._turn_held_in is not None:
            self._turn_held_in.discard(self.queue_path)
            self._turn_held_in = None
            if self._queue is not None:
                fcntl.flock(self._queue.fileno(), fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()
            if self._queue is not None:
                self._queue.close()
                self._queue = None


def queue_path(database: str | None) -> str | None:
    """The queue's file for a SQLite database path; None for a database in memory (one
    connection's alone: nobody to queue with) or named by a URI (it may be in memory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    # The real path: processes that name the database by another path (relative, a symlink)
    # still queue together.
    return os.path.realpath(database) + _SUFFIX


def connection_class(path: str) -> type[QueuedConnection]:
    """The connection class for the database whose queue is `path` (sqlite3's `factory`)."""
    return type("QueuedConnection", (QueuedConnection,), {"queue_path": path})
