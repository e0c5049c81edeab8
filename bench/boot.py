"""How long a gunicorn worker of TextPay takes from its fork to its first answer, against a
minimal Flask app started by the same gunicorn the same way.

For each database it starts, one after the other, `gunicorn --config bench/boot_conf.py` (the
project's `gunicorn.conf.py` unchanged, plus hooks that only write down times; the worker count is
the one gunicorn.conf.py picks: 2, or WEB_CONCURRENCY) serving:

- the **floor**: `bench.boot_floor:floor_app()`, a Flask app with one empty route;
- **TextPay**: `wsgi:app`, on a database made with `textpay init-db` and seeded with accounts
  that each have a low balance, a card and a pending offer.

While a server runs, `workers + 1` client threads post signed Twilio webhooks (`BAL` from a
seeded phone, each with its own MessageSid, as Twilio posts them) one after another, 25 ms
apart: a worker finds a request waiting soon after it can take one (within a few tens of ms),
while the workers still running are kept far from saturated (they share the 2 cores with the
one booting). After the workers of
the cold start have answered, the benchmark sends SIGTERM to one worker at a time (the oldest)
and waits until the arbiter's replacement has answered, `--restarts` times.

What is measured, per worker: from its **fork**, the start time the kernel recorded for the
process (`/proc/<pid>/stat`; it has clock-tick resolution, 10 ms, and is rounded down, so the
durations err on the long side), to

- **loaded**: gunicorn's `post_worker_init` hook, once the worker has the app (imported it, or
  inherited it from the arbiter with preload_app);
- **first answer**: gunicorn's `post_request` hook after the worker's first response was
  written to the client's socket. This is "ready to serve": a real webhook went through the
  whole path (signature, database, reply), so work deferred to the first request is counted.

All times come from CLOCK_BOOTTIME, in the workers themselves (`bench/boot_conf.py`), which also
record the CPU time the worker had used by its first answer: other work on a shared machine
stretches wall time far more than CPU time. The table gives median and max over the restarts;
the time from starting gunicorn until every worker had answered (the cold start: the arbiter's
own start, and with preload_app its loading of the app, come before any fork); and TextPay's
medians as multiples of the floor's, measured in the same run, which machine speed mostly
cancels out of.

Run from the repository root:

    .venv/bin/python -m bench.boot --database sqlite --database postgresql --restarts 10

SQLite files live in a temporary directory; PostgreSQL (127.0.0.1:5432, user postgres, trust
auth) uses its own database `bench_boot`, dropped and created afresh each run.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunicorn import config as gunicorn_config
from twilio.request_validator import RequestValidator

from bench.webhook import (
    AUTH_TOKEN,
    BIN,
    CHILDREN,
    PATH,
    ROOT,
    _terminated,
    cores_busy,
    free_port,
    machine,
    new_sid,
    seed_textpay,
    server_env,
    textpay_env,
    twilio_params,
)

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_boot"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
ACCOUNTS = 50
PAUSE_SECONDS = 0.025
WAIT_SECONDS = 60


@dataclass
class Worker:
    pid: int
    started: float
    loaded: float | None = None
    answered: float | None = None
    answered_cpu: float | None = None
    status: str = ""

    @property
    def loaded_ms(self) -> float | None:
        return None if self.loaded is None else (self.loaded - self.started) * 1000

    @property
    def answered_ms(self) -> float | None:
        return None if self.answered is None else (self.answered - self.started) * 1000

    @property
    def answered_cpu_ms(self) -> float | None:
        return None if self.answered_cpu is None else self.answered_cpu * 1000


@dataclass
class Run:
    app: str
    launched: float = 0.0  # when gunicorn was started, on CLOCK_BOOTTIME
    cold: list[Worker] = field(default_factory=list)
    restarted: list[Worker] = field(default_factory=list)
    client_errors: int = 0


def read_records(path: Path) -> dict[int, Worker]:
    workers: dict[int, Worker] = {}
    if not path.exists():
        return workers
    for line in path.read_text().splitlines():
        pid_text, event, at_text, started_text, cpu_text, detail = line.split(" ", 5)
        pid, at = int(pid_text), float(at_text)
        worker = workers.setdefault(pid, Worker(pid, float(started_text)))
        if event == "loaded":
            worker.loaded = at
        elif event == "answered":
            worker.answered, worker.answered_cpu, worker.status = at, float(cpu_text), detail
    return workers


class Clients:
    """Threads posting signed webhooks to one server until stopped."""

    def __init__(self, port: int, phones: Sequence[str], count: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.phones = itertools.cycle(phones)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors = 0
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]
        self.validator = RequestValidator(AUTH_TOKEN)

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(20)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                phone = next(self.phones)
            params = twilio_params(new_sid(), phone, "BAL")
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": self.validator.compute_signature(self.url, params),
            }
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("POST", PATH, urllib.parse.urlencode(params), headers)
                answer = connection.getresponse()
                answer.read()
                if answer.status >= 300:
                    with self.lock:
                        self.errors += 1
            except OSError:
                pass  # not bound yet, or a worker stopped mid-request: a restart, not an error
            finally:
                connection.close()
            self.stopping.wait(PAUSE_SECONDS)


def wait_for(
    condition: str, check: Callable[[], bool], server: subprocess.Popen[Any], log: Path
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited while waiting for {condition}; see {log}")
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError(f"no {condition} within {WAIT_SECONDS} s; see {log}")


def worker_count(env: dict[str, str]) -> int:
    """The number of workers gunicorn.conf.py starts under `env`."""
    return int(env.get("WEB_CONCURRENCY") or 2)


def measure(
    app: str, spec: str, *, env: dict[str, str], phones: Sequence[str], restarts: int,
    workdir: Path, gunicorn_args: Sequence[str],
) -> Run:  # fmt: skip
    port = free_port()
    slug = app.lower().replace(" ", "-")
    records, log = workdir / f"{slug}-{port}.records", workdir / f"{slug}-{port}.log"
    env = {**env, "BENCH_BOOT_RECORDS": str(records)}
    if app == "TextPay":
        env["TEXTPAY_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    extra = ["--no-control-socket"] if hasattr(gunicorn_config, "ControlSocketDisable") else []
    command = [str(BIN / "gunicorn"), "--config", "bench/boot_conf.py",
               "--bind", f"127.0.0.1:{port}", *extra, *gunicorn_args, spec]  # fmt: skip
    workers = worker_count(env)
    run = Run(app, launched=time.clock_gettime(time.CLOCK_BOOTTIME))
    with log.open("w") as log_file:
        server = CHILDREN.start(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    try:
        with Clients(port, phones, workers + 1) as clients:

            def answered() -> list[Worker]:
                return [w for w in read_records(records).values() if w.answered is not None]

            def all_answered() -> bool:
                return len(answered()) >= workers

            wait_for("first answers", all_answered, server, log)
            run.cold = answered()
            seen = {w.pid for w in run.cold}
            alive = sorted(run.cold, key=lambda w: w.started)
            for _ in range(restarts):
                victim = alive.pop(0)
                os.kill(victim.pid, signal.SIGTERM)

                def replaced() -> bool:
                    return any(w.pid not in seen for w in answered())

                wait_for("answer from a new worker", replaced, server, log)
                new = [w for w in answered() if w.pid not in seen]
                seen.update(w.pid for w in new)
                run.restarted += new
                alive += new
            run.client_errors = clients.errors
    finally:
        CHILDREN.stop(server)
    return run


def prepare(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{workdir}/textpay.db"
    else:
        import psycopg  # noqa: PLC0415  (only the PostgreSQL half needs it)

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {PG_DATABASE}")
        url = PG_URL
    status, output = CHILDREN.run([str(BIN / "textpay"), "init-db"], cwd=ROOT,
                                  env=textpay_env(url), timeout=120)  # fmt: skip
    if status != 0:
        raise RuntimeError(f"textpay init-db failed:\n{output}")
    return url


def _ms(values: Sequence[float | None]) -> tuple[float, float]:
    found = [v for v in values if v is not None]
    return statistics.median(found), max(found)


def print_table(runs: Sequence[Run]) -> None:
    """Per server: restarts' median and max of loaded, first answer and its CPU time; the time
    from starting gunicorn to every worker's first answer; then TextPay's medians as multiples
    of the floor's."""
    columns = {
        "loaded ms": lambda w: w.loaded_ms,
        "first answer ms": lambda w: w.answered_ms,
        "first answer CPU ms": lambda w: w.answered_cpu_ms,
    }
    print(f"  {'':8} {'workers':>7} {'restarts':>8}"
          + "".join(f" {name:>19}" for name in columns) + f" {'gunicorn start':>14}")  # fmt: skip
    print(f"  {'':8} {'':>7} {'':>8}" + f" {'median':>9} {'max':>9}" * len(columns)
          + f" {'to ready, ms':>14}")  # fmt: skip
    medians: dict[str, list[float]] = {name: [] for name in columns}
    for run in runs:
        cells = ""
        for name, value in columns.items():
            median, top = _ms([value(w) for w in run.restarted])
            medians[name].append(median)
            cells += f" {median:>9.0f} {top:>9.0f}"
        cold = (max(w.answered or 0 for w in run.cold) - run.launched) * 1000
        print(f"  {run.app:8} {len(run.cold):>7} {len(run.restarted):>8}{cells} {cold:>14.0f}")
    ratios = ", ".join(f"{name} x{found[1] / found[0]:.1f}" for name, found in medians.items())
    print(f"  TextPay / floor, medians: {ratios}")
    for run in runs:
        statuses = sorted({w.status for w in [*run.cold, *run.restarted]})
        if statuses != ["200"] or run.client_errors:
            print(f"  WARNING: {run.app}: first answers {statuses}, {run.client_errors} "
                  "answers >= 300 to the clients")  # fmt: skip
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.boot",
        description="Fork-to-first-answer of TextPay's gunicorn workers, against a minimal "
        "Flask app under the same gunicorn.",
    )
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"],
                        help="backend to measure (repeat for both; default sqlite)")  # fmt: skip
    parser.add_argument("--restarts", type=int, default=8,
                        help="workers stopped and replaced per server")  # fmt: skip
    parser.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                        help="another gunicorn argument for both servers (repeatable), e.g. "
                        "--gunicorn-arg=--preload")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.restarts < 1:
        parser.error("--restarts must be >= 1")
    args.database = list(dict.fromkeys(args.database or ["sqlite"]))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    os.chdir(ROOT)
    workdir = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    print(f"Machine: {machine()}")
    print(f"Command: {shlex.join(sys.orig_argv)}")
    print("Servers: gunicorn --config bench/boot_conf.py (gunicorn.conf.py + timing hooks)"
          f"{''.join(' ' + a for a in args.gunicorn_arg)}, bound to 127.0.0.1; times from each "
          "worker's fork\n")  # fmt: skip
    try:
        for kind in args.database:
            url = prepare(kind, workdir)
            phones = seed_textpay(url, ACCOUNTS)
            busy = cores_busy()
            print(f"== {kind}" + (f" (WARNING: {busy:.1f} CPUs busy with other work)"
                                  if busy > 0.25 else ""))  # fmt: skip
            runs = [
                measure("floor", "bench.boot_floor:floor_app()",
                        env=server_env({"DATABASE_URL": url}), phones=phones,
                        restarts=args.restarts, workdir=workdir, gunicorn_args=args.gunicorn_arg),
                measure("TextPay", "wsgi:app", env=textpay_env(url), phones=phones,
                        restarts=args.restarts, workdir=workdir, gunicorn_args=args.gunicorn_arg),
            ]  # fmt: skip
            print_table(runs)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process this benchmark started", file=sys.stderr)
        return 130
    finally:
        CHILDREN.stop_all()
        if args.keep:
            print(f"Server logs and records kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
