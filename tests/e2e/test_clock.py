"""The clock process as deployed: `textpay clock` finds a low account and texts its owner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from textpay import ledger
from textpay.accounts import Enrolment, create_account
from textpay.db import make_engine, unit_of_work
from textpay.models import LedgerKind
from textpay.payments import SandboxGateway
from textpay.schemas import AccountCreate

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def daytime_zone() -> str:
    """A zone where it is mid-day now, so quiet hours do not hold the offer."""
    for zone in ("America/New_York", "Europe/London", "Asia/Tokyo", "Pacific/Honolulu",
                 "Asia/Kolkata", "America/Los_Angeles", "Pacific/Auckland"):  # fmt: skip
        if 10 <= datetime.now(UTC).astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    raise AssertionError("some zone always has daytime")


def test_the_clock_process_sends_an_offer(database_url: str) -> None:
    engine = make_engine(database_url)
    with unit_of_work(engine) as session:
        account = create_account(
            session,
            AccountCreate.model_validate(
                {"account_number": "CLOCK-4821", "phone": "(212) 555-0147", "nickname": "Mom",
                 "timezone": daytime_zone(), "payment_method": {"token": "tok_visa"}}
            ),
            Enrolment(actor="test", gateway=SandboxGateway(engine)),
        )  # fmt: skip
        assert account.id is not None
        ledger.post(session, account_id=account.id, kind=LedgerKind.CREDIT, amount_cents=310,
                    reference="credit:seed")  # fmt: skip
    engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTPAY_", "TWILIO_"))}
    env.update(DATABASE_URL=database_url, TEXTPAY_SMS_BACKEND="console", PYTHONUNBUFFERED="1")
    clock = subprocess.Popen(
        [str(BIN / "textpay"), "clock"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 45
        assert clock.stdout is not None
        os.set_blocking(clock.stdout.fileno(), False)
        while time.monotonic() < deadline:
            line = clock.stdout.readline()
            if line:
                lines.append(line)
                if "Reply YES to add $25.00" in line:
                    break
            elif clock.poll() is not None:
                break
            else:
                time.sleep(0.1)
    finally:
        clock.terminate()
        clock.wait(timeout=15)
    offer = [line for line in lines if "Reply YES" in line]
    assert offer, "".join(lines)
    assert "[sms to +1********47]" in offer[0]
    assert "acct ...4821 (Mom): balance $3.10" in offer[0]
