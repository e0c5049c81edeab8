"""gunicorn settings for `bench/boot.py`: the project's `gunicorn.conf.py`, unchanged, plus hooks
that write down when each worker was forked, had loaded its app and had answered its first request.

Every time is read from CLOCK_BOOTTIME, the clock the kernel keeps a process's start time on
(`/proc/<pid>/stat`, field 22, in clock ticks), so the three can be compared. The arbiter imports
nothing more than the project's settings do: what a worker inherits is what it inherits in
production. The project's own hooks still run (first) when the app served is TextPay's
(`wsgi:app`); the floor has no database for them to look after.

Each record also holds the CPU time the worker has used since its fork (user and system; a forked
process starts at zero), which other work on the machine disturbs far less than wall time.

Records go to the file named by BENCH_BOOT_RECORDS, one line per event: `<pid> <event>
<seconds since boot> <worker's start, seconds since boot> <CPU seconds> <detail>`.
"""

from __future__ import annotations

import os
import runpy
import time
from pathlib import Path
from typing import Any

_PROJECT = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
globals().update({name: value for name, value in _PROJECT.items() if not name.startswith("__")})

_answered = False


def _record(event: str, detail: str = "-") -> None:
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    stat = Path("/proc/self/stat").read_text()
    start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    started = start_ticks / os.sysconf("SC_CLK_TCK")
    cpu = time.process_time()
    line = f"{os.getpid()} {event} {now:.6f} {started:.6f} {cpu:.6f} {detail}\n"
    descriptor = os.open(os.environ["BENCH_BOOT_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def _chained(name: str, worker: Any) -> Any:
    """The project's hook `name`, when the worker serves the project's app."""
    return _PROJECT.get(name) if worker.app.app_uri == "wsgi:app" else None


def post_fork(server: Any, worker: Any) -> None:
    if hook := _chained("post_fork", worker):
        hook(server, worker)
    _record("forked")


def post_worker_init(worker: Any) -> None:
    """After the worker has its app: imported it, or inherited it (preload_app)."""
    if hook := _chained("post_worker_init", worker):
        hook(worker)
    _record("loaded")


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """After the response was written to the client's socket."""
    global _answered  # noqa: PLW0603  (one flag per worker process)
    if hook := _chained("post_request", worker):
        hook(worker, req, environ, resp)
    if not _answered:
        _answered = True
        _record("answered", str(resp.status_code))
