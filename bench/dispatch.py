"""Outbox dispatch throughput into the local Twilio stand-in, against the bare Twilio client.

The stand-in (tests/standin/twilio.py, real HTTP on 127.0.0.1) answers from a process of its
own. In this process the baseline sends the same number of messages with TextPay's Twilio
sender, one at a time and without a database; then the dispatcher drains an outbox of that
many texts (claim, send, record; one transaction per outcome; several sends in flight). A
second run with a rate limit checks the pace. Run:

    .venv/bin/python -m bench.dispatch --database sqlite --database postgresql
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from scheduler import dispatch
from textpay.db import create_schema, is_postgresql, make_engine
from textpay.sms import TwilioSender
from textpay.timeutil import utcnow

TOKEN = "bench-auth-token"  # noqa: S105
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_engine(kind: str) -> Engine:
    if kind == "sqlite":
        return make_engine(f"sqlite:///{tempfile.mkdtemp(prefix='bench-dispatch-')}/d.db")
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bench_dispatch")
        connection.execute("CREATE DATABASE bench_dispatch")
    return make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/bench_dispatch")


def queue(engine: Engine, count: int) -> None:
    now = utcnow() if is_postgresql(engine) else utcnow().replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO message (direction, phone, body, kind, status, send_after, "
                "engine_initiated, attempts, created_at, updated_at) VALUES ('outbound', "
                ":phone, 'TextPay: added $25.00 to acct ...4821. New balance $28.10.', "
                "'receipt', 'pending', :now, :no, 0, :now, :now)"
            ),
            [{"phone": f"+1212555{n % 10000:04d}", "now": now, "no": False}
             for n in range(count)],
        )  # fmt: skip


def sender(standin: str) -> TwilioSender:
    return TwilioSender("AC" + "b" * 32, TOKEN, from_number="+12125550100", api_url=standin)


def start_standin() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standin.twilio", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN},
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def baseline(standin: str, count: int) -> float:
    twilio = sender(standin)
    started = time.perf_counter()
    for n in range(count):
        twilio.send(to=f"+1212555{n % 10000:04d}", body="x", status_callback=None)
    return count / (time.perf_counter() - started)


def drain(engine: Engine, standin: str, count: int, rate: float, workers: int) -> float:
    queue(engine, count)
    twilio, pacer = sender(standin), dispatch.Pacer(rate)
    started = time.perf_counter()
    sent = 0
    while sent < count:
        sent += dispatch.run(engine, twilio, pacer=pacer, batch=200, workers=workers).sent
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="the limit for the paced run")
    parser.add_argument("--workers", type=int, default=4, help="sends in flight at once")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    process, standin = start_standin()
    try:
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, "
              f"Python {platform.python_version()}")  # fmt: skip
        floor = baseline(standin, args.messages)
        print(f"baseline: the Twilio client alone, one at a time, no database: "
              f"{floor:,.0f} messages/s")  # fmt: skip
        for kind in args.database or ["sqlite", "postgresql"]:
            engine = fresh_engine(kind)
            create_schema(engine)
            free = drain(engine, standin, args.messages, 0, args.workers)
            paced_count = int(args.rate * 5)
            paced = drain(engine, standin, paced_count, args.rate, args.workers)
            engine.dispose()
            print(f"{kind}: unlimited {free:,.0f} messages/s ({free / floor:.0%} of baseline); "
                  f"limited to {args.rate:g}/s: {paced:.2f}/s "
                  f"({(paced - args.rate) / args.rate:+.1%})")  # fmt: skip
        print("targets: at least 200 messages/s unlimited; within 5% of the limit when set")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
