"""How fast TextPay answers Twilio's inbound-SMS webhook, against two floors on the same gunicorn.

For each database backend it serves, one after the other, with the same gunicorn settings
(`gunicorn.conf.py`, optionally `--workers` / `--worker-class` / `--threads`):

- **TextPay**: `wsgi:app`, seeded with accounts that each have a low balance, a card and a
  pending offer;
- **framework floor** (`bench.webhook:floor_app()`): Flask parsing the form and returning fixed
  TwiML, the least any Flask webhook does;
- **persistence floor** (`bench.webhook:persistence_app()`): the same plus one INSERT and one
  SELECT with SQLAlchemy Core in one transaction, on the same kind of database (SQLite with WAL,
  synchronous=NORMAL and a busy timeout, or PostgreSQL).

Each is loaded from a second process (wrk, or a Python load generator when wrk is missing) with
16 concurrent connections (kept alive where the worker class allows; sync workers close each
one) for a fixed time after a short warm-up, with signed webhooks in a realistic mix: 70% `BAL`,
20% `YES` (each from a different phone with a live offer, so every YES charges a card once), 10%
words TextPay does not know. Every request has its own MessageSid and a valid X-Twilio-Signature
for the URL the server sees. It prints, per server: requests/s, p50 and p99 latency as the load
generator sees it, errors (non-2xx answers and socket errors), and CPU time per request of the
gunicorn processes (and, on PostgreSQL, of the database server); then TextPay's share of each
floor's requests/s and whether TextPay met its targets (>= 35% of the persistence floor's
requests/s, p99 < 50 ms, no errors). It exits 0 whenever it measured: the targets inform, they
do not fail a build.

Run from the repository root (wrk is preferred: `apt-get install -y wrk`):

    .venv/bin/python -m bench.webhook --database sqlite --database postgresql
    .venv/bin/python -m bench.webhook --database sqlite --workers 4 --worker-class gthread \
        --threads 4 --duration 20

Where in a run its slowest 1% fell, second by second (the Python load generator keeps each
request's own time; wrk does not): `--loader python --timeline`.

During each measured run a thread of this process times a small write made durable
(`fdatasync`) every 20 ms on the database's filesystem (`bench/disk.py`), and the report says
how long the slowest took: a commit that must survive a crash waits for the same disk, so a
run in which the disk stalled has the disk's p99 as much as the server's. `--no-disk-probe`
turns it off.

SQLite files live in a temporary directory; PostgreSQL (127.0.0.1:5432, user postgres, trust
auth) uses its own database `bench_webhook`, dropped and created afresh each run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from gunicorn import config as gunicorn_config
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from twilio.request_validator import RequestValidator

from bench.disk import DiskProbe, DiskSamples, same_filesystem

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LUA_SCRIPT = Path(__file__).resolve().with_name("wrk_signed.lua")

# Known to the benchmark only: the servers are bound to 127.0.0.1 and live for seconds.
AUTH_TOKEN = "bench-twilio-auth-token"  # noqa: S105
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_webhook"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
FLOOR_DATABASE_ENV = "BENCH_WEBHOOK_DATABASE_URL"
PATH = "/twilio/sms"
OUR_NUMBER = "+12125550100"
TWIML_OK = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'

# The request mix: 70% BAL, 20% YES, 10% words TextPay answers with its help line.
BAL_SHARE, YES_SHARE = 0.7, 0.2
UNKNOWN_WORDS = ("hello", "ok", "thanks", "who is this", "maybe later", "yess")
# Area codes of real US numbers; +1 AAA 555 0100..9999 are all valid for phonenumbers.
AREAS = ("212", "305", "312", "415", "617", "713", "206", "404", "702", "303")
SEED_BALANCE_CENTS = 310  # below the default $5.00 threshold: a low balance, as the scan sees it
SEED_BATCH = 250

TARGET_FLOOR_SHARE = 0.35
TARGET_P99_MS = 50.0

FLOOR_TABLE = Table(
    "bench_inbound",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("message_sid", String(34), nullable=False),
    Column("sender", String(20), nullable=False),
    Column("body", Text, nullable=False),
)


# --------------------------------------------------------------------------------------------
# The two floors, as gunicorn app factories.


def floor_app() -> Flask:
    """The framework floor: parse the form, answer fixed TwiML."""
    app = Flask("bench_floor")

    @app.post(PATH)
    def inbound() -> Response:
        form = request.form
        if not form.get("MessageSid"):
            return Response("no MessageSid", status=400)
        return Response(TWIML_OK, mimetype="text/xml")

    return app


def floor_engine(url: str) -> Engine:
    """An engine for the persistence floor, configured the way TextPay configures SQLite."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 5})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


def persistence_app() -> Flask:
    """The persistence floor: parse the form, insert one row and read it back (SQLAlchemy Core,
    one transaction), answer fixed TwiML. The database URL comes from BENCH_WEBHOOK_DATABASE_URL;
    the table must exist (the benchmark creates it)."""
    engine = floor_engine(os.environ[FLOOR_DATABASE_ENV])
    app = Flask("bench_persistence_floor")

    @app.post(PATH)
    def inbound() -> Response:
        form = request.form
        sid = form.get("MessageSid", "")
        if not sid:
            return Response("no MessageSid", status=400)
        with engine.begin() as connection:
            row_id = connection.execute(
                insert(FLOOR_TABLE).values(
                    message_sid=sid, sender=form.get("From", ""), body=form.get("Body", "")
                )
            ).inserted_primary_key[0]
            connection.execute(select(FLOOR_TABLE).where(FLOOR_TABLE.c.id == row_id)).one()
        return Response(TWIML_OK, mimetype="text/xml")

    return app


# --------------------------------------------------------------------------------------------
# Processes: everything started here is stopped in `finally`, by process group.


@dataclass
class Children:
    popen: list[subprocess.Popen[Any]] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)  # multiprocessing processes

    def start(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `command` (an argument list, never a shell) in its own process group."""
        # S603 is also ignored for bench/ in pyproject.toml; RUF100 keeps both settings quiet.
        process = subprocess.Popen(command, start_new_session=True, **kwargs)  # noqa: S603, RUF100
        self.popen.append(process)
        return process

    def run(self, command: Sequence[str], *, timeout: float, **kwargs: Any) -> tuple[int, str]:
        """Run `command` to completion; its exit status and output (stdout and stderr)."""
        process = self.start(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        finally:
            self.stop(process)
        return process.returncode, output

    def stop(self, process: subprocess.Popen[Any], timeout: float = 15) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        # Whatever is left in the group (workers of a gunicorn master that died) goes too.
        if group_members(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process in self.popen:
            self.popen.remove(process)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(5)
        self.workers.clear()
        for process in list(self.popen):
            self.stop(process)


CHILDREN = Children()


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEXTPAY_", "TWILIO_", "DATABASE_URL", FLOOR_DATABASE_ENV))
    }
    env.update(extra)
    return env


def textpay_env(database_url: str, port: int | None = None) -> dict[str, str]:
    extra = {
        "DATABASE_URL": database_url,
        "TEXTPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TEXTPAY_SMS_BACKEND": "console",
        "TEXTPAY_INBOUND_PER_MINUTE": "1000000",
    }
    if port is not None:
        extra["TEXTPAY_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    return server_env(extra)


def wait_until_serving(port: int, process: subprocess.Popen[Any], log: Path) -> None:
    """Until gunicorn answers HTTP at all (a GET to the POST-only route answers 405)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", PATH)
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn on port {port} did not answer within 60 s; see {log}")


def _proc_stats() -> dict[int, tuple[str, list[str]]]:
    """PID: (command name, the fields after it) of every process, from /proc/PID/stat."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        name, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :]
        found[int(stat.parent.name)] = (name, rest.split())
    return found


def _ticks(fields: list[str]) -> int:
    return sum(int(value) for value in fields[11:15])  # utime stime cutime cstime


def group_members(pgid: int) -> int:
    return sum(1 for _, fields in _proc_stats().values() if int(fields[2]) == pgid)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of a process group; workers that already exited count through
    the gunicorn master that reaped them."""
    ticks = sum(_ticks(f) for _, f in _proc_stats().values() if int(f[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_backend_ticks() -> dict[int, int]:
    """CPU ticks of each PostgreSQL backend connected to the benchmark's database (its process
    title names the database), so that other databases' work on the machine is not counted."""
    found = {}
    for pid, (name, fields) in _proc_stats().items():
        if name != "postgres":
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f" {PG_DATABASE} " in title:
            found[pid] = _ticks(fields)
    return found


def pg_cpu_seconds_since(before: dict[int, int]) -> float:
    after = pg_backend_ticks()
    ticks = sum(value - before.get(pid, 0) for pid, value in after.items())
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Databases and seeding.


@dataclass(frozen=True)
class Backend:
    kind: str  # "sqlite" or "postgresql"
    textpay_url: str
    floor_url: str
    # Where a commit that must survive a crash waits for the disk: PostgreSQL's pg_wal (its
    # write-ahead log, which may be a link to another device), SQLite's directory; None: unknown.
    log_directory: str | None


def prepare_backend(kind: str, workdir: Path) -> Backend:
    if kind == "sqlite":
        return Backend(kind, f"sqlite:///{workdir}/textpay.db", f"sqlite:///{workdir}/floor.db",
                       str(workdir))  # fmt: skip
    import psycopg  # noqa: PLC0415  (only the PostgreSQL half needs it)

    assert PG_DATABASE != "test", "never touch the test suite's database"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {PG_DATABASE}")
        try:  # a superuser's (or pg_read_all_settings') to see
            found = connection.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            found = None
    return Backend(kind, PG_URL, PG_URL, os.path.join(found[0], "pg_wal") if found else None)


def create_floor_table(url: str) -> None:
    engine = floor_engine(url)
    FLOOR_TABLE.metadata.drop_all(engine)
    FLOOR_TABLE.metadata.create_all(engine)
    engine.dispose()


def seed_phones(count: int) -> list[str]:
    per_area = 9900  # 0100..9999
    if count > per_area * len(AREAS):
        raise SystemExit(f"at most {per_area * len(AREAS)} accounts")
    return [f"+1{AREAS[i // per_area]}555{100 + i % per_area:04d}" for i in range(count)]


def seed_textpay(database_url: str, count: int) -> list[str]:
    """`count` accounts, each on its own phone, with card tok_visa, $3.10 and a pending offer.
    Written with the domain functions, as the admin API and the scan would."""
    # TextPay is imported here only, so that the floors' gunicorn workers never load it.
    from textpay.accounts import Enrolment  # noqa: PLC0415
    from textpay.db import make_engine, unit_of_work  # noqa: PLC0415
    from textpay.payments import SandboxGateway  # noqa: PLC0415
    from textpay.rehearsal import enrol_with_offer  # noqa: PLC0415
    from textpay.schemas import AccountCreate, PaymentMethodIn  # noqa: PLC0415
    from textpay.timeutil import utcnow  # noqa: PLC0415

    phones = seed_phones(count)
    engine = make_engine(database_url)
    context = Enrolment(actor="bench", gateway=SandboxGateway(engine))
    card = PaymentMethodIn(token="tok_visa", exp_month=12, exp_year=2030)  # noqa: S106
    for start in range(0, count, SEED_BATCH):
        with unit_of_work(engine) as session:
            for number in range(start, min(start + SEED_BATCH, count)):
                data = AccountCreate(
                    account_number=f"BENCH-{number:06d}",
                    phone=phones[number],
                    nickname=f"Bench {number}",
                    payment_method=card,
                )
                enrol_with_offer(session, data, context, balance_cents=SEED_BALANCE_CENTS,
                                 memo="bench", now=utcnow())  # fmt: skip
    engine.dispose()
    return phones


HISTORY_CALL_CENTS = 100  # a day's calls, in the seeded history
HISTORY_TEXTS_PER_WEEK = 2  # BALs a week, each with its answer
# The seeded history's texts carry this as their request id, so that `textpay_outcome` counts
# only the texts of the run (its entries are told apart by their `history:` references).
HISTORY_REQUEST_ID = "bench-history"


def seed_history(database_url: str, weeks: int) -> int:
    """Give every seeded account `weeks` of the past: a call each day, a $7.00 deposit each
    week that pays for them (the balance stays as seeded: the ledger still sums to it), and a
    BAL and its answer twice a week. None of it is in the last 24 hours, so the daily limit and
    the flood limit find nothing in it: what it measures is whether a text still costs the same
    once the tables hold years (their indexes). Returns the rows written."""
    from textpay.timeutil import utcnow  # noqa: PLC0415

    engine = create_engine(database_url)
    metadata = MetaData()
    ledger = Table("ledger_entry", metadata, autoload_with=engine)
    message = Table("message", metadata, autoload_with=engine)
    start = utcnow() - timedelta(days=7 * weeks + 2)
    with engine.connect() as connection:
        accounts = connection.execute(text("SELECT id, phone FROM account")).all()
    written = 0
    for first in range(0, len(accounts), 100):
        entries: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []
        for account_id, phone in accounts[first : first + 100]:
            for week in range(weeks):
                monday = start + timedelta(days=7 * week)
                entries += _history_week(account_id, week, monday)
                texts += _history_texts(account_id, phone, monday)
        with engine.begin() as connection:
            connection.execute(insert(ledger), entries)
            connection.execute(insert(message), texts)
        written += len(entries) + len(texts)
    engine.dispose()
    return written


def _history_week(account_id: int, week: int, monday: datetime) -> list[dict[str, Any]]:
    """A week's deposit and the seven days of calls it pays for."""
    deposit = 7 * HISTORY_CALL_CENTS
    rows = [
        {
            "account_id": account_id,
            "kind": "deposit",
            "amount_cents": deposit,
            "balance_after_cents": SEED_BALANCE_CENTS + deposit,
            "reference": f"history:{account_id}:{week}",
            "memo": "bench history",
            "created_at": monday,
        }
    ]
    for day in range(7):
        rows.append(
            {
                "account_id": account_id,
                "kind": "usage",
                "amount_cents": -HISTORY_CALL_CENTS,
                "balance_after_cents": SEED_BALANCE_CENTS
                + deposit
                - (day + 1) * HISTORY_CALL_CENTS,
                "reference": f"history:{account_id}:{week}:{day}",
                "memo": "bench history",
                "created_at": monday + timedelta(days=day, hours=12),
            }
        )
    return rows


def _history_texts(account_id: int, phone: str, monday: datetime) -> list[dict[str, Any]]:
    """A week's BALs and their answers."""
    rows = []
    for n in range(HISTORY_TEXTS_PER_WEEK):
        at = monday + timedelta(days=3 * n + 1, hours=18)
        for direction, body, status in (("inbound", "BAL", "received"),
                                        ("outbound", "Balance $3.10", "delivered")):  # fmt: skip
            rows.append(
                {
                    "direction": direction,
                    "phone": phone,
                    "account_id": account_id,
                    "body": body,
                    "kind": "reply",
                    "status": status,
                    "engine_initiated": False,
                    "attempts": 0,
                    "request_id": HISTORY_REQUEST_ID,
                    "created_at": at,
                    "updated_at": at,
                }
            )
    return rows


def textpay_outcome(database_url: str) -> dict[str, int]:
    """What TextPay wrote: inbound texts recorded, deposits posted, offers funded."""
    engine = create_engine(database_url)
    queries = {
        "texts": "SELECT count(*) FROM message WHERE direction = 'inbound' "
        f"AND (request_id IS NULL OR request_id <> '{HISTORY_REQUEST_ID}')",
        "deposits": "SELECT count(*) FROM ledger_entry WHERE kind = 'deposit' "
        "AND reference NOT LIKE 'history:%'",
        "funded": "SELECT count(*) FROM prompt WHERE status = 'funded'",
        "open_offers": "SELECT count(*) FROM prompt WHERE status = 'pending'",
    }
    with engine.connect() as connection:
        found = {
            name: int(connection.execute(text(sql)).scalar_one()) for name, sql in queries.items()
        }
    engine.dispose()
    return found


def floor_rows(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = int(connection.execute(select(func.count()).select_from(FLOOR_TABLE)).scalar_one())
    engine.dispose()
    return rows


# --------------------------------------------------------------------------------------------
# The requests: planned once per backend, signed per server (the URL includes the port).


@dataclass(frozen=True)
class Planned:
    kind: str  # "BAL", "YES" or "other"
    params: dict[str, str]


def twilio_params(sid: str, sender: str, body: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS, field for field."""
    return {
        "ToCountry": "US",
        "ToState": "NY",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "NEW YORK",
        "FromZip": "10001",
        "SmsSid": sid,
        "FromState": "NY",
        "SmsStatus": "received",
        "FromCity": "NEW YORK",
        "Body": body,
        "FromCountry": "US",
        "To": OUR_NUMBER,
        "ToZip": "10001",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "b" * 32,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def plan_requests(phones: Sequence[str], rng: random.Random) -> list[Planned]:
    """len(phones) / 20% requests: every phone sends exactly one YES, in a shuffled order;
    BAL and unknown words come from random seeded phones."""
    yes_count = len(phones)
    total = round(yes_count / YES_SHARE)
    bal_count = round(total * BAL_SHARE)
    kinds = ["YES"] * yes_count + ["BAL"] * bal_count + ["other"] * (total - yes_count - bal_count)
    rng.shuffle(kinds)
    yes_phones = iter(rng.sample(list(phones), len(phones)))
    plan = []
    for kind in kinds:
        if kind == "YES":
            sender, body = next(yes_phones), "YES"
        elif kind == "BAL":
            sender, body = rng.choice(phones), "BAL"
        else:
            sender, body = rng.choice(phones), rng.choice(UNKNOWN_WORDS)
        plan.append(Planned(kind, twilio_params(new_sid(), sender, body)))
    return plan


def plan_warmup(phones: Sequence[str], count: int, rng: random.Random) -> list[Planned]:
    """BAL and unknown words only: the warm-up must not use up any offer."""
    plan = []
    for _ in range(count):
        if rng.random() < BAL_SHARE / (1 - YES_SHARE):
            kind, body = "BAL", "BAL"
        else:
            kind, body = "other", rng.choice(UNKNOWN_WORDS)
        plan.append(Planned(kind, twilio_params(new_sid(), rng.choice(phones), body)))
    return plan


def write_signed(plan: Sequence[Planned], url: str, path: Path) -> None:
    """One request a line: kind, X-Twilio-Signature for `url`, form body (tab-separated)."""
    validator = RequestValidator(AUTH_TOKEN)
    with path.open("w") as out:
        for planned in plan:
            signature = validator.compute_signature(url, planned.params)
            body = urllib.parse.urlencode(planned.params)
            out.write(f"{planned.kind}\t{signature}\t{body}\n")


# --------------------------------------------------------------------------------------------
# Load generators.


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    statuses: dict[str, int]
    sent: dict[str, int]
    wrapped: int
    # (seconds into the run the request was sent, its latency in ms), with the Python loader.
    timeline: tuple[tuple[float, float], ...] = ()
    started_at: float = 0.0  # wall time the measured load began (the timeline's second 0)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def run_wrk(
    port: int, requests_file: Path, *, duration: int, connections: int, threads: int
) -> LoadResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    threads = max(1, min(threads, connections))
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "15s",
               "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}{PATH}", "--",
               str(requests_file), str(threads)]  # fmt: skip
    started_at = time.time()
    status, output = CHILDREN.run(command, timeout=duration + 60)
    line = next((x for x in output.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if status != 0 or line is None:
        raise RuntimeError(f"wrk failed ({status}):\n{output}")
    found = json.loads(line.removeprefix("BENCH_RESULT "))
    return LoadResult(
        requests=found["requests"],
        seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        socket_errors=sum(found[k] for k in ("connect_errors", "read_errors", "write_errors"))
        + found["timeouts"],
        statuses=found["statuses"],
        sent=found["sent"],
        wrapped=found["wrapped"],
        started_at=started_at,
    )


def _connection_loop(
    port: int, lines: list[str], start_at: float, deadline: float, out: dict[str, Any]
) -> None:
    """One keep-alive connection sending `lines` in order until the deadline."""
    latencies: list[float] = out["latencies"]
    sent_at: list[float] = out["sent_at"]
    statuses: Counter[str] = out["statuses"]
    sent: Counter[str] = out["sent"]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    index = 0
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < deadline:
        kind, signature, body = lines[index % len(lines)].split("\t", 2)
        out["wrapped"] += index > 0 and index % len(lines) == 0
        index += 1
        sent[kind] += 1
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        began = time.perf_counter()
        try:
            connection.request("POST", PATH, body, headers)
            answer = connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            out["socket_errors"] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            continue
        latencies.append((time.perf_counter() - began) * 1000)
        sent_at.append(time.time() - start_at - (latencies[-1] / 1000))
        statuses[str(answer.status)] += 1
    connection.close()


def _python_load_process(
    *,
    port: int,
    requests_file: str,
    connection_ids: list[int],
    connections: int,
    start_at: float,
    duration: float,
    results: Any,
) -> None:
    """A load process: one thread per connection; connection c sends lines c, c+N, c+2N, ..."""
    import threading  # noqa: PLC0415

    all_lines = Path(requests_file).read_text().splitlines()
    outs: list[dict[str, Any]] = []
    threads = []
    for connection_id in connection_ids:
        out: dict[str, Any] = {"latencies": [], "sent_at": [], "statuses": Counter(),
                               "sent": Counter(), "socket_errors": 0, "wrapped": 0}  # fmt: skip
        outs.append(out)
        lines = all_lines[connection_id::connections]
        thread = threading.Thread(
            target=_connection_loop,
            args=(port, lines, start_at, start_at + duration, out),
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    results.put(
        {
            "latencies": [x for out in outs for x in out["latencies"]],
            "sent_at": [x for out in outs for x in out["sent_at"]],
            "statuses": dict(sum((out["statuses"] for out in outs), Counter())),
            "sent": dict(sum((out["sent"] for out in outs), Counter())),
            "socket_errors": sum(out["socket_errors"] for out in outs),
            "wrapped": sum(out["wrapped"] for out in outs),
        }
    )


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_python_load(
    port: int, requests_file: Path, *, duration: float, connections: int, processes: int
) -> LoadResult:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = max(1, min(processes, connections))
    start_at = time.time() + 3  # spawned interpreters need a moment to import
    workers = []
    for number in range(processes):
        ids = list(range(number, connections, processes))
        worker = context.Process(
            target=_python_load_process,
            kwargs={
                "port": port,
                "requests_file": str(requests_file),
                "connection_ids": ids,
                "connections": connections,
                "start_at": start_at,
                "duration": duration,
                "results": results,
            },
        )
        worker.start()
        CHILDREN.workers.append(worker)
        workers.append(worker)
    parts = [results.get(timeout=duration + 60) for _ in workers]
    for worker in workers:
        worker.join(10)
        CHILDREN.workers.remove(worker)
    latencies = [x for part in parts for x in part["latencies"]]
    statuses: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for part in parts:
        statuses.update(part["statuses"])
        sent.update(part["sent"])
    return LoadResult(
        requests=len(latencies),
        seconds=duration,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        socket_errors=sum(part["socket_errors"] for part in parts),
        statuses=dict(statuses),
        sent=dict(sent),
        wrapped=sum(part["wrapped"] for part in parts),
        timeline=tuple(zip((x for part in parts for x in part["sent_at"]), latencies, strict=True)),
        started_at=start_at,
    )


# --------------------------------------------------------------------------------------------
# One server under load.


@dataclass(frozen=True)
class ServerSpec:
    name: str
    app: str
    textpay: bool


@dataclass
class Measured:
    spec: ServerSpec
    load: LoadResult
    cpu_ms_per_request: float
    db_cpu_ms_per_request: float | None
    recycled_workers: int
    log: Path
    worker_ms: list[int]  # time in the worker per request, from gunicorn's access log
    disk: DiskSamples | None  # the disk's fdatasyncs during the measured load (--no-disk-probe)


SERVERS = (
    ServerSpec("TextPay", "wsgi:app", textpay=True),
    ServerSpec("framework floor", "bench.webhook:floor_app()", textpay=False),
    ServerSpec("persistence floor", "bench.webhook:persistence_app()", textpay=False),
)


def measure(
    spec: ServerSpec,
    *,
    backend: Backend,
    plan: Sequence[Planned],
    warmup: Sequence[Planned],
    args: argparse.Namespace,
    workdir: Path,
) -> Measured:
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    slug = spec.name.replace(" ", "-").lower()
    requests_file, warmup_file = workdir / f"{slug}.tsv", workdir / f"{slug}-warmup.tsv"
    write_signed(plan, url, requests_file)
    write_signed(warmup, url, warmup_file)
    if spec.textpay:
        env = textpay_env(backend.textpay_url, port)
    else:
        # DATABASE_URL too, only so that gunicorn.conf.py picks the same worker count for the
        # floors as for TextPay on this database (the floors read FLOOR_DATABASE_ENV).
        env = server_env({FLOOR_DATABASE_ENV: backend.floor_url, "DATABASE_URL": backend.floor_url})
    log = workdir / f"{backend.kind}-{slug}.log"
    command = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py",
               "--bind", f"127.0.0.1:{port}", *gunicorn_overrides(args), spec.app]  # fmt: skip
    with log.open("w") as log_file:
        server = CHILDREN.start(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)
    try:
        wait_until_serving(port, server, log)
        load = run_load(args, port, warmup_file, duration=args.warmup)
        log_offset = log.stat().st_size
        server_cpu = group_cpu_seconds(server.pid)
        db_before = pg_backend_ticks() if backend.kind == "postgresql" else None
        with contextlib.ExitStack() as stack:
            probe = _start_probe(stack, workdir) if args.disk_probe else None
            load = run_load(args, port, requests_file, duration=args.duration)
        server_cpu = group_cpu_seconds(server.pid) - server_cpu
        db_cpu = None if db_before is None else pg_cpu_seconds_since(db_before)
    finally:
        CHILDREN.stop(server)
    done = max(load.requests, 1)
    return Measured(
        spec=spec,
        load=load,
        cpu_ms_per_request=server_cpu * 1000 / done,
        db_cpu_ms_per_request=None if db_cpu is None else db_cpu * 1000 / done,
        recycled_workers=log.read_text().count("Autorestarting worker"),
        log=log,
        worker_ms=worker_times(log, log_offset),
        disk=None
        if probe is None
        else probe.result().within(load.started_at, load.started_at + load.seconds),
    )


def _start_probe(stack: contextlib.ExitStack, workdir: Path) -> DiskProbe | None:
    """The disk probe for one run, or None (said) when it cannot write: the run goes on."""
    try:
        return stack.enter_context(DiskProbe(workdir))
    except OSError as error:
        print(f"  (no disk probe for this run: {error})")
        return None


# gunicorn.conf.py's access log line ends with the request's time in the worker: ` 200 189 9ms`.
ACCESS_LINE = re.compile(rf'"POST {PATH}" \d{{3}} \S+ (\d+)ms$')


def worker_times(log: Path, offset: int) -> list[int]:
    """Milliseconds each request spent in a worker during the measurement (not in the queue)."""
    with log.open() as lines:
        lines.seek(offset)
        found = (ACCESS_LINE.search(line.rstrip()) for line in lines)
        return [int(match.group(1)) for match in found if match]


def run_load(args: argparse.Namespace, port: int, file: Path, *, duration: int) -> LoadResult:
    if args.loader == "wrk":
        return run_wrk(port, file, duration=duration, connections=args.connections,
                       threads=args.load_threads)  # fmt: skip
    return run_python_load(port, file, duration=duration, connections=args.connections,
                           processes=args.load_threads)  # fmt: skip


def gunicorn_overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if hasattr(gunicorn_config, "ControlSocketDisable"):
        # gunicorn >= 25.1 opens one control socket per user ($HOME/.gunicorn/gunicorn.ctl):
        # these short-lived servers must not take it over from a gunicorn someone else runs.
        extra.append("--no-control-socket")
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    if args.worker_class is not None:
        extra += ["--worker-class", args.worker_class]
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    return extra + list(args.gunicorn_arg)


# --------------------------------------------------------------------------------------------
# Reporting.


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0))
    return (
        f"{cpus} CPUs (nproc), {model}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def cores_busy(seconds: float = 1.0) -> float:
    """How many CPUs the rest of the machine kept busy over `seconds` (we are idle meanwhile)."""

    def sample() -> tuple[int, int, int]:
        lines = Path("/proc/stat").read_text().splitlines()
        values = [int(x) for x in lines[0].split()[1:8]]  # user nice system idle iowait irq soft
        cpus = sum(1 for line in lines if re.match(r"cpu\d", line))
        return sum(values) - values[3] - values[4], sum(values), cpus

    busy_before, total_before, cpus = sample()
    time.sleep(seconds)
    busy_after, total_after, _ = sample()
    return cpus * (busy_after - busy_before) / max(total_after - total_before, 1)


def database_version(backend: Backend) -> str:
    if backend.kind == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(backend.textpay_url)
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return f"PostgreSQL {version}"


def gunicorn_description(args: argparse.Namespace) -> str:
    workers = args.workers or os.environ.get("WEB_CONCURRENCY") or "as gunicorn.conf.py picks"
    worker_class = args.worker_class or "sync"
    described = f"gunicorn --config gunicorn.conf.py: {workers} {worker_class} workers"
    if args.threads is not None:
        described += f" x {args.threads} threads"
    if args.gunicorn_arg:
        described += " " + shlex.join(args.gunicorn_arg)
    return described


def _ms(values: Sequence[int], share: float) -> str:
    return f"{percentile(values, share):.0f}" if values else "-"


def print_backend(backend: Backend, results: list[Measured], outcome: dict[str, int]) -> None:
    by_name = {m.spec.name: m for m in results}
    textpay, floor, persistence = (by_name[s.name] for s in SERVERS)
    db_column = backend.kind == "postgresql"
    header = (
        f"{'server':<19}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'worker p50':>12}{'worker p99':>12}{'CPU ms/req':>12}"
        + (f"{'db CPU ms/req':>15}" if db_column else "")
    )
    print(header)
    print("-" * len(header))
    for m in results:
        load = m.load
        row = (
            f"{m.spec.name:<19}{load.requests:>9}{load.per_second:>8.0f}{load.p50_ms:>8.1f}"
            f"{load.p99_ms:>8.1f}{load.errors:>7}{_ms(m.worker_ms, 0.5):>12}"
            f"{_ms(m.worker_ms, 0.99):>12}{m.cpu_ms_per_request:>12.2f}"
        )
        if db_column and m.db_cpu_ms_per_request is not None:
            row += f"{m.db_cpu_ms_per_request:>15.2f}"
        print(row)
    print(
        "(p50/p99: latency the load generator saw, queueing for a free worker included; worker "
        "p50/p99:\n time inside a gunicorn worker, from its access log; CPU ms/req: CPU time of "
        "the gunicorn\n processes"
        + (" and of PostgreSQL's backends" if db_column else "")
        + " per request)"
    )
    # Whether the probe's directory (the run's, as every server's log) is on the database's disk.
    on_its_disk = same_filesystem(textpay.log.parent, backend.log_directory)
    print_disk(backend, results, on_its_disk)
    print()
    share_framework = textpay.load.per_second / max(floor.load.per_second, 1e-9)
    share_persistence = textpay.load.per_second / max(persistence.load.per_second, 1e-9)
    print(f"TextPay / framework floor:   {share_framework:.2f} of its requests/s")
    print(f"TextPay / persistence floor: {share_persistence:.2f} of its requests/s")

    sent = textpay.load.sent
    print(
        f"TextPay was sent {sent.get('BAL', 0)} BAL, {sent.get('YES', 0)} YES, "
        f"{sent.get('other', 0)} other; in its database (warm-up included): "
        f"{outcome['texts']} inbound texts, {outcome['deposits']} deposits, "
        f"{outcome['funded']} funded offers, {outcome['open_offers']} offers still open"
    )
    for m in results:
        if m.load.errors:
            print(
                f"  {m.spec.name}: statuses {m.load.statuses}, socket errors "
                f"{m.load.socket_errors}; log {m.log}"
            )
        if m.recycled_workers:
            print(
                f"  {m.spec.name}: gunicorn recycled {m.recycled_workers} workers (max_requests "
                "in gunicorn.conf.py); --gunicorn-arg=--max-requests=0 turns that off"
            )
    if floor.load.wrapped or persistence.load.wrapped:
        print(
            "  the floors went through the pre-signed requests more than once: harmless, they "
            "do not look\n  MessageSids up"
        )
    if textpay.load.wrapped:
        print(
            "  WARNING: TextPay used up the pre-signed requests and replayed some MessageSids "
            "(cheap replays); raise --accounts"
        )

    checks = [
        (
            f"TextPay >= {TARGET_FLOOR_SHARE:.0%} of the persistence floor's requests/s",
            f"{share_persistence:.0%}",
            share_persistence >= TARGET_FLOOR_SHARE,
        ),
        (
            f"TextPay p99 < {TARGET_P99_MS:.0f} ms",
            f"{textpay.load.p99_ms:.1f} ms",
            textpay.load.p99_ms < TARGET_P99_MS,
        ),
        ("TextPay errors = 0", str(textpay.load.errors), textpay.load.errors == 0),
    ]
    print("Targets:")
    for label, value, met in checks:
        print(f"  {label:<54} {value:>9}  {'met' if met else 'MISSED'}")
    p99_missed = textpay.load.p99_ms >= TARGET_P99_MS
    disk = textpay.disk
    if p99_missed and on_its_disk is not False and disk is not None and disk.stalls():
        print(
            f"  (the disk took up to {disk.worst_ms:.0f} ms to make a write durable during "
            "TextPay's run, and every\n  commit that waits for the disk waited with it: see "
            "'The disk during each run')"
        )


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook",
        description="TextPay's inbound-SMS webhook against a framework floor and a "
        "persistence floor, under the same gunicorn.",
    )
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"],
                        help="backend to measure (repeat for both; default sqlite)")  # fmt: skip
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per server")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--accounts", type=int, default=3000,
                        help="accounts seeded, one YES each (requests: 5 per account)")  # fmt: skip
    parser.add_argument("--history", type=int, default=0, metavar="WEEKS",
                        help="weeks of past calls, deposits, texts per account")  # fmt: skip
    parser.add_argument("--workers", type=int, help="gunicorn --workers for all three servers")
    parser.add_argument("--worker-class", choices=["sync", "gthread"],
                        help="gunicorn --worker-class for all three servers")  # fmt: skip
    parser.add_argument("--threads", type=int, help="gunicorn --threads (for gthread)")
    parser.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                        help="any other gunicorn argument, for all three (repeatable), "
                        "e.g. --gunicorn-arg=--max-requests=0")  # fmt: skip
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator (auto: wrk when installed)")  # fmt: skip
    parser.add_argument("--load-threads", type=int, default=2,
                        help="wrk threads, or Python load processes")  # fmt: skip
    parser.add_argument("--timeline", action="store_true",
                        help="with --loader python: each second of every run, and how many of "
                        "the run's slowest 1%% fell in it")  # fmt: skip
    parser.add_argument("--no-disk-probe", dest="disk_probe", action="store_false",
                        help="do not sample the disk's fdatasync during each run "
                        "(bench/disk.py)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="random seed for the request mix")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 1 or args.connections < 1 or args.accounts < 10:
        parser.error("--duration, --warmup and --connections must be >= 1, --accounts >= 10")
    args.database = list(dict.fromkeys(args.database or ["sqlite"]))
    if args.loader == "auto":
        args.loader = "wrk" if shutil.which("wrk") else "python"
        if args.loader == "python":
            print(
                "wrk is not installed (apt-get install -y wrk, or brew install wrk): using the "
                "slower Python load generator, which competes harder with the servers for CPU\n"
            )
    elif args.loader == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed: apt-get install -y wrk (or --loader python)")
    if args.timeline and args.loader != "python":
        parser.error("--timeline needs --loader python (wrk keeps no request's own time)")
    return args


def run_backend(kind: str, args: argparse.Namespace, workdir: Path) -> bool:
    """Measure the three servers on one backend; True when any of them saw errors."""
    backend = prepare_backend(kind, workdir)
    status, output = CHILDREN.run(
        [str(BIN / "textpay"), "init-db"], cwd=ROOT, env=textpay_env(backend.textpay_url),
        timeout=120,
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"textpay init-db failed:\n{output}")
    began = time.monotonic()
    phones = seed_textpay(backend.textpay_url, args.accounts)
    history = seed_history(backend.textpay_url, args.history) if args.history else 0
    seeded_in = time.monotonic() - began
    create_floor_table(backend.floor_url)
    rng = random.Random(args.seed)  # noqa: S311  (a benchmark's mix, not a secret)
    plan = plan_requests(phones, rng)
    warmup = plan_warmup(phones, 3000, rng)

    print(
        f"== {kind}: {database_version(backend)}; {args.accounts} accounts seeded in "
        f"{seeded_in:.1f} s{_history_note(args.history, history)}; {len(plan)} pre-signed "
        "requests per server"
    )
    busy = cores_busy()
    if busy > 0.25:
        print(
            f"WARNING: {busy:.1f} CPUs were busy with other work just before the measurement: "
            "the numbers will show it"
        )
    results = [
        measure(spec, backend=backend, plan=plan, warmup=warmup, args=args, workdir=workdir)
        for spec in SERVERS
    ]
    print_backend(backend, results, textpay_outcome(backend.textpay_url))
    print(f"  (the persistence floor's table holds {floor_rows(backend.floor_url)} rows)\n")
    if args.timeline:
        for measured in results:
            print_timeline(measured)
    return any(m.load.errors for m in results)


def print_disk(backend: Backend, results: list[Measured], on_its_disk: bool | None) -> None:
    """What `bench.disk.DiskProbe` saw during each server's measured load; `on_its_disk`:
    whether it probed the filesystem of the database's log (None: not known)."""
    probed = [m for m in results if m.disk is not None]
    if not probed:
        return
    directory = probed[0].log.parent
    where = {
        True: "the filesystem of the database's log",
        False: f"NOT the filesystem of the database's log, {backend.log_directory}: not its disk",
        None: "the database's own disk not known",
    }[on_its_disk]
    print(
        f"The disk during each run (4 KB written and fdatasync'd every 20 ms in {directory}, "
        f"{where}):"
    )
    for m in probed:
        assert m.disk is not None
        print(f"  {m.spec.name:<19}{m.disk.summary()}")


def print_timeline(measured: Measured) -> None:
    """Each second of a run: requests sent, their median and slowest latency, how many of the
    run's slowest 1% were among them, and (with the disk probe) the longest `fdatasync` under
    way while they were in flight. Slow requests bunched in one second point at an event (a
    worker's start, the disk, another process); spread evenly, at the queue itself."""
    load, disk = measured.load, measured.disk
    print(f"{measured.spec.name}, second by second (the run's p99: {load.p99_ms:.1f} ms)")
    print(f"{'second':>8}{'requests':>10}{'p50 ms':>8}{'max ms':>8}{'over p99':>10}"
          + (f"{'disk ms':>9}" if disk is not None else ""))  # fmt: skip
    by_second: dict[int, list[float]] = defaultdict(list)
    for sent_at, latency in load.timeline:
        by_second[max(0, int(sent_at))].append(latency)
    for second in sorted(by_second):
        latencies = by_second[second]
        over = sum(latency > load.p99_ms for latency in latencies)
        row = (f"{second:>8}{len(latencies):>10}{percentile(latencies, 0.5):>8.1f}"
               f"{max(latencies):>8.1f}{over:>10}")  # fmt: skip
        if disk is not None:
            # While this second's requests were in flight: a stall that began after one was
            # sent held it back all the same.
            begins = load.started_at + second
            row += f"{disk.worst_between(begins, begins + 1 + max(latencies) / 1000):>9.1f}"
        print(row)
    print()


def _history_note(weeks: int, rows: int) -> str:
    return f" with {weeks} weeks of history each ({rows} rows)" if weeks else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    os.chdir(ROOT)
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    print(f"Machine: {machine()}")
    print(f"Command: {shlex.join(sys.orig_argv)}")
    print(f"Servers: {gunicorn_description(args)}, one at a time, bound to 127.0.0.1")
    print(
        f"Load: {describe_loader(args)}, {args.connections} connections, {args.duration:g} s "
        f"after {args.warmup:g} s of warm-up; 70% BAL, 20% YES (one per seeded phone), 10% "
        "unknown words; every request signed, each with its own MessageSid"
        + ("; the disk timed meanwhile (bench/disk.py)" if args.disk_probe else "")
        + "\n"
    )
    errors = False
    try:
        for kind in args.database:
            errors |= run_backend(kind, args, workdir)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process this benchmark started", file=sys.stderr)
        return 130
    finally:
        CHILDREN.stop_all()
        if args.keep or errors:
            print(f"Server logs and signed request files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def describe_loader(args: argparse.Namespace) -> str:
    if args.loader == "wrk":
        _, output = CHILDREN.run([str(shutil.which("wrk")), "--version"], timeout=10)
        version = output.splitlines()[0].split(" [")[0] if output else "wrk"
        return f"{version} ({args.load_threads} threads, {LUA_SCRIPT.name})"
    return f"Python http.client ({args.load_threads} processes)"


if __name__ == "__main__":
    raise SystemExit(main())
