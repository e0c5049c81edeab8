"""How long the low-balance scan takes, against raw SQL doing the same selects and inserts.

Seeds N accounts (default 100,000 and 1,000,000) of which a share (default 1% and 5%) is below
the threshold, then times, in the same process and database:

- raw SQL: one SELECT of the eligible accounts through the partial index, and INSERT ... SELECT
  of their offers and outbox rows, in one transaction (the least any scan must do);
- the scan: `scheduler.scan.run`, offers and outbox rows committed, texts rendered.

and prints both, their ratio, and the time per eligible account.

Every account has a usual pace of calls (`textpay.runway`), and `runway_days` is on (default 5
days, `--runway-days 0` for off): a fifth of the eligible accounts are above the threshold but
short of runway, found through their own index (`ix_account_runway_scan`); every other account
has weeks of calls left, so the scan's cost still grows with the eligible accounts only. Run:

    .venv/bin/python -m bench.scan --database sqlite --database postgresql
    .venv/bin/python -m bench.scan --database postgresql --accounts 1000000 --eligible 0.05

PostgreSQL uses its own database `bench_scan` on 127.0.0.1 (created afresh each run).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from scheduler import scan
from textpay.db import create_schema, is_postgresql, make_engine, unit_of_work
from textpay.engine_config import EngineConfig
from textpay.localtime import place_of
from textpay.models import RUNWAY_SCANNABLE
from textpay.payments import SandboxGateway
from textpay.policy import get_global_settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scan"
# Area codes of real US numbers, so that time zones and state laws are looked up for real.
AREAS = ["212", "305", "203", "973", "410", "405", "601", "312", "303", "602", "415", "808",
         "617", "713", "206", "404", "702", "215", "313", "612"]  # fmt: skip
# A mid-afternoon moment in every US zone, so that no offer is held for quiet hours.
NOON = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


@dataclass
class Timing:
    accounts: int
    eligible: int
    raw_seconds: float
    scan_seconds: float
    prompted: int


def fresh_engine(kind: str) -> Engine:
    if kind == "sqlite":
        return make_engine(f"sqlite:///{tempfile.mkdtemp(prefix='bench-scan-')}/scan.db")
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bench_scan")
        connection.execute("CREATE DATABASE bench_scan")
    return make_engine(PG_URL)


# Every account's usual pace: $2.00 of calls a day (stored as cents per hours, as a usage
# posting leaves it). Healthy accounts ($50.00) have 25 days of calls left; runway-short ones
# ($6.00, above the $5.00 threshold) have 3 days, under `runway_days` whenever it is above 3.
PACE_CENTS, PACE_HOURS = 6000, 720
SHORT_BALANCE = 600
# A fifth of the eligible accounts are eligible by runway, the rest by the dollar threshold.
RUNWAY_SHARE = 5


def seed(engine: Engine, accounts: int, eligible: int, *, runway_days: int) -> None:
    """Accounts spread over real area codes; every `step`-th one is eligible: below the
    threshold, or (every `RUNWAY_SHARE`-th of those, when `runway_days` is on) short of runway.
    Bulk SQL: seeding is not what is measured."""
    step = accounts // eligible
    short = step * RUNWAY_SHARE if runway_days > 3 else 0
    postgres = is_postgresql(engine)
    line = (
        "lpad(((n / 20) % 10000)::text, 4, '0')"
        if postgres
        else "substr('0000' || ((n / 20) % 10000), -4, 4)"
    )
    places = [place_of(f"+1{area}5550100") for area in AREAS]
    areas = ", ".join(
        f"('{a}', {i}, '{state or ''}', '{','.join(zones)}')"
        for i, (a, (state, zones)) in enumerate(zip(AREAS, places, strict=True))
    )
    series = (
        "series(n) AS (SELECT generate_series(0, :last))"
        if postgres
        else "series(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM series WHERE n < :last)"
    )
    true, false = ("true", "false") if postgres else ("1", "0")
    now = NOON if postgres else NOON.replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"""
                INSERT INTO account (account_number, phone, phone_state, phone_zones, nickname,
                    language, textpay_enabled, autopay_enabled, status, opted_out,
                    balance_cents, balance_updated_at, episode_seq, episode_prompts,
                    autopay_failures, usage_pace_cents, usage_pace_hours, usage_pace_until,
                    created_at, updated_at)
                WITH RECURSIVE {series}, areas(area, i, state, zones) AS (VALUES {areas})
                SELECT 'B' || n, '+1' || area || '555' || {line}, NULLIF(state, ''), zones, '',
                    'en', {true}, {false}, 'active', {false},
                    CASE WHEN :short > 0 AND n % :short = 0 THEN :short_balance
                         WHEN n % :step = 0 THEN 300 ELSE 5000 END, :now, 0, 0, 0,
                    :pace_cents, :pace_hours, :pace_until, :now, :now
                FROM series JOIN areas ON i = n % 20
                """
            ),
            {"last": accounts - 1, "step": step, "now": now, "short": short,
             "short_balance": SHORT_BALANCE, "pace_cents": PACE_CENTS, "pace_hours": PACE_HOURS,
             "pace_until": now + timedelta(days=20)},
        )  # fmt: skip
        connection.execute(
            text(
                "INSERT INTO payment_method (account_id, token, brand, last4, created_at, "
                "updated_at) SELECT id, 'tok_visa', 'visa', '4242', :now, :now FROM account"
            ),
            {"now": now},
        )
        # Each balance is the sum of its ledger, as TextPay keeps it.
        connection.execute(
            text(
                "INSERT INTO ledger_entry (account_id, kind, amount_cents, balance_after_cents, "
                "reference, memo, created_at) SELECT id, 'credit', balance_cents, balance_cents, "
                "'credit:seed-' || id, '', :now FROM account"
            ),
            {"now": now},
        )
    if runway_days:
        with unit_of_work(engine) as session:
            get_global_settings(session).runway_days = runway_days
    if is_postgresql(engine):
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


RAW_SCAN = """
    INSERT INTO prompt (account_id, status, amount_cents, fee_cents, balance_at_offer_cents,
        expires_at, created_at, updated_at)
    SELECT id, 'pending', 2500, 0, balance_cents, :later, :now, :now FROM account
    WHERE balance_cents < 500 AND (textpay_enabled OR autopay_enabled) AND NOT opted_out
        AND status = 'active'
    UNION
    SELECT id, 'pending', 2500, 0, balance_cents, :later, :now, :now FROM account
    WHERE balance_cents * usage_pace_hours / usage_pace_cents < :hours AND {runway}
"""
RAW_OUTBOX = """
    INSERT INTO message (direction, phone, account_id, body, kind, status, send_after,
        engine_initiated, attempts, created_at, updated_at)
    SELECT 'outbound', a.phone, a.id, 'TextPay: acct ...' || a.account_number || ' offer',
        'prompt', 'pending', :now, {true}, 0, :now, :now
    FROM account a JOIN prompt p ON p.account_id = a.id
"""


def raw(engine: Engine, *, runway_days: int) -> float:
    """The same selects and inserts as plain SQL, rolled back after timing."""
    postgres = is_postgresql(engine)
    true = "true" if postgres else "1"
    now = NOON if postgres else NOON.replace(tzinfo=None)
    started = time.perf_counter()
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text(RAW_SCAN.format(runway=RUNWAY_SCANNABLE)),
                           {"now": now, "later": now, "hours": 24 * runway_days})  # fmt: skip
        connection.execute(text(RAW_OUTBOX.format(true=true)), {"now": now})
        elapsed = time.perf_counter() - started
        transaction.rollback()
    return elapsed


def measure(kind: str, accounts: int, share: float, *, runway_days: int = 0) -> Timing:
    engine = fresh_engine(kind)
    create_schema(engine)
    eligible = max(1, int(accounts * share))
    seed(engine, accounts, eligible, runway_days=runway_days)
    raw_seconds = raw(engine, runway_days=runway_days)
    started = time.perf_counter()
    result = scan.run(engine, SandboxGateway(engine), EngineConfig(), now=NOON)
    scan_seconds = time.perf_counter() - started
    engine.dispose()
    return Timing(accounts, eligible, raw_seconds, scan_seconds, result.prompted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--accounts", type=int, action="append")
    parser.add_argument("--eligible", type=float, action="append",
                        help="share of accounts eligible, per --accounts")  # fmt: skip
    parser.add_argument("--runway-days", type=int, default=5,
                        help="runway_days (0: off; above 3, a fifth of the eligible accounts "
                        "are eligible by runway only)")  # fmt: skip
    args = parser.parse_args()
    kinds = args.database or ["sqlite", "postgresql"]
    sizes = list(zip(args.accounts or [100_000, 1_000_000], args.eligible or [0.01, 0.05],
                     strict=True))  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"{'database':<11}{'accounts':>10}{'eligible':>10}{'raw SQL s':>11}{'scan s':>9}"
          f"{'ratio':>7}{'ms/eligible':>13}")  # fmt: skip
    for kind in kinds:
        for accounts, share in sizes:
            t = measure(kind, accounts, share, runway_days=args.runway_days)
            assert t.prompted == t.eligible, (t.prompted, t.eligible)
            print(f"{kind:<11}{t.accounts:>10,}{t.eligible:>10,}{t.raw_seconds:>11.2f}"
                  f"{t.scan_seconds:>9.2f}{t.scan_seconds / t.raw_seconds:>7.1f}"
                  f"{1000 * t.scan_seconds / t.eligible:>13.3f}", flush=True)  # fmt: skip
    print("targets: scan of 1,000,000 accounts with 5% eligible at most 3x raw SQL, under 10 s")


if __name__ == "__main__":
    main()
