"""The overview's numbers (`textpay.overview`), from rows seeded at known moments, on SQLite and
PostgreSQL: each row counted on its UTC day (also when the PostgreSQL session's zone is not
UTC), nothing outside the 30 days, declines by reason, conversion, and the outbox now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from textpay import overview
from textpay.models import (
    Account,
    ConsentEvent,
    Message,
    PaymentAttempt,
    Prompt,
)

NOW = datetime(2024, 6, 30, 15, 0, tzinfo=UTC)
_ids = count(1)


def at(day: int, hour: int = 12, minute: int = 0, month: int = 6) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def text_row(
    phone: str,
    *,
    kind: str = "prompt",
    status: str = "sent",
    sent_at: datetime | None = None,
    created_at: datetime | None = None,
    send_after: datetime | None = None,
    attempts: int = 0,
    engine_initiated: bool = True,
) -> Message:
    return Message(
        direction="outbound",
        phone=phone,
        kind=kind,
        status=status,
        sent_at=sent_at,
        send_after=send_after,
        attempts=attempts,
        engine_initiated=engine_initiated,
        created_at=created_at or sent_at or NOW,
    )


def offer(
    account_id: int,
    status: str,
    *,
    created: datetime,
    expires: datetime,
    updated: datetime | None = None,
) -> Prompt:
    return Prompt(
        account_id=account_id,
        status=status,
        amount_cents=2500,
        balance_at_offer_cents=100,
        expires_at=expires,
        created_at=created,
        updated_at=updated or created,
    )


def charge(
    account_id: int,
    *,
    status: str,
    created: datetime,
    settled: datetime | None,
    prompt_id: int | None = None,
    initiator: str = "customer",
    reason: str | None = None,
) -> PaymentAttempt:
    n = next(_ids)
    return PaymentAttempt(
        account_id=account_id,
        prompt_id=prompt_id,
        idempotency_key=f"key-{n}",
        initiator=initiator,
        status=status,
        amount_cents=2500,
        card_brand="visa",
        card_last4="4242",
        decline_reason=reason,
        confirmation=f"TP-{n:06d}",
        notify_phone="+12125550147",
        created_at=created,
        settled_at=settled,
    )


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        account = Account(account_number="A1", phone="+12125550147")
        session.add(account)
        session.flush()
        a = account.id
        assert a is not None
        session.add_all(
            [
                # June 29: two offers sent (one delivered, the second late in the UTC day), one
                # reminder; June 30: one offer sent; May 1: outside the window.
                text_row("+12125550101", status="delivered", sent_at=at(29, 9)),
                text_row("+12125550102", status="sent", sent_at=at(29, 23, 30)),
                text_row("+12125550103", kind="reminder", status="delivered", sent_at=at(29, 10)),
                text_row("+12125550104", status="delivered", sent_at=at(30, 8)),
                text_row("+12125550105", status="delivered", sent_at=at(1, 12, month=5)),
                text_row(
                    "+12125550106",
                    kind="receipt",
                    status="failed",
                    sent_at=at(30, 9),
                    engine_initiated=False,
                ),
            ]
        )
        funded = offer(a, "funded", created=at(29, 9), expires=at(30, 9))
        card_declined = offer(a, "failed", created=at(29, 9), expires=at(30, 9))
        said_no = offer(a, "declined", created=at(29, 9), expires=at(30, 9), updated=at(30, 1))
        lapsed = offer(a, "expired", created=at(29, 2), expires=at(30, 2), updated=at(30, 3))
        old = offer(a, "expired", created=at(1, 2, month=5), expires=at(2, 2, month=5))
        session.add_all([funded, card_declined, said_no, lapsed, old])
        session.flush()
        session.add_all(
            [
                charge(
                    a,
                    status="succeeded",
                    created=at(29, 10),
                    settled=at(29, 10, 1),
                    prompt_id=funded.id,
                ),
                charge(
                    a,
                    status="declined",
                    created=at(29, 11),
                    settled=at(29, 11, 1),
                    prompt_id=card_declined.id,
                    reason="insufficient_funds",
                ),
                charge(
                    a,
                    status="succeeded",
                    created=at(28, 6),
                    settled=at(28, 6, 1),
                    initiator="merchant",
                ),
                charge(
                    a,
                    status="declined",
                    created=at(28, 7),
                    settled=at(28, 7, 1),
                    initiator="merchant",
                    reason="expired_card",
                ),
                charge(
                    a,
                    status="declined",
                    created=at(27, 7),
                    settled=at(27, 7, 1),
                    initiator="merchant",
                    reason="expired_card",
                ),
                charge(a, status="pending", created=at(30, 14), settled=None, initiator="merchant"),
                ConsentEvent(
                    phone="+12125550101",
                    kind="opt_out",
                    words="STOP",
                    source="sms",
                    created_at=at(30, 11),
                ),
                ConsentEvent(
                    phone="+12125550101",
                    kind="opt_in",
                    words="START",
                    source="sms",
                    created_at=at(29, 11),
                ),
                ConsentEvent(
                    phone="+12125550101",
                    kind="autopay_on",
                    words="AUTOPAY ON",
                    source="sms",
                    created_at=at(29, 11),
                ),
            ]
        )
        # The outbox now. +…0150 has had its 3 capped texts today: its held text is the cap's.
        capped = "+12125550150"
        session.add_all(
            [
                text_row(
                    capped, kind="notice", status="delivered", sent_at=NOW - timedelta(hours=h)
                )
                for h in (1, 2, 3)
            ]
        )
        later = NOW + timedelta(hours=6)
        session.add_all(
            [
                text_row("+12125550151", status="pending", send_after=NOW - timedelta(minutes=1)),
                text_row(
                    "+12125550152",
                    kind="receipt",
                    status="pending",
                    send_after=None,
                    engine_initiated=False,
                ),
                text_row(capped, status="pending", send_after=later),
                text_row("+12125550153", status="pending", send_after=later),
                text_row("+12125550154", status="pending", send_after=later),
                text_row(
                    "+12125550155",
                    status="pending",
                    send_after=NOW + timedelta(seconds=8),
                    attempts=2,
                ),
                text_row("+12125550156", status="dispatching", created_at=NOW),
                text_row(
                    "+12125550157",
                    kind="notice",
                    status="unknown",
                    sent_at=NOW - timedelta(hours=30),
                ),
            ]
        )
        session.commit()


def on(found: overview.Overview, name: str, day: date) -> int:
    return found.series[name][found.days.index(day)]


def read(engine: Engine) -> overview.Overview:
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":  # a zone where 23:30 UTC is the same evening
            session.execute(text("SET TIME ZONE 'America/Los_Angeles'"))
        return overview.last_days(session, now=NOW)


def test_each_count_lands_on_its_utc_day_within_thirty_days(engine: Engine) -> None:
    seed(engine)
    with freeze_time(NOW):
        found = read(engine)
    d29, d30 = date(2024, 6, 29), date(2024, 6, 30)
    assert len(found.days) == 30
    assert found.days[0] == date(2024, 6, 1)
    assert found.days[-1] == d30
    expected: dict[str, dict[date, int]] = {
        "offers_sent": {d29: 2, d30: 1},
        "offers_delivered": {d29: 1, d30: 1},
        "reminders_sent": {d29: 1},
        "answered_yes": {d29: 2},
        "funded": {d29: 1},
        "card_declined": {d29: 1},
        "said_no": {d30: 1},
        "expired": {d30: 1},
        "autopay_charged": {date(2024, 6, 28): 1},
        "autopay_declined": {date(2024, 6, 27): 1, date(2024, 6, 28): 1},
        "opt_outs": {d30: 1},
        "opt_ins": {d29: 1},
    }
    for name in overview.SERIES:
        wanted = expected.get(name, {})
        got = {day: n for day, n in zip(found.days, found.series[name], strict=True) if n}
        assert got == wanted, name
    assert found.card_declines_by_reason == {
        "insufficient_funds": [1 if d == d29 else 0 for d in found.days]
    }
    assert sum(found.autopay_declines_by_reason["expired_card"]) == 2
    assert found.conversion[-2] == 0.5  # June 29: 1 funded of 2 offers sent
    assert found.conversion[-1] == 0.0
    assert found.conversion[0] is None  # no offer sent that day
    assert sum(found.texts_by_status["failed"]) == 1


def test_the_outbox_now_tells_the_cap_from_quiet_hours(engine: Engine) -> None:
    seed(engine)
    with freeze_time(NOW):
        found = read(engine)
    assert found.outbox == {
        "queued": 2,
        "sending": 1,
        "retrying": 1,
        "held_by_quiet_hours": 2,
        "held_by_cap": 1,
        "waiting": 0,
        "unknown": 1,
    }


def test_an_empty_database_gives_thirty_days_of_zeros(engine: Engine) -> None:
    with Session(engine) as session:
        found = overview.last_days(session, now=NOW)
    data: dict[str, Any] = found.as_json()
    assert len(data["days"]) == 30
    assert all(values == [0] * 30 for values in data["series"].values())
    assert data["conversion"] == [None] * 30
    assert set(data["outbox"].values()) == {0}
