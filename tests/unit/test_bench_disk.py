"""The benchmark's disk probe (`bench/disk.py`): it times real `fdatasync`s, leaves nothing
behind, and the webhook report puts a stall in the second it happened."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from bench import disk, webhook
from bench.disk import DiskProbe, DiskSamples


def test_the_probe_times_durable_writes_while_it_runs_and_leaves_no_file(tmp_path: Path) -> None:
    began = time.time()
    with DiskProbe(tmp_path, interval_seconds=0.005) as probe:
        time.sleep(0.3)
    ended = time.time()
    samples = probe.result().samples
    assert samples  # one at least, even if the disk stalls for most of the 0.3 s
    assert all(began <= at <= ended and ms >= 0 for at, ms in samples)
    assert [at for at, _ in samples] == sorted(at for at, _ in samples)
    assert list(tmp_path.iterdir()) == []


def test_a_stall_counts_for_every_second_it_was_under_way() -> None:
    # A 300 ms fdatasync that began at 100.9 s held commits back in second 100 and second 101.
    disk = DiskSamples(((100.2, 0.1), (100.9, 300.0), (101.5, 0.2), (102.4, 49.9)))
    assert disk.worst_between(100, 101) == 300.0
    assert disk.worst_between(101, 102) == 300.0
    assert disk.worst_between(102, 103) == 49.9
    assert disk.worst_between(103, 104) == 0.0
    assert disk.stalls() == 1  # 50 ms or more: 49.9 is not one
    assert disk.worst_ms == 300.0
    assert "worst 300.0 ms, 1 of 50 ms or more" in disk.summary()
    assert DiskSamples(()).summary() == "no sample"
    # A run's own samples, not those of its setting up.
    assert disk.within(100.5, 102.0).samples == ((100.9, 300.0), (101.5, 0.2))


def test_a_probe_that_fails_says_so_instead_of_reporting_a_quiet_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = os.fdatasync, []

    def failing_after_two(descriptor: int) -> None:
        calls.append(descriptor)
        if len(calls) > 2:
            raise OSError(errno.EIO, "Input/output error")
        real(descriptor)

    monkeypatch.setattr(os, "fdatasync", failing_after_two)
    with DiskProbe(tmp_path, interval_seconds=0.001) as probe:
        deadline = time.monotonic() + 30
        while probe.result().stopped is None and time.monotonic() < deadline:
            time.sleep(0.01)
    found = probe.result()
    assert len(found.samples) == 2
    assert "SAMPLING STOPPED EARLY: Input/output error after 2 samples" in found.summary()
    assert list(tmp_path.iterdir()) == []


def test_a_probe_that_cannot_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(_descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"), DiskProbe(tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []


def _measured(tmp_path: Path, timeline: tuple[tuple[float, float], ...]) -> webhook.Measured:
    load = webhook.LoadResult(
        requests=len(timeline), seconds=3, p50_ms=20.0, p99_ms=100.0, socket_errors=0,
        statuses={"200": len(timeline)}, sent={"BAL": len(timeline)}, wrapped=0,
        timeline=timeline, started_at=1000.0,
    )  # fmt: skip
    disk = DiskSamples(((1000.5, 0.2), (1001.7, 480.0), (1002.5, 0.3)))
    return webhook.Measured(
        spec=webhook.SERVERS[0], load=load, cpu_ms_per_request=1.0, db_cpu_ms_per_request=None,
        recycled_workers=0, log=tmp_path / "server.log", worker_ms=[], disk=disk,
    )  # fmt: skip


def test_the_timeline_shows_the_disk_stall_beside_the_slow_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = ((0.1, 20.0), (0.6, 22.0), (1.8, 470.0), (2.3, 21.0))
    webhook.print_timeline(_measured(tmp_path, timeline))
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    # second, requests, p50, max, over p99, disk ms
    assert [(row[0], row[3], row[5]) for row in rows] == [
        ("0", "22.0", "0.2"),
        ("1", "470.0", "480.0"),
        ("2", "21.0", "480.0"),  # the stall began in second 1 and ran into second 2
    ]


def test_a_stall_that_began_after_a_slow_request_was_sent_is_shown_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measured = _measured(tmp_path, ((0.95, 470.0),))
    measured.disk = DiskSamples(((1001.05, 400.0),))
    webhook.print_timeline(measured)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    assert [(row[0], row[5]) for row in rows] == [("0", "400.0")]


def test_a_report_without_the_probe_has_no_disk_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measured = _measured(tmp_path, ((0.1, 20.0),))
    measured.disk = None
    webhook.print_timeline(measured)
    assert "disk" not in capsys.readouterr().out


def test_the_command_line_times_the_disk_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert disk.main(["--seconds", "0.2", "--directory", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path.resolve()}, 0.2 s back to back: ")
    assert "fdatasyncs, median" in out
    assert "p99.9" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("p99_ms", "log_directory", "noted"),
    [
        (120.0, "same", True),  # missed while the database's disk stalled: said
        (40.0, "same", False),  # met: nothing to explain
        (120.0, "/proc", False),  # the probe timed another filesystem: it explains nothing
    ],
)
def test_a_missed_p99_is_put_beside_a_stall_of_the_database_s_disk(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    p99_ms: float,
    log_directory: str,
    noted: bool,
) -> None:
    results = []
    for spec in webhook.SERVERS:
        measured = _measured(tmp_path, ((0.1, 20.0),))
        measured.spec = spec
        measured.load.p99_ms = p99_ms
        results.append(measured)
    backend = webhook.Backend(
        "sqlite", "sqlite://", "sqlite://", str(tmp_path) if log_directory == "same" else "/proc"
    )
    outcome = {"texts": 1, "deposits": 0, "funded": 0, "open_offers": 0}
    webhook.print_backend(backend, results, outcome)
    out = capsys.readouterr().out
    assert "worst 480.0 ms, 1 of 50 ms or more" in out
    assert ("the disk took up to 480 ms" in out) is noted
    assert ("NOT the filesystem of the database's log" in out) is (log_directory != "same")
