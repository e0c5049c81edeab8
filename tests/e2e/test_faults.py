"""Things going wrong while TextPay runs as deployed, each ending with the ledger invariant:
the web process killed mid-charge, the Twilio stand-in down, the clock killed mid-scan, and
PostgreSQL restarted under load."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from bench.scan import seed
from tests.e2e.stack import Stack, http, wait_for
from tests.e2e.test_story import low_account
from textpay.db import make_engine, unit_of_work
from textpay.models import Prompt, SandboxCharge
from textpay.timeutil import utcnow

pytestmark = pytest.mark.e2e

MOM = "+12125550147"


@pytest.fixture
def stack(database_url: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    extra = getattr(request, "param", {})
    running = Stack(database_url, extra_env=extra).up()
    yield running
    running.down()


def ledger_is_sound(stack: Stack) -> None:
    result = stack.cli("verify-ledger")
    assert result.returncode == 0, result.stdout


def deposits(stack: Stack, account_id: int) -> list[int]:
    entries = stack.admin("GET", f"/admin/accounts/{account_id}/ledger")["entries"]
    return [e["amount_cents"] for e in entries if e["kind"] == "deposit"]


def sandbox_charges(database_url: str) -> int:
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        found = int(session.exec(select(func.count()).select_from(SandboxCharge)).one())
    engine.dispose()
    return found


def offers_acceptable(database_url: str) -> int:
    """Offers the dispatcher has recorded as sent (only those can be accepted by a YES)."""
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        found = int(
            session.exec(
                select(func.count())
                .select_from(Prompt)
                .where(col(Prompt.acceptable_after).is_not(None))
            ).one()
        )
    engine.dispose()
    return found


def settles_at(database_url: str) -> datetime:
    """When the one sandbox charge completes on the processor's side."""
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        [charge] = session.exec(select(SandboxCharge)).all()
    engine.dispose()
    return charge.settles_at


@pytest.mark.parametrize("stack", [{"TEXTPAY_SANDBOX_SLOW_SECONDS": "6"}], indirect=True)
def test_web_killed_while_a_slow_card_is_charged(stack: Stack, database_url: str) -> None:
    account = low_account(stack, "4821", "(212) 555-0147", "Mom",
                          payment_method={"token": "tok_slow"})  # fmt: skip
    wait_for(lambda: stack.outbound(MOM), what="the offer")
    # Twilio has the offer before the dispatcher records it as sent, which is what makes a YES
    # able to accept it: stopping the clock in between left an offer no YES could take.
    wait_for(lambda: offers_acceptable(database_url) == 1, what="the offer recorded as sent")
    # The clock's reconciler (every minute) would race the one this test runs on a slow machine.
    stack.kill("clock", signal.SIGTERM)
    sid = "SM" + "d" * 32
    answers: list[Any] = []
    subscriber = threading.Thread(
        target=lambda: answers.append(
            http("POST", stack.standin + "/_inbound",
                 form={"From": MOM, "Body": "YES", "Sid": sid}, timeout=30)
        )
    )  # fmt: skip
    subscriber.start()
    # The sandbox records the charge as it starts it, then takes 6 s to answer: once the row is
    # there, the worker is inside the gateway call.
    wait_for(lambda: sandbox_charges(database_url) == 1, what="the worker to call the gateway")
    stack.kill("web")  # SIGKILL: no cleanup, no reply
    subscriber.join(timeout=60)
    assert answers
    assert answers[0][0] == 502, answers  # Twilio got no answer

    stack.start("web")  # ready: /healthz answers
    # The slow card settles on the processor's side meanwhile.
    time.sleep(max(0.0, (settles_at(database_url) - utcnow()).total_seconds()) + 0.5)
    # Twilio retries the same webhook: nothing is charged again.
    status, retried = http("POST", stack.standin + "/_inbound",
                           form={"From": MOM, "Body": "YES", "Sid": sid})  # fmt: skip
    assert status == 200, (retried, stack.tail("web"))
    assert "processing" in retried
    settled = stack.cli("reconcile", "--grace-seconds", "0")
    assert "settled 1" in settled.stdout, settled.stdout + settled.stderr
    stack.start("clock")  # its dispatcher sends the receipt

    # Exactly one deposit, matching the one charge the gateway made; the subscriber is told.
    assert sandbox_charges(database_url) == 1
    assert deposits(stack, account) == [2500]
    receipt = wait_for(
        lambda: [m for m in stack.outbound(MOM) if "New balance $28.10" in m["Body"]],
        what="the receipt",
    )
    assert len(receipt) == 1
    ledger_is_sound(stack)


def test_twilio_down_for_a_while(stack: Stack) -> None:
    stack.kill("standin")
    low_account(stack, "4821", "(212) 555-0147", "Mom")
    low_account(stack, "5566", "(305) 555-0123", "Abuela", language="es")
    # The clock makes the offers; the dispatcher cannot reach Twilio and keeps them.
    wait_for(lambda: any(m["attempts"] >= 1 for m in
                         stack.admin("GET", "/admin/messages?status=pending")["messages"]),
             what="a failed send attempt")  # fmt: skip
    time.sleep(2)
    stack.start("standin")
    delivered = wait_for(
        lambda: (
            len(stack.admin("GET", "/admin/messages?status=delivered")["messages"]) == 2
            and stack.admin("GET", "/admin/messages?status=delivered")["messages"]
        ),
        timeout=60,
        what="delivery once the stand-in is back",
    )
    assert sorted(m["To"] for m in stack.outbound()) == [MOM, "+13055550123"]  # once each
    # Duplicated and out-of-order callbacks change nothing.
    for message in delivered:
        http("POST", stack.standin + "/_callback", {
            "url": stack.web + "/twilio/status", "sid": message["twilio_sid"],
            "statuses": ["delivered", "sent", "queued", "delivered"],
        })  # fmt: skip
    statuses = {m["status"] for m in stack.admin("GET", "/admin/messages")["messages"]
                if m["direction"] == "outbound"}  # fmt: skip
    assert statuses == {"delivered"}
    ledger_is_sound(stack)


def seed_low_accounts(database_url: str, count: int) -> None:
    """Many low accounts at once, with bulk SQL (the benchmark's seeding)."""
    engine = make_engine(database_url)
    seed(engine, count, count, runway_days=0)  # low by the dollar threshold only
    engine.dispose()


def prompts_count(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        total = int(session.exec(select(func.count()).select_from(Prompt)).one())
        accounts = int(session.exec(select(func.count(func.distinct(Prompt.account_id)))).one())
    engine.dispose()
    return total, accounts


ACCOUNTS = 20_000


def test_clock_killed_mid_scan(database_url: str) -> None:
    stack = Stack(database_url)
    stack.cli("init-db")
    seed_low_accounts(database_url, ACCOUNTS)
    stack.start("standin")
    stack.start("web")
    try:
        stack.start("clock")
        wait_for(lambda: "scan started" in stack.log("clock"), what="the scan to start")
        time.sleep(1)  # it needs several seconds for 20,000 offers
        stack.kill("clock")
        assert "scan:" not in stack.log("clock")  # it died mid-scan...
        made, _ = prompts_count(database_url)
        assert made < ACCOUNTS  # ...leaving only whole batches done
        stack.start("clock")
        wait_for(lambda: prompts_count(database_url) == (ACCOUNTS, ACCOUNTS), timeout=120,
                 what="the next scan to finish the work")  # fmt: skip
        time.sleep(11)  # another scan runs: still one offer per account
        assert prompts_count(database_url) == (ACCOUNTS, ACCOUNTS)
    finally:
        stack.down()
    assert stack.cli("verify-ledger").returncode == 0


@pytest.mark.postgres_only
def test_postgresql_restarted_under_load(stack: Stack) -> None:
    if not shutil.which("pg_ctlcluster"):
        pytest.fail("pg_ctlcluster is needed to restart PostgreSQL")
    account = low_account(stack, "4821", "(212) 555-0147", "Mom")
    stack.admin("POST", f"/admin/accounts/{account}/credits",
                {"amount_cents": 100_000, "reason": "load"},
                **{"Idempotency-Key": "load"})  # fmt: skip
    acknowledged: list[str] = []
    slowest = [0.0]
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            reference = f"load-{n}"
            started = time.monotonic()
            status, _ = http("POST", f"{stack.web}/admin/accounts/{account}/usage",
                             {"amount_cents": 1, "reference": reference},
                             token="e2e-admin-token", timeout=15)  # fmt: skip
            slowest[0] = max(slowest[0], time.monotonic() - started)
            if status == 201:
                acknowledged.append(reference)
            time.sleep(0.02)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(2)
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "fast"], check=True, capture_output=True, timeout=60)  # fmt: skip
    time.sleep(3)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)

    assert slowest[0] < 12  # failed fast during the outage, never hung
    assert len(acknowledged) > 20
    # Service resumed without restarting TextPay, and nothing acknowledged was lost.
    assert wait_for(lambda: http("GET", stack.web + "/healthz")[0] == 200, what="recovery")
    entries = stack.admin("GET", f"/admin/accounts/{account}/ledger?limit=1000")["entries"]
    posted = {e["reference"] for e in entries}
    assert {f"usage:{r}" for r in acknowledged} <= posted
    ledger_is_sound(stack)
