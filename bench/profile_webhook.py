"""Where a webhook's time goes inside one process: per-kind cost against the persistence floor,
and a profile summary.

`bench/webhook.py` measures the served numbers (gunicorn, 16 connections, a load generator in
another process); this runs the same signed requests, in the same mix, one at a time through
Flask's test client in this process: TextPay's `create_app`, then the persistence floor
(`bench.webhook.persistence_app`: parse, one INSERT and one SELECT). No sockets, no queueing, so
what is left is the work a worker does per request. It prints milliseconds per request by kind,
TextPay's cost as a multiple of the floor's, SQL statements per request by kind, and, with
`--profile`, pyinstrument's summary of where TextPay's time went (its own functions and the
libraries it calls, by share of the total).

    .venv/bin/python -m bench.profile_webhook --database sqlite --database postgresql
    .venv/bin/pip install pyinstrument && .venv/bin/python -m bench.profile_webhook --profile

PostgreSQL uses the benchmark's own database (`bench_webhook`, created afresh).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from twilio.request_validator import RequestValidator

from bench import webhook

URL = "http://localhost" + webhook.PATH


def create_textpay_schema(database_url: str) -> None:
    from textpay.db import create_schema, make_engine  # noqa: PLC0415

    schema_engine = make_engine(database_url)
    create_schema(schema_engine)
    schema_engine.dispose()


def textpay_app(database_url: str) -> tuple[Flask, Engine]:
    from textpay.config import Settings  # noqa: PLC0415
    from webhooks import create_app  # noqa: PLC0415

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_token=webhook.ADMIN_TOKEN,
        twilio_auth_token=webhook.AUTH_TOKEN,
    )
    app = create_app(settings)
    return app, app.extensions["textpay"].engine


def run(app: Flask, plan: Sequence[webhook.Planned]) -> dict[str, list[float]]:
    """Post each planned webhook, signed, and time it; by kind, in milliseconds."""
    client = app.test_client()
    validator = RequestValidator(webhook.AUTH_TOKEN)
    times: dict[str, list[float]] = defaultdict(list)
    for planned in plan:
        signature = validator.compute_signature(URL, planned.params)
        started = time.perf_counter()
        response = client.post(
            webhook.PATH, data=planned.params, headers={"X-Twilio-Signature": signature}
        )
        times[planned.kind].append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{planned.kind}: {response.status_code} {response.get_data()!r}")
    return times


def counting(engine: Engine) -> Callable[[], int]:
    """Statements sent through the engine. On SQLite the transaction's `BEGIN IMMEDIATE` is
    sent to the driver itself (`db._begin_immediate`, with its two `PRAGMA busy_timeout`
    around it), unseen by `before_cursor_execute`: it is counted once per transaction from the
    engine's `begin` event, as it was when it went through the engine."""
    seen = [0]

    def before(*_: Any) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", before)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "begin", before)
    return lambda: seen[0]


def statements_by_kind(app: Flask, engine: Engine, plan: Sequence[webhook.Planned]) -> str:
    """Statements a request of each kind runs (the first of each kind after the warm-up; the
    sandbox gateway's and transaction control included: what the database is sent)."""
    count = counting(engine)
    found: dict[str, int] = {}
    for planned in plan:
        if planned.kind in found:
            continue
        before = count()
        run(app, [planned])
        found[planned.kind] = count() - before
    return ", ".join(f"{kind} {n}" for kind, n in sorted(found.items()))


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    every = [t for values in times.values() for t in values]
    found = {kind: statistics.median(values) for kind, values in times.items()}
    found["all (mean)"] = statistics.fmean(every)
    return found


def measure(kind: str, accounts: int, history: int, profile: bool, workdir: Path) -> None:
    backend = webhook.prepare_backend(kind, workdir)
    create_textpay_schema(backend.textpay_url)
    phones = webhook.seed_textpay(backend.textpay_url, accounts)
    if history:
        webhook.seed_history(backend.textpay_url, history)
    rng = random.Random(1)  # noqa: S311  (the same mix every run, not a secret)
    warmup = webhook.plan_warmup(phones, 100, rng)
    plan = webhook.plan_requests(phones, rng)
    probe, plan = plan[:40], plan[40:]

    app, engine = textpay_app(backend.textpay_url)
    run(app, warmup)
    statements = statements_by_kind(app, engine, probe)
    profiler = None
    if profile:
        from pyinstrument import Profiler  # noqa: PLC0415  (only for --profile)

        profiler = Profiler(interval=0.0005)
        profiler.start()
    textpay = summary(run(app, plan))
    if profiler is not None:
        profiler.stop()
    engine.dispose()

    webhook.create_floor_table(backend.floor_url)
    os.environ[webhook.FLOOR_DATABASE_ENV] = backend.floor_url
    floor_app = webhook.persistence_app()
    run(floor_app, warmup)
    floor = summary(run(floor_app, plan))

    print(f"\n## {kind}: {len(plan)} requests one at a time, {accounts} accounts"
          f"{f' with {history} weeks of history' if history else ''}")  # fmt: skip
    print(f"statements per request: {statements}")
    print("| kind | TextPay ms (median) | persistence floor ms | TextPay / floor |")
    print("|---|---:|---:|---:|")
    for name in ("BAL", "YES", "other", "all (mean)"):
        print(f"| {name} | {textpay[name]:.2f} | {floor[name]:.2f} | "
              f"{textpay[name] / floor[name]:.1f}x |")  # fmt: skip
    if profiler is not None:
        print("\nwhere TextPay's time went (pyinstrument, share of the run):\n")
        print(profiler.output_text(unicode=False, color=False, show_all=False,
                                   short_mode=True)[:6000])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--history", type=int, default=0, metavar="WEEKS",
                        help="weeks of past calls, deposits and texts per account")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="pyinstrument's summary")
    args = parser.parse_args(argv)
    print(webhook.machine())
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as workdir:
        for kind in args.database or ["sqlite"]:
            measure(kind, args.accounts, args.history, args.profile, Path(workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
