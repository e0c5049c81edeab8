"""Two clock processes scanning at the same moment against one PostgreSQL: no duplicate offer,
no duplicate charge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.scheduler.test_scan import low
from tests.web.conftest import charges, deposits
from textpay.db import unit_of_work
from textpay.models import Message, PaymentAttempt, Prompt

ROOT = Path(__file__).resolve().parents[2]

# One clock's scan, started at an agreed instant so that both processes hit the database at once.
CLOCK = """
import json, sys, time
from scheduler import scan
from textpay.config import load_settings
from textpay.wiring import build
parts = build(load_settings())
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
result = scan.run(parts.db, parts.gateway, parts.engine_config)
print(json.dumps({**result.counts(), "leader": result.leader}))
"""


def count(engine: Engine, model: type) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


@pytest.mark.postgres_only
def test_two_clocks_scanning_at_once_neither_double_offer_nor_double_charge(
    admin: AdminClient, engine: Engine, database_url: str
) -> None:
    with freeze_time("2026-11-26 19:05:00"):  # enrolled in the afternoon, New York time
        for i in range(40):
            low(admin, account_number=f"TP-{i:03d}", phone=f"21255501{i:02d}")
            low(admin, account_number=f"AP-{i:03d}", phone=f"31255501{i:02d}",
                autopay_enabled=True, timezone="UTC")  # fmt: skip
    env = {**os.environ, "DATABASE_URL": database_url}
    start = time.time() + 4  # both processes imported and connected by then
    clocks = [
        subprocess.Popen(
            [sys.executable, "-c", CLOCK, str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for clock in clocks:
        out, err = clock.communicate(timeout=120)
        assert clock.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert sorted(r["leader"] for r in results) in ([False, True], [True, True])
    assert sum(r["prompted"] for r in results) == 40
    assert sum(r["autopay_charged"] for r in results) == 40
    assert count(engine, Prompt) == 40
    assert count(engine, PaymentAttempt) == 40
    assert charges(engine) == 40
    assert deposits(engine) == 40
    with unit_of_work(engine) as session:
        texts = session.exec(select(Message.account_id, Message.kind)).all()
    assert len(texts) == len(set(texts)) == 80
