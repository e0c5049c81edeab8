"""Real money through Stripe, over real processes: gunicorn and the clock charging cards with the
official `stripe` SDK over HTTP to the Stripe stand-in (a process of its own), which posts its
signed events back to gunicorn's `/stripe/webhook`; texts through the Twilio stand-in.

The story: four accounts enrolled with Stripe test cards through the admin API; the clock offers
three of them a top-up and charges the fourth by AutoPay; a YES on a good card is charged at once;
a card that stays `processing` is settled by Stripe's `payment_intent.succeeded` (credited once,
however often it comes) and the receipt is texted; a declined card gets its text; a card refund
goes to Stripe and its `charge.refunded` moves nothing more; a dispute on the AutoPay charge turns
AutoPay off with a text and blocks nothing; the ledger verifies. Then every line every process
wrote (gunicorn's access and error logs with the app's, the clock's, both stand-ins') is searched
for phone numbers, card numbers, the words of texts, tokens, and Stripe's payment method and
customer ids, keys and the webhook secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from tests.e2e.stack import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET, Stack, http, wait_for
from tests.e2e.test_logs import LEAKS, spelled
from tests.e2e.test_story import deposits, low_account
from textpay.db import make_engine
from textpay.models import Prompt

pytestmark = pytest.mark.e2e

VISA = ("4821", "(212) 555-0147", "Mom")
PROCESSING = ("7730", "(312) 555-0177", "Dad")
DECLINED = ("5566", "(305) 555-0123", "Abuela")
AUTOPAY = ("9100", "(415) 555-0199", "Tio")
NUMBERS = ("2125550147", "3125550177", "3055550123", "4155550199")

STRIPE_LEAKS = {
    **LEAKS,
    "a story number": re.compile("|".join(spelled(n) for n in NUMBERS)),
    "a Stripe payment method, customer, key or secret": re.compile(
        "pm_|cus_|sk_test_|sk_live_|whsec_"
    ),
    "the webhook secret": re.compile(re.escape(STRIPE_WEBHOOK_SECRET)),
    "the API key": re.compile(re.escape(STRIPE_API_KEY)),
    "the words of a text TextPay sent": re.compile(
        "Reply YES to add|Responda SI|New balance|disputed with your bank|was refunded to card"
    ),
}
# Deadlines for what crosses several processes (a scan, a webhook, a dispatch) on a busy machine.
SLOW = 120


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    running = Stack(database_url, stripe=True).up()
    yield running
    running.down()


def e164(phone: str) -> str:
    return "+1" + "".join(c for c in phone if c.isdigit())


def enrol(stack: Stack, who: tuple[str, str, str], card: str, **extra: Any) -> int:
    number, phone, nickname = who
    return low_account(stack, number, phone, nickname, payment_method={"token": card}, **extra)


def account(stack: Stack, account_id: int) -> dict[str, Any]:
    shown: dict[str, Any] = stack.admin("GET", f"/admin/accounts/{account_id}")
    return shown


def payment_intents(stack: Stack, account_id: int) -> list[dict[str, Any]]:
    """What Stripe holds for the account's customer, asked as anyone with the key would."""
    customer = account(stack, account_id)["payment_method"]["customer"]
    status, page = http("GET", f"{stack.stripe_standin}/v1/payment_intents?customer={customer}",
                        token=STRIPE_API_KEY)  # fmt: skip
    assert status == 200, page
    found: list[dict[str, Any]] = page["data"]
    return found


def stripe_control(stack: Stack, path: str, body: dict[str, Any]) -> Any:
    status, answer = http("POST", stack.stripe_standin + path, body, timeout=60)
    assert status == 200, (path, status, answer, stack.tail("stripe"), stack.tail("web"))
    return answer


def deliveries(stack: Stack, type_: str) -> list[dict[str, Any]]:
    listed = http("GET", stack.stripe_standin + "/_deliveries")[1]["deliveries"]
    return [d for d in listed if d["type"] == type_]


def told(stack: Stack, who: tuple[str, str, str], words: str) -> list[str]:
    return [m["Body"] for m in stack.outbound(e164(who[1])) if words in m["Body"]]


def acceptable_offers(stack: Stack, ids: list[int]) -> int:
    """How many of these accounts have an offer whose text TextPay recorded as sent."""
    engine = make_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(Prompt)
                    .where(
                        col(Prompt.acceptable_after).is_not(None), col(Prompt.account_id).in_(ids)
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def ledger(stack: Stack, account_id: int, kind: str) -> list[dict[str, Any]]:
    entries = stack.admin("GET", f"/admin/accounts/{account_id}/ledger")["entries"]
    return [e for e in entries if e["kind"] == kind]


def every_line(logs: Path) -> dict[str, list[str]]:
    found = {
        path.name: path.read_bytes().decode("utf-8", errors="replace").split("\n")
        for path in logs.iterdir()
    }
    assert sorted(found) == ["e2e-clock.log", "e2e-standin.log", "e2e-stripe.log", "e2e-web.log"]
    return found


def test_real_money_through_stripe_end_to_end(stack: Stack) -> None:
    visa = enrol(stack, VISA, "pm_card_visa")
    processing = enrol(stack, PROCESSING, "pm_card_processing")
    declined = enrol(stack, DECLINED, "pm_card_chargeDeclinedInsufficientFunds")
    autopay = enrol(stack, AUTOPAY, "pm_card_visa", autopay_enabled=True)
    # Each card was attached to a customer TextPay made, and described from Stripe.
    shown = account(stack, visa)["payment_method"]
    assert (shown["brand"], shown["last4"]) == ("visa", "4242")
    assert shown["customer"].startswith("cus_")

    # The clock offers the three, and charges the AutoPay account through Stripe on its own.
    wait_for(lambda: all(told(stack, who, "Reply YES") for who in (VISA, PROCESSING, DECLINED)),
             timeout=SLOW, what="the offers")  # fmt: skip
    # Twilio's stand-in has each text the moment it is asked to send it; the offer can be
    # accepted once the dispatcher has recorded it sent, a moment later.
    wait_for(lambda: acceptable_offers(stack, [visa, processing, declined]) == 3, timeout=SLOW,
             what="the offers recorded as sent")  # fmt: skip
    wait_for(lambda: told(stack, AUTOPAY, "AutoPay added $25.00 to acct ...9100"),
             timeout=SLOW, what="the AutoPay receipt")  # fmt: skip
    assert deposits(stack, autopay) == [2500]
    [autopay_intent] = payment_intents(stack, autopay)
    assert autopay_intent["status"] == "succeeded"
    assert autopay_intent["metadata"]["textpay_account"] == "9100"

    # A YES on the good card: charged at once, the receipt in the reply.
    receipt = stack.text(e164(VISA[1]), "YES")
    assert "added $25.00 to acct ...4821 (Mom). New balance $28.10" in receipt
    assert deposits(stack, visa) == [2500]

    # A YES on a card Stripe keeps processing: told so, nothing credited yet.
    assert "processing your payment of" in stack.text(e164(PROCESSING[1]), "YES")
    assert deposits(stack, processing) == []
    [pending] = payment_intents(stack, processing)
    assert pending["status"] == "processing"
    # Stripe finishes it and posts payment_intent.succeeded to gunicorn: credited once, and the
    # receipt goes out through the dispatcher and the Twilio stand-in.
    stripe_control(stack, "/_finish", {"payment_intent": pending["id"]})
    [succeeded] = wait_for(lambda: deliveries(stack, "payment_intent.succeeded"), timeout=SLOW,
                           what="payment_intent.succeeded delivered")  # fmt: skip
    assert succeeded["status"] == 200, stack.tail("web")
    wait_for(lambda: deposits(stack, processing) == [2500], timeout=SLOW, what="the credit")
    wait_for(lambda: told(stack, PROCESSING, "added $25.00 to acct ...7730"), timeout=SLOW,
             what="the receipt of the processed payment")  # fmt: skip
    # Stripe delivers the same event again (our answer was lost, say): nothing more moves.
    again = stripe_control(stack, "/_redeliver", {"event": succeeded["event_id"]})
    assert again["status"] == 200
    assert deposits(stack, processing) == [2500]
    assert account(stack, processing)["balance_cents"] == 2810

    # A YES on a card without the money: the decline's text, nothing credited.
    refusal = stack.text(e164(DECLINED[1]), "YES")
    assert "declined (insufficient funds)" in refusal
    assert "Nothing was charged" in refusal
    assert deposits(stack, declined) == []
    assert account(stack, declined)["balance_cents"] == 310

    # $10.00 of Mom's deposit back to her card: a Stripe Refund, a ledger debit, a text.
    [deposit] = ledger(stack, visa, "deposit")
    refund = stack.admin(
        "POST",
        f"/admin/accounts/{visa}/card-refunds",
        {"deposit_id": deposit["id"], "amount_cents": 1000, "reason": "family asked"},
        **{"Idempotency-Key": "e2e-refund-1"},
    )
    assert (refund["status"], refund["balance_cents"]) == ("succeeded", 1810)
    assert refund["refund_id"].startswith("re_")
    wait_for(lambda: told(stack, VISA, "$10.00 was refunded to card ...4242"), timeout=SLOW,
             what="the refund's text")  # fmt: skip
    # Stripe reports the refund back (charge.refunded, to gunicorn): nothing more moves.
    [reported] = wait_for(lambda: deliveries(stack, "charge.refunded"), timeout=SLOW,
                          what="charge.refunded delivered")  # fmt: skip
    assert reported["status"] == 200, stack.tail("web")
    assert [e["amount_cents"] for e in ledger(stack, visa, "card_refund")] == [-1000]
    assert account(stack, visa)["balance_cents"] == 1810

    # The AutoPay charge is disputed: AutoPay off with a text; nothing posted, nothing blocked.
    stripe_control(stack, "/_dispute", {"payment_intent": autopay_intent["id"]})
    [created] = wait_for(lambda: deliveries(stack, "charge.dispute.created"), timeout=SLOW,
                         what="charge.dispute.created delivered")  # fmt: skip
    assert created["status"] == 200, stack.tail("web")
    wait_for(lambda: not account(stack, autopay)["autopay_enabled"], timeout=SLOW,
             what="AutoPay off")  # fmt: skip
    wait_for(lambda: told(stack, AUTOPAY, "card ...4242 is disputed with your bank"),
             timeout=SLOW, what="the dispute's text")  # fmt: skip
    disputed = account(stack, autopay)
    assert [d["amount_cents"] for d in disputed["disputes"]] == [2500]
    assert (disputed["status"], disputed["balance_cents"]) == ("active", 2810)
    assert deposits(stack, autopay) == [2500]

    verified = stack.cli("verify-ledger")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ledger ok" in verified.stdout

    # Every line every process wrote, searched.
    wait_for(lambda: "scan:" in stack.log("clock"), what="the clock's report of a scan")
    stack.down()  # every process has written and closed its log
    lines = every_line(stack.logs)
    found = [
        (name, number, what, line)
        for name, file_lines in lines.items()
        for number, line in enumerate(file_lines, start=1)
        for what, pattern in STRIPE_LEAKS.items()
        if pattern.search(line)
    ]
    assert found == []
    # The search saw what it came for: Stripe's calls, its events at the webhook, the texts.
    assert any("/v1/payment_intents" in line for line in lines["e2e-stripe.log"])
    assert any("/v1/payment_methods/{id}/attach" in line for line in lines["e2e-stripe.log"])
    assert any("/v1/refunds" in line for line in lines["e2e-stripe.log"])
    assert sum("POST /stripe/webhook" in line for line in lines["e2e-web.log"]) >= 4
    assert any("Messages.json" in line for line in lines["e2e-standin.log"])
