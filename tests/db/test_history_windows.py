"""A text's facts count the number's inbound texts of the last minute (the flood limit) and sum
the account's deposits of the last day (the daily limit) exactly: a text sent at the very start
of the minute is out of it, a deposit posted at the very start of the day is in it, whatever
zone the moment is given in, and outbound texts, other numbers, other kinds of entry and other
accounts never count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from textpay import facts, funding
from textpay.db import unit_of_work
from textpay.models import Account, LedgerEntry, LedgerKind, Message, MessageDirection

PHONE, OTHER_PHONE = "+12125550147", "+12125550148"
NOW = datetime(2026, 11, 27, 12, 0, 0, 250_000, tzinfo=UTC)
MINUTE_AGO, DAY_AGO = NOW - timedelta(minutes=1), NOW - timedelta(days=1)
TICK = timedelta(microseconds=1)
NEW_YORK = timezone(timedelta(hours=-5))


def _seed(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        mine = Account(account_number="A1", phone=PHONE)
        other = Account(account_number="B1", phone=OTHER_PHONE)
        session.add_all([mine, other])
        session.flush()
        assert mine.id is not None
        assert other.id is not None
        texts = [
            (PHONE, MessageDirection.INBOUND, MINUTE_AGO),  # the minute's first instant: out
            (PHONE, MessageDirection.INBOUND, MINUTE_AGO + TICK),  # in
            (PHONE, MessageDirection.INBOUND, NOW),  # in
            (PHONE, MessageDirection.OUTBOUND, NOW),  # an answer: never counted
            (OTHER_PHONE, MessageDirection.INBOUND, NOW),  # another number
        ]
        for n, (phone, direction, at) in enumerate(texts):
            session.add(Message(direction=direction.value, phone=phone, status="received",
                                twilio_sid=f"SM{n}", created_at=at, updated_at=at))  # fmt: skip
        entries = [
            (mine.id, LedgerKind.DEPOSIT, 100, DAY_AGO - TICK),  # out
            (mine.id, LedgerKind.DEPOSIT, 200, DAY_AGO),  # the day's first instant: in
            (mine.id, LedgerKind.DEPOSIT, 400, NOW),  # in
            (mine.id, LedgerKind.CREDIT, 800, NOW),  # not a deposit
            (other.id, LedgerKind.DEPOSIT, 1600, NOW),  # another account
        ]
        for n, (account_id, kind, cents, at) in enumerate(entries):
            session.add(LedgerEntry(account_id=account_id, kind=kind.value, amount_cents=cents,
                                    balance_after_cents=0, reference=f"r{n}",
                                    created_at=at))  # fmt: skip
        return mine.id


@pytest.mark.parametrize("zone", [UTC, NEW_YORK])
def test_the_flood_count_and_the_daily_sum_have_exact_edges(engine: Engine, zone: Any) -> None:
    account_id = _seed(engine)
    query = facts._phone_query(with_deposits=True, with_sid=True, with_count=True)
    params = {"phone": PHONE, "sid": "SMnone", "inbound_since": MINUTE_AGO.astimezone(zone),
              "deposits_since": DAY_AGO.astimezone(zone)}  # fmt: skip
    with unit_of_work(engine) as session:
        row = session.exec(query, params=params).one()  # type: ignore[call-overload]
        recent, deposited = row[facts._PER_NUMBER + 2], facts._split(row)[3]
        alone = funding.deposited_since(session, account_id, DAY_AGO.astimezone(zone))
    assert recent == 2
    assert deposited == 600
    assert alone == 600
