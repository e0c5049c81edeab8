"""The disk's own stalls while a benchmark measures: how long this machine's storage took to
make a small write durable, sampled through each measured run.

A commit that must survive a crash waits for `fdatasync` (PostgreSQL's write-ahead log with
`synchronous_commit = on`; SQLite's checkpoints). On a shared virtual disk that wait is usually
a tenth of a millisecond and, a few times a minute, a few hundred: every process that commits in
that moment waits with it, the persistence floor as much as TextPay, and a 10-second run's p99
is then the disk's rather than the code's. `DiskProbe` writes 4 KB and calls `fdatasync` every
20 ms from a thread of the benchmark's own process (which only waits on its load generator
meanwhile), on a file in a directory of the database's filesystem, and keeps each sample's wall
time and duration, so that a report can say whether the disk stalled during a run, and when.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

# A device that stalls holds every flush issued meanwhile, and a sample starts within about
# 20 ms of any moment: a stall is seen, up to 20 ms short of its length (one of 50-70 ms may
# be counted under STALL_MS).
INTERVAL_SECONDS = 0.020
STALL_MS = 50.0  # the webhook's p99 target: a stall this long decides a run's p99 alone
_BLOCK = b"\0" * 4096


@dataclass(frozen=True)
class DiskSamples:
    """What the probe saw: (wall time, milliseconds) of each `fdatasync`, in order; how late
    its own thread woke for them at worst (the CPU's share of what it timed, not the disk's);
    and why it stopped early, if it did."""

    samples: tuple[tuple[float, float], ...]
    worst_wakeup_ms: float = 0.0
    stopped: str | None = None  # the error that ended sampling before it was asked to stop

    @property
    def worst_ms(self) -> float:
        return max((ms for _, ms in self.samples), default=0.0)

    def stalls(self, at_least_ms: float = STALL_MS) -> int:
        return sum(ms >= at_least_ms for _, ms in self.samples)

    def worst_between(self, start: float, end: float) -> float:
        """The longest `fdatasync` that was under way at any moment of [start, end)."""
        return max(
            (ms for began, ms in self.samples if began < end and began + ms / 1000 > start),
            default=0.0,
        )

    def within(self, start: float, end: float) -> DiskSamples:
        """The samples begun in [start, end): a run's own, without its setting up."""
        kept = tuple((began, ms) for began, ms in self.samples if start <= began < end)
        return DiskSamples(kept, self.worst_wakeup_ms, self.stopped)

    def summary(self) -> str:
        stopped = f"; SAMPLING STOPPED EARLY: {self.stopped}" if self.stopped else ""
        if not self.samples:
            return "no sample" + stopped
        durations = sorted(ms for _, ms in self.samples)
        median = durations[len(durations) // 2]
        return (
            f"{len(durations)} fdatasyncs, median {median:.2f} ms, worst {self.worst_ms:.1f} "
            f"ms, {self.stalls()} of {STALL_MS:.0f} ms or more (its thread woke up to "
            f"{self.worst_wakeup_ms:.0f} ms late){stopped}"
        )


class DiskProbe:
    """`with DiskProbe(directory) as probe:` samples the disk until the block ends; then
    `probe.result()`. The one block is rewritten in place, so the file never grows and an
    `fdatasync` has only data to make durable (on ext4 and xfs; copy-on-write filesystems
    write more): what is timed is the device making one block durable, as a commit's log flush
    is. What it times includes any wait for a CPU after the flush returns; the thread's own
    lateness in waking (`DiskSamples.worst_wakeup_ms`) shows how much of that a run had."""

    def __init__(self, directory: Path, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._path = directory / f".disk-probe-{os.getpid()}"
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._samples: list[tuple[float, float]] = []
        self._worst_wakeup_ms = 0.0
        self._stopped: str | None = None
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)

    def __enter__(self) -> DiskProbe:
        self._descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(self._descriptor, _BLOCK, 0)
            os.fsync(self._descriptor)  # the block and its size on disk: later syncs are data
        except BaseException:
            self._close()
            raise
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        try:
            # A flush stuck in the device is not waited out: the thread is a daemon.
            self._thread.join(timeout=5)
        finally:
            self._close()

    def _close(self) -> None:
        os.close(self._descriptor)
        self._path.unlink(missing_ok=True)

    def _run(self) -> None:
        try:
            while True:
                due = time.perf_counter() + self._interval
                if self._stop.wait(self._interval):
                    return
                late = (time.perf_counter() - due) * 1000
                self._worst_wakeup_ms = max(self._worst_wakeup_ms, late)
                os.pwrite(self._descriptor, _BLOCK, 0)
                began = time.time()
                started = time.perf_counter()
                os.fdatasync(self._descriptor)
                self._samples.append((began, (time.perf_counter() - started) * 1000))
        except OSError as error:  # said in the report, not taken for a quiet disk
            self._stopped = f"{error.strerror or error} after {len(self._samples)} samples"

    def result(self) -> DiskSamples:
        return DiskSamples(tuple(self._samples), self._worst_wakeup_ms, self._stopped)


def same_filesystem(directory: Path, other: str | None) -> bool | None:
    """Whether `directory` is on the filesystem of `other` (None: `other` cannot be seen from
    here, as a database in a container's own filesystem cannot)."""
    if not other:
        return None
    try:
        return os.stat(directory).st_dev == os.stat(other).st_dev
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """The disk alone, nothing else running: how this machine's storage makes writes durable."""
    import argparse  # noqa: PLC0415  (only the command line needs it)

    parser = argparse.ArgumentParser(prog="python -m bench.disk", description=main.__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--directory", type=Path, default=Path("."),
                        help="where to write; put it on the database's filesystem "
                        "(default: the current directory)")  # fmt: skip
    args = parser.parse_args(argv)
    with DiskProbe(args.directory, interval_seconds=0.0) as probe:
        time.sleep(args.seconds)
    found = probe.result()
    durations = sorted(ms for _, ms in found.samples)
    if not durations:
        print("no sample")
        return 1
    tail = ", ".join(
        f"p{share * 100:g} {durations[min(len(durations) - 1, int(share * len(durations)))]:.2f}"
        for share in (0.5, 0.99, 0.999)
    )
    print(f"{args.directory.resolve()}, {args.seconds:g} s back to back: {found.summary()}")
    print(f"  ms: {tail}; {found.stalls(100)} of 100 ms or more")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
