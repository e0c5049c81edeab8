"""A simulated week: 1,000 accounts across every US time zone and the stricter states, drained by
call charges, scanned every half hour, answering some offers by text.

Checked against tables written here, not against TextPay's own quiet-hours code: no
engine-initiated text goes out outside the recipient's allowed window, no number gets more than 3
in any 24 hours, nothing goes to a number after it said STOP, and each low-balance episode gets
exactly one offer (plus at most one reminder, after the cooldown).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from scheduler import dispatch, expire, scan
from tests.web.twilio_client import TwilioClient
from textpay import ledger
from textpay.accounts import Enrolment, create_account
from textpay.balances import record_usage
from textpay.db import unit_of_work
from textpay.models import Account, ConsentEvent, ConsentKind, LedgerEntry, LedgerKind, Message
from textpay.schemas import AccountCreate
from textpay.sms import RecordingSender
from textpay.timeutil import utcnow

# Area code → (zones its numbers may be in, sending window in local hours). Written from the
# public area-code maps and the state laws, independently of textpay.quiet_hours.
AREAS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "212": (("America/New_York",), (8, 21)),  # New York
    "305": (("America/New_York",), (8, 20)),  # Florida
    "203": (("America/New_York",), (9, 20)),  # Connecticut
    "973": (("America/New_York",), (8, 20)),  # New Jersey
    "410": (("America/New_York",), (8, 20)),  # Maryland
    "405": (("America/Chicago",), (8, 20)),  # Oklahoma
    "601": (("America/Chicago",), (8, 20)),  # Mississippi
    "312": (("America/Chicago",), (8, 21)),  # Illinois
    "303": (("America/Denver",), (8, 21)),  # Colorado
    "602": (("America/Phoenix",), (8, 21)),  # Arizona, no daylight saving
    "415": (("America/Los_Angeles",), (8, 21)),  # California
    "907": (("America/Anchorage", "America/Adak"), (8, 21)),  # Alaska, two zones
    "808": (("Pacific/Honolulu",), (8, 21)),  # Hawaii
    "605": (("America/Denver", "America/Chicago"), (8, 21)),  # South Dakota, two zones
}
START = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday, midnight in New York
STEP = timedelta(minutes=30)
STEPS = 7 * 48
THRESHOLD = 500
CAP = 3


def phone_of(index: int) -> str:
    area = list(AREAS)[index % len(AREAS)]
    return f"+1{area}555{100 + index // len(AREAS):04d}"


def enrol_everyone(app: Flask, engine: Engine, rng: random.Random) -> dict[int, str]:
    """1,000 accounts on 950 numbers; 10% on AutoPay; some with their own time zone."""
    gateway = app.extensions["textpay"].gateway
    kinds: dict[int, str] = {}
    with unit_of_work(engine) as session:
        for i in range(1000):
            phone = phone_of(i if i < 950 else i - 950)
            zones, _ = AREAS[phone[2:5]]
            autopay = i % 10 == 3
            account = create_account(
                session,
                AccountCreate.model_validate(
                    {
                        "account_number": f"SIM-{i:04d}",
                        "phone": phone,
                        "nickname": f"Contact {i}",
                        "language": "es" if i % 7 == 0 else "en",
                        "timezone": zones[0] if i % 25 == 0 else None,
                        "autopay_enabled": autopay,
                        "payment_method": {
                            "token": "tok_chargeDeclined" if i % 50 == 13 else "tok_visa"
                        },
                    }
                ),
                Enrolment(actor="simulation", gateway=gateway),
            )
            assert account.id is not None
            kinds[account.id] = "autopay" if autopay else "textpay"
            ledger.post(
                session,
                account_id=account.id,
                kind=LedgerKind.CREDIT,
                amount_cents=rng.randrange(300, 4000),
                reference=f"credit:sim-seed-{i}",
            )
    return kinds


def drain(engine: Engine, rng: random.Random, step: int) -> None:
    """About one call a day per account, of $2.50 to $9.00 (never beyond the balance)."""
    with unit_of_work(engine) as session:
        balances = session.exec(select(Account.id, Account.balance_cents)).all()
        for account_id, balance in balances:
            if rng.random() >= 1.2 / 48 or account_id is None:
                continue
            amount = min(rng.randrange(250, 900), balance)
            if amount > 0:
                record_usage(
                    session,
                    account_id=account_id,
                    amount_cents=amount,
                    reference=f"sim-{step}-{account_id}",
                )


def answer(twilio: TwilioClient, rng: random.Random, to: str, stopped: dict[str, datetime]) -> None:
    """What a subscriber does with an offer: often YES, sometimes NO or STOP, else nothing."""
    roll = rng.random()
    if roll < 0.5:
        reply = twilio.text(to, "YES")
        which = re.search(r"e\.g\. YES (\d{4})", reply)
        if which:
            twilio.text(to, f"YES {which.group(1)}")
    elif roll < 0.65:
        twilio.text(to, "NO")
    elif roll < 0.68:
        twilio.text(to, "STOP")
        stopped.setdefault(to, utcnow())


def window_allows(phone: str, timezone: str | None, moment: datetime) -> bool:
    zones, (start, end) = AREAS[phone[2:5]]
    for zone in (timezone,) if timezone else zones:
        local = moment.astimezone(ZoneInfo(zone))
        if not start <= local.hour < end:
            return False
    return True


@pytest.mark.slow
def test_a_simulated_week(app: Flask, engine: Engine) -> None:
    rng = random.Random(20261123)
    parts = app.extensions["textpay"]
    twilio = TwilioClient(app.test_client())
    sender = RecordingSender()
    stopped: dict[str, datetime] = {}
    scans: list[datetime] = []
    with freeze_time(START) as clock:
        kinds = enrol_everyone(app, engine, rng)
        for step in range(STEPS):
            drain(engine, rng, step)
            scan.run(parts.engine, parts.gateway, parts.engine_config)
            scans.append(utcnow())
            expire.run(engine)
            before = len(sender.sent)
            dispatch.run(engine, sender, pacer=dispatch.Pacer(0), batch=10_000)
            for to, body in sender.sent[before:]:
                if "Reply YES" in body or "Responda SI" in body:
                    answer(twilio, rng, to, stopped)
            clock.tick(STEP)

    with unit_of_work(engine) as session:
        accounts = {a.id: a for a in session.exec(select(Account))}
        sent = [
            m
            for m in session.exec(select(Message).where(Message.direction == "outbound"))
            if m.engine_initiated and m.sent_at is not None
        ]
        entries = list(session.exec(select(LedgerEntry).order_by(LedgerEntry.id)))  # type: ignore[arg-type]
        offers = list(
            session.exec(select(Message).where(Message.kind.in_(("prompt", "reminder"))))  # type: ignore[attr-defined]
        )
        assert ledger.verify(session) == []

    # Enough happened for the checks to mean something.
    assert len(sent) > 1000
    assert len({m.phone for m in sent}) > 500
    assert sum(1 for m in sent if m.kind == "autopay_receipt") > 50
    assert len(stopped) > 5

    # 1. Never outside the recipient's window.
    outside = [
        (m.phone, m.sent_at)
        for m in sent
        if m.sent_at and not window_allows(m.phone, accounts[m.account_id].timezone, m.sent_at)
    ]
    assert outside == []

    # 2. Never more than the cap per number in any 24 hours.
    times: dict[str, list[datetime]] = defaultdict(list)
    for m in sent:
        assert m.sent_at is not None
        times[m.phone].append(m.sent_at)
    for phone, moments in times.items():
        moments.sort()
        for i, first in enumerate(moments):
            within = [t for t in moments[i:] if t < first + timedelta(hours=24)]
            assert len(within) <= CAP, (phone, within)

    # 3. Nothing after STOP, until the number opts back in. (A YES from a stopped number
    #    re-subscribes it: a number with two accounts may STOP after one offer and answer YES
    #    to the other, sent in the same batch.)
    assert stops_while_opted_out(engine, sent) == []

    # 4. Exactly one offer per low-balance episode of each TextPay account that stayed
    #    reachable, and at most one reminder, after the cooldown.
    by_account: dict[int, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        by_account[entry.account_id].append(entry)
    offers_of: dict[int, list[Message]] = defaultdict(list)
    for offer in offers:
        assert offer.account_id is not None
        offers_of[offer.account_id].append(offer)
    checked = 0
    for account_id, kind in kinds.items():
        account = accounts[account_id]
        if kind != "textpay" or account.phone in stopped:
            continue
        for start, end in episodes(by_account[account_id]):
            inside = [o for o in offers_of[account_id] if start <= o.created_at < end]
            first_offers = [o for o in inside if o.kind == "prompt"]
            reminders = [o for o in inside if o.kind == "reminder"]
            if any(start <= s < end for s in scans):
                assert len(first_offers) == 1, (account_id, start, end, inside)
                checked += 1
            assert len(reminders) <= 1
            for reminder in reminders:
                assert reminder.created_at >= first_offers[0].created_at + timedelta(hours=72)
    assert checked > 300


def stops_while_opted_out(engine: Engine, sent: list[Message]) -> list[tuple[str, str]]:
    """(phone, kind) of every text TextPay sent on its own while its number was opted out, by
    the consent events recorded (STOP starts a stretch, START or YES ends it)."""
    with unit_of_work(engine) as session:
        events = session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all()
    stretches: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for event in events:
        held = stretches[event.phone]
        if event.kind == ConsentKind.OPT_OUT.value and (not held or held[-1][1] is not None):
            held.append((event.created_at, None))
        elif event.kind == ConsentKind.OPT_IN.value and held and held[-1][1] is None:
            held[-1] = (held[-1][0], event.created_at)
    return [
        (m.phone, m.kind)
        for m in sent
        if m.sent_at is not None
        and any(start < m.sent_at and (end is None or m.sent_at < end)
                for start, end in stretches[m.phone])
    ]  # fmt: skip


def episodes(entries: list[LedgerEntry]) -> list[tuple[datetime, datetime]]:
    """Stretches of time with the balance below the threshold."""
    found: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    for entry in entries:
        if entry.balance_after_cents < THRESHOLD and start is None:
            start = entry.created_at
        elif entry.balance_after_cents >= THRESHOLD and start is not None:
            found.append((start, entry.created_at))
            start = None
    if start is not None:
        found.append((start, datetime.max.replace(tzinfo=UTC)))
    return found
