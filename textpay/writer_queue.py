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

A turn ends when the transaction does, and no later. SQLite copies the write-ahead log into
the database (a checkpoint, with two `fsync`s) inside the `COMMIT` that finds the log past
`wal_autocheckpoint` pages, and would so hold every other writer's turn for as long as the
disk takes: 4-5 ms about every hundred texts on the 2-core machine measured, and the whole of
a stall when the disk stalls (there, now and then, 100 ms to a second). So a process's
connections of the queue checkpoint every `CHECKPOINT_EVERY_COMMITS` of their commits
(`PASSIVE`: it never waits for a reader or a writer), right after the turn is handed on, while
the next writer already writes. SQLite's own checkpoint stays as a backstop, at
`BACKSTOP_CHECKPOINT_PAGES`, in a commit and so in a turn. The log's file starts over from its
beginning only once a checkpoint has copied all of it and no writer has added to it since:
where writers never pause (two web workers at full load) that is the backstop's checkpoint, so
there the file grows to about 16 MB, and a quarter as many checkpoints as before hold a turn.

A place in the queue is given up after the busy timeout (`db.SQLITE_BUSY_TIMEOUT_MS`), which
the queue and `BEGIN IMMEDIATE` share: behind a transaction that takes longer (a ledger check,
a migration, a stuck process), a writer is refused with the database's "locked" error after
5 s, as it was before the queue (the web answers 503), and the turn it would have had is freed
as soon as it comes. A blocking `flock` can be broken only by a signal, and only the main thread
gets signals: there (a gunicorn sync worker's requests) an alarm breaks the wait
(`_wait_on_alarm`); any other thread hands its wait to a thread of the queue's (`_Wait`). A
turn held by a process that dies is freed by the kernel with it. Where locks on the file fail
(some network file systems), or it cannot be made, writers go without the queue.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import threading
import time
from queue import SimpleQueue
from typing import IO, Any

log = logging.getLogger(__name__)

_SUFFIX = "-writers"
# About as often as SQLite's default of 1000 pages would, at the 7-10 pages a text writes.
CHECKPOINT_EVERY_COMMITS = 100
BACKSTOP_CHECKPOINT_PAGES = 4000  # 16 MB of 4 KB pages: four times SQLite's default
# Per thread, the queues it holds a turn in. A second connection of the same thread that began a
# transaction while the first holds the lock would wait for itself: it skips the queue and is
# refused by BEGIN IMMEDIATE after the busy timeout, as it was before the queue.
_HELD = threading.local()


def _held() -> set[str]:
    held: set[str] | None = getattr(_HELD, "paths", None)
    if held is None:
        held = _HELD.paths = set()
    return held


def _open(path: str) -> IO[bytes] | None:
    """The queue's file, made if need be; None where it cannot be (a read-only directory).

    Read-write where allowed (NFS turns `flock` into a POSIX lock, which needs a file open for
    writing), else read-only (a process of another user that may only read it still queues).
    A file object, not a bare descriptor: one collected without `close` still closes, and so
    frees the turn it held."""
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.fdopen(os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o644), "rb")
        except OSError:
            continue
    return None


class _Wait:
    """One wait for the turn outside the main thread, on a file description of its own, done
    by the queue's waiting thread (`_waiter`): the caller gives up after its timeout (a
    blocking `flock` cannot be interrupted), and the thread, once the turn comes, hands it
    over or, given up on, frees it at once. A wait given up before the thread reached it opens
    nothing: behind a stuck writer, waits given up one after another cost no files."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._line: IO[bytes] | None = None
        self._error: OSError | None = None
        self._decided = threading.Lock()
        self._given = threading.Event()
        self._given_up = False

    def run(self) -> None:
        """In the waiting thread."""
        with self._decided:
            if self._given_up:
                return
        line = _open(self._path)
        if line is not None:
            try:
                fcntl.flock(line.fileno(), fcntl.LOCK_EX)
            except OSError as error:
                self._error = error
        with self._decided:
            if line is not None and (self._given_up or self._error is not None):
                line.close()  # frees the turn: nobody takes it
            else:
                self._line = line
            self._given.set()

    def turn(self, timeout: float) -> IO[bytes] | None:
        """In the caller: the file holding the turn, or None (not given within `timeout`
        seconds, or no file could be opened). Raises the lock's error (`OSError`)."""
        _waiter(self._path).put(self)
        try:
            self._given.wait(timeout)
        except BaseException:  # interrupted (Ctrl-C in a shell): the turn must not stay held
            self._give_up()
            raise
        if not self._give_up():
            return None
        if self._error is not None:
            raise self._error
        return self._line

    def _give_up(self) -> bool:
        """Whether the turn was given already; if not, the waiting thread will free it."""
        with self._decided:
            if self._given.is_set():
                return True
            self._given_up = True
            return False


class _GaveUp(Exception):
    """The alarm rang before the turn came."""


def _wait_on_alarm(queue: IO[bytes], timeout: float) -> bool | None:
    """Wait for the turn in this thread, the alarm (SIGALRM) breaking the wait after `timeout`
    seconds: whether the turn came; None where the alarm is not ours to use (a thread other
    than the main one, which signals never reach, or an alarm or handler someone else set).

    A gunicorn sync worker serves in its main thread: its texts wait this way, at the cost of a
    few system calls; handing every wait to another thread cost a text 0.1-0.3 ms more CPU
    (switching threads both ways) and a tenth of the throughput."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL
        or signal.getitimer(signal.ITIMER_REAL)[0]
    ):
        return None
    if timeout <= 0:  # (a timer of 0 is no timer: it would wait for ever)
        return False
    waiting = True

    def give_up(_signum: int, _frame: Any) -> None:
        if waiting:
            raise _GaveUp

    signal.signal(signal.SIGALRM, give_up)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        fcntl.flock(queue.fileno(), fcntl.LOCK_EX)
        waiting = False
        return True
    except _GaveUp:
        # The alarm may have rung just as the turn came: free it, the writer has given up.
        fcntl.flock(queue.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        waiting = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a signal already rung is then skipped


# Per process and queue, the thread that waits in it for this process's writers outside the main
# thread (one at a time: they all wait for the same turn).
_WAITERS: dict[tuple[int, str], SimpleQueue[_Wait]] = {}
_WAITERS_MADE = threading.Lock()


def _waiter(path: str) -> SimpleQueue[_Wait]:
    """The queue's waiting thread's inbox. Raises RuntimeError when no thread can be started
    (a process at its limit): it is tried again at the next wait."""
    key = (os.getpid(), path)  # a forked child starts its own: threads do not survive a fork
    waits = _WAITERS.get(key)
    if waits is None:
        with _WAITERS_MADE:
            waits = _WAITERS.get(key)
            if waits is None:
                waits = SimpleQueue()
                threading.Thread(target=_wait_in_turn, args=(waits,), daemon=True,
                                 name="sqlite-writers-queue").start()  # fmt: skip
                _WAITERS[key] = waits  # only once its thread runs
    return waits


def _wait_in_turn(waits: SimpleQueue[_Wait]) -> None:
    while True:
        wait = waits.get()
        try:
            wait.run()
        except Exception:  # the thread must outlive any one wait; that caller times out
            log.exception("the SQLite writers' queue could not wait for a turn")


class QueuedConnection(sqlite3.Connection):
    """A SQLite connection that takes its turn in its database's writer queue for the span of
    each transaction (`take_turn` before `BEGIN`; released by `commit`, `rollback`, `close`).
    `queue_path` is set on a subclass made per database (`connection_class`)."""

    queue_path: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn_held_in: set[str] | None = None  # the taking thread's set, while a turn is held
        self._queue = _open(self.queue_path)

    def take_turn(self, timeout: float) -> bool:
        """Wait until no other TextPay writer of this database is in a transaction, and hold
        that until this connection's transaction ends. False when no turn is held: it was not
        given within `timeout` seconds (the writer ahead is taking long: BEGIN IMMEDIATE then
        decides, with the time that is left), this thread already holds one (it would wait
        for itself), or there is no queue."""
        held = _held()
        if self._turn_held_in is not None:
            return True
        if self._queue is None or self.queue_path in held:
            return False
        try:
            if not self._wait_for_turn(self._queue, timeout):
                return False
            held.add(self.queue_path)
            self._turn_held_in = held
            return True
        except OSError:
            return self._without_queue()
        except BaseException:
            # Interrupted once the lock may have come (Ctrl-C in a shell that carries on): the
            # turn may not be recorded yet, and then nothing else would free it.
            self._turn_held_in = held
            self.end_turn()
            raise

    def _wait_for_turn(self, queue: IO[bytes], timeout: float) -> bool:
        try:
            fcntl.flock(queue.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass  # another writer's turn: wait for it
        given = _wait_on_alarm(queue, timeout)
        if given is not None:
            return given
        try:
            turn = _Wait(self.queue_path).turn(timeout)
        except RuntimeError:  # no thread to wait in: BEGIN IMMEDIATE's retries this time
            return False
        if turn is None:
            return False
        queue.close()  # the turn is held on the waiting thread's file: it is this one's now
        self._queue = turn
        return True

    def _without_queue(self) -> bool:
        """A file system whose locks fail (some network file systems): BEGIN IMMEDIATE's own
        retries alone, as before there was a queue."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        return False

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
        if _COMMITS.checkpoint_due(self.queue_path):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy what it can of the write-ahead log into the database, outside any turn,
        waiting for nobody (`PASSIVE`: another connection's checkpoint under way makes this
        one copy nothing). The commit before it stands whatever happens here: a failure (a
        disk error, a statement of this connection still open) is logged, at most once a
        minute, and left to the next checkpoint."""
        if self.in_transaction:
            return
        try:
            self.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as error:  # the commit succeeded: the caller must not hear otherwise
            _COMMITS.report_failure(self.queue_path, error)

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

    def __del__(self) -> None:
        # Collected in a transaction (never closed): the file's own close frees the lock, and
        # this forgets the turn in its thread's set, which would otherwise skip the queue.
        # (getattr: a connection that failed to open never set it.)
        held_in = getattr(self, "_turn_held_in", None)
        if held_in is not None:
            held_in.discard(self.queue_path)


class _CommitCount:
    """Per database and process, the commits since its last checkpoint, whichever of the
    process's connections made them (`textpay serve` pools up to fifteen): a count per
    connection would let each of them wait for its own hundred, and the log outgrow them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: dict[str, int] = {}
        self._warned_at: dict[str, float] = {}

    def checkpoint_due(self, path: str) -> bool:
        with self._lock:
            count = self._since.get(path, 0) + 1
            due = count >= CHECKPOINT_EVERY_COMMITS
            self._since[path] = 0 if due else count
            return due

    def report_failure(self, path: str, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._warned_at.get(path, -60.0) < 60:
                return
            self._warned_at[path] = now
        log.warning("SQLite's write-ahead log could not be checkpointed (left to the next "
                    "checkpoint): %s", error)  # fmt: skip


_COMMITS = _CommitCount()


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
