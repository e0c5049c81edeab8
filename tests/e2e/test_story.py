"""The whole product as deployed: gunicorn, a clock process and the Twilio stand-in as real
processes, driven only over HTTP (admin API, signed webhooks from the stand-in) and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.stack import Stack, wait_for
from tests.e2e.test_clock import daytime_zone

pytestmark = pytest.mark.e2e

MOM_AND_DAD = "+12125550147"
ABUELA = "+13055550123"


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    running = Stack(database_url).up()
    yield running
    running.down()


def low_account(stack: Stack, number: str, phone: str, nickname: str, **extra: Any) -> int:
    """Enrol an account (in a zone where it is daytime now), fund it, and drain it by calls."""
    account = stack.admin("POST", "/admin/accounts", {
        "account_number": number, "phone": phone, "nickname": nickname,
        "timezone": daytime_zone(), "payment_method": {"token": "tok_visa"}, **extra,
    })  # fmt: skip
    account_id: int = account["id"]
    stack.admin("POST", f"/admin/accounts/{account_id}/credits",
                {"amount_cents": 3000, "reason": "first deposit"},
                **{"Idempotency-Key": f"start-{number}"})  # fmt: skip
    for n, cents in enumerate((1250, 1440)):
        stack.admin("POST", f"/admin/accounts/{account_id}/usage",
                    {"amount_cents": cents, "reference": f"call-{number}-{n}"})  # fmt: skip
    return account_id


def deposits(stack: Stack, account_id: int) -> list[int]:
    entries = stack.admin("GET", f"/admin/accounts/{account_id}/ledger")["entries"]
    return [e["amount_cents"] for e in entries if e["kind"] == "deposit"]


def test_the_story_end_to_end(stack: Stack) -> None:
    mom = low_account(stack, "4821", "(212) 555-0147", "Mom")
    dad = low_account(stack, "7730", "212.555.0147", "Dad")
    abuela = low_account(stack, "5566", "(305) 555-0123", "Abuela", language="es")

    # The clock finds them ($3.10 each) and texts the owners through the stand-in.
    offers = wait_for(lambda: len(stack.outbound()) >= 3 and stack.outbound(), what="offers")
    assert sorted(m["To"] for m in offers) == [MOM_AND_DAD, MOM_AND_DAD, ABUELA]
    assert all(m["StatusCallback"] == stack.web + "/twilio/status" for m in offers)
    assert any("Responda SI" in m["Body"] for m in stack.outbound(ABUELA))
    # The stand-in reports delivery; TextPay records it.
    wait_for(
        lambda: (
            all(
                m["status"] == "delivered"
                for m in stack.admin("GET", "/admin/messages?status=delivered")["messages"]
            )
            and len(stack.admin("GET", "/admin/messages?status=delivered")["messages"]) == 3
        ),
        what="delivery callbacks",
    )

    # Two offers on one phone: a bare YES asks which.
    assert "YES 4821" in stack.text(MOM_AND_DAD, "YES")
    receipt = stack.text(MOM_AND_DAD, "YES 4821")
    assert "added $25.00 to acct ...4821 (Mom). New balance $28.10" in receipt
    spanish = stack.text(ABUELA, "SI 40")
    assert "se agregaron $40.00 a la cuenta ...5566 (Abuela)" in spanish
    balance = stack.text(MOM_AND_DAD, "BAL")
    assert "acct ...4821 (Mom) $28.10" in balance
    assert "acct ...7730 (Dad) $3.10" in balance
    assert "unsubscribed" in stack.text(MOM_AND_DAD, "STOP")
    assert "subscribed" in stack.text(MOM_AND_DAD, "YES")  # an opt-in, not a payment

    # What each subscriber was told is what the ledgers hold.
    assert deposits(stack, mom) == [2500]
    assert deposits(stack, abuela) == [4000]
    assert deposits(stack, dad) == []
    shown = stack.admin("GET", f"/admin/accounts/{dad}")
    assert (shown["balance_cents"], shown["opted_out"], shown["pending_prompt"]) == (
        310,
        False,
        None,
    )
    verified = stack.cli("verify-ledger")
    assert verified.returncode == 0, verified.stdout
    assert "ledger ok" in verified.stdout
    # The access log holds no phone number, in any spelling (ports may contain 555).
    web_log = stack.log("web")
    for fragment in ("5550147", "5550123", "555-01", "555.01", "%2B1212", "%2B1305"):
        assert fragment not in web_log
