"""The program's last 30 days at a glance, per UTC day, and the outbox as it is now: what the
console's overview page (and its chart) shows.

Each row is counted on the day of the moment that makes it count:

- `offers_sent`, `reminders_sent`: outbound texts of kind `prompt` / `reminder`, on the day they
  left (`sent_at`); `offers_delivered`: those of them Twilio reported `delivered` (or `read`).
- `answered_yes`: offers accepted, i.e. charges a YES started (`payment_attempt` rows with a
  `prompt_id`), on the day of the YES; `funded`, `card_declined` (by the gateway's decline
  reason) and `charge_failed`: how those charges settled, on the day they settled.
- `said_no`: offers the subscriber declined (prompt status `declined`), on the day of the NO;
  `expired`: offers nobody answered, on the day they lapsed (`expires_at`).
- `autopay_charged`, `autopay_declined` (by reason), `autopay_failed`: AutoPay's charges
  (`initiator = merchant`), on the day they settled.
- `opt_outs`, `opt_ins`: consent events (`consent_event`), on their day.
- texts by delivery status: every outbound text by the day it was written and its status now.
- `conversion`: funded / offers sent, per day (None on a day with no offer sent).

One query per kind of row, grouped by day in SQL (never one query per day), on SQLite and
PostgreSQL. Read-only: nothing here writes.

The outbox now (`outbox_now`), every outbound text still ours (not yet handed to Twilio, or
handed with no answer):

- `queued`: waiting and due now; `sending`: claimed by a dispatcher this moment;
- `retrying`: waiting after a failed try (its `attempts` > 0), for its backoff to pass;
- `held_by_cap` / `held_by_quiet_hours`: an engine-initiated text never tried, waiting for a
  later moment (`send_after` in the future). Both holds only move `send_after`, so the row does
  not say which: a held text counts as held by the cap when its number has already had at least
  the global `daily_message_cap` capped texts in the last 24 hours (the dispatcher's own count:
  sent, claimed or of unknown outcome), otherwise as held by quiet hours. A facility's or
  account's own cap is not consulted, so with overrides this split is an estimate;
- `waiting`: any other text with a future `send_after` (not engine-initiated);
- `unknown`: sent with no answer from Twilio, left for an operator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_, select
from sqlmodel import Session, col

from textpay import messages
from textpay.db import on_postgresql
from textpay.models import (
    AttemptStatus,
    ConsentEvent,
    ConsentKind,
    Message,
    MessageDirection,
    PaymentAttempt,
    Prompt,
    PromptStatus,
)
from textpay.payments.gateway import Initiator
from textpay.policy import get_global_settings

DAYS = 30
DELIVERED = ("delivered", "read")
# The daily series, in the order the page's table shows them.
SERIES = (
    "offers_sent",
    "offers_delivered",
    "reminders_sent",
    "answered_yes",
    "funded",
    "card_declined",
    "charge_failed",
    "said_no",
    "expired",
    "autopay_charged",
    "autopay_declined",
    "autopay_failed",
    "opt_outs",
    "opt_ins",
)
OUTBOX_STATES = (
    "queued",
    "sending",
    "retrying",
    "held_by_quiet_hours",
    "held_by_cap",
    "waiting",
    "unknown",
)
NO_REASON = "unknown"


@dataclass
class Overview:
    """The days (oldest first) and, per series, one count a day in the same order."""

    days: list[date]
    series: dict[str, list[int]]
    card_declines_by_reason: dict[str, list[int]]
    autopay_declines_by_reason: dict[str, list[int]]
    texts_by_status: dict[str, list[int]]
    outbox: dict[str, int] = field(default_factory=dict)
    generated_at: datetime | None = None

    @property
    def conversion(self) -> list[float | None]:
        return [
            round(funded / offered, 4) if offered else None
            for funded, offered in zip(
                self.series["funded"], self.series["offers_sent"], strict=True
            )
        ]

    def totals(self) -> dict[str, int]:
        return {name: sum(values) for name, values in self.series.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [day.isoformat() for day in self.days],
            "series": self.series,
            "conversion": self.conversion,
            "card_declines_by_reason": self.card_declines_by_reason,
            "autopay_declines_by_reason": self.autopay_declines_by_reason,
            "texts_by_status": self.texts_by_status,
            "outbox": self.outbox,
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
        }


def day_of(session: Session, column: Any) -> ColumnElement[str]:
    """`column`'s UTC day as 'YYYY-MM-DD', in SQL. SQLite stores UTC text; PostgreSQL's
    timestamptz is turned to UTC first, whatever the session's zone."""
    if on_postgresql(session):
        # Constants inlined, so that the GROUP BY repeats the SELECT's expression exactly.
        return func.to_char(
            func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'")
        )
    return func.date(column)


def last_days(session: Session, *, now: datetime, days: int = DAYS) -> Overview:
    """The `days` UTC days up to and including today's, and the outbox now."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)
    window = [first + timedelta(days=n) for n in range(days)]
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    card_reasons: dict[str, dict[str, int]] = defaultdict(dict)
    autopay_reasons: dict[str, dict[str, int]] = defaultdict(dict)
    statuses: dict[str, dict[str, int]] = defaultdict(dict)

    # Offer and reminder texts that left, and how many were delivered.
    sent_day = day_of(session, col(Message.sent_at))
    for day, kind, sent, delivered in session.execute(
        select(
            sent_day,
            col(Message.kind),
            func.count(),
            func.sum(case((col(Message.status).in_(DELIVERED), 1), else_=0)),
        )
        .where(
            col(Message.direction) == MessageDirection.OUTBOUND.value,
            col(Message.kind).in_(("prompt", "reminder")),
            col(Message.sent_at) >= start,
            col(Message.sent_at) < end,
        )
        .group_by(sent_day, col(Message.kind))
    ):
        if kind == "prompt":
            counts["offers_sent"][day] = int(sent)
            counts["offers_delivered"][day] = int(delivered or 0)
        else:
            counts["reminders_sent"][day] = int(sent)

    # YES: the charges offers started, on the day of the YES.
    yes_day = day_of(session, col(PaymentAttempt.created_at))
    for day, number in session.execute(
        select(yes_day, func.count())
        .where(
            col(PaymentAttempt.prompt_id).is_not(None),
            col(PaymentAttempt.created_at) >= start,
            col(PaymentAttempt.created_at) < end,
        )
        .group_by(yes_day)
    ):
        counts["answered_yes"][day] = int(number)

    # Every charge's outcome on the day it settled: offers' (a YES) and AutoPay's.
    settled_day = day_of(session, col(PaymentAttempt.settled_at))
    for day, initiator, status, reason, number, from_offers in session.execute(
        select(
            settled_day,
            col(PaymentAttempt.initiator),
            col(PaymentAttempt.status),
            col(PaymentAttempt.decline_reason),
            func.count(),
            func.count(col(PaymentAttempt.prompt_id)),
        )
        .where(
            col(PaymentAttempt.status) != AttemptStatus.PENDING.value,
            col(PaymentAttempt.settled_at) >= start,
            col(PaymentAttempt.settled_at) < end,
        )
        .group_by(
            settled_day,
            col(PaymentAttempt.initiator),
            col(PaymentAttempt.status),
            col(PaymentAttempt.decline_reason),
        )
    ):
        by_autopay = int(number) - int(from_offers) if initiator == Initiator.MERCHANT else 0
        for autopay, found in ((False, int(from_offers)), (True, by_autopay)):
            if found:
                reasons = autopay_reasons if autopay else card_reasons
                _count_outcome(
                    counts,
                    reasons,
                    day,
                    autopay=autopay,
                    status=status,
                    reason=reason,
                    number=found,
                )

    # NO, on the day it was said (the prompt's last change); lapsed offers, on their lapse.
    no_day = day_of(session, col(Prompt.updated_at))
    for day, number in session.execute(
        select(no_day, func.count())
        .where(
            col(Prompt.status) == PromptStatus.DECLINED.value,
            col(Prompt.updated_at) >= start,
            col(Prompt.updated_at) < end,
        )
        .group_by(no_day)
    ):
        counts["said_no"][day] = int(number)
    lapse_day = day_of(session, col(Prompt.expires_at))
    for day, number in session.execute(
        select(lapse_day, func.count())
        .where(
            col(Prompt.status) == PromptStatus.EXPIRED.value,
            col(Prompt.expires_at) >= start,
            col(Prompt.expires_at) < end,
        )
        .group_by(lapse_day)
    ):
        counts["expired"][day] = int(number)

    consent_day = day_of(session, col(ConsentEvent.created_at))
    consent_series = {ConsentKind.OPT_OUT.value: "opt_outs", ConsentKind.OPT_IN.value: "opt_ins"}
    for day, kind, number in session.execute(
        select(consent_day, col(ConsentEvent.kind), func.count())
        .where(
            col(ConsentEvent.kind).in_(consent_series),
            col(ConsentEvent.created_at) >= start,
            col(ConsentEvent.created_at) < end,
        )
        .group_by(consent_day, col(ConsentEvent.kind))
    ):
        counts[consent_series[kind]][day] = int(number)

    written_day = day_of(session, col(Message.created_at))
    for day, status, number in session.execute(
        select(written_day, col(Message.status), func.count())
        .where(
            col(Message.direction) == MessageDirection.OUTBOUND.value,
            col(Message.created_at) >= start,
            col(Message.created_at) < end,
        )
        .group_by(written_day, col(Message.status))
    ):
        statuses[status][day] = int(number)

    keys = [day.isoformat() for day in window]
    return Overview(
        days=window,
        series={name: _spread(counts.get(name, {}), keys) for name in SERIES},
        card_declines_by_reason=_spread_all(card_reasons, keys),
        autopay_declines_by_reason=_spread_all(autopay_reasons, keys),
        texts_by_status=_spread_all(statuses, keys),
        outbox=outbox_now(session, now=now),
        generated_at=now,
    )


def outbox_now(session: Session, *, now: datetime) -> dict[str, int]:
    """Outbound texts still ours, by state (see the module's notes for how holds are told)."""
    result = dict.fromkeys(OUTBOX_STATES, 0)
    outbound = col(Message.direction) == MessageDirection.OUTBOUND.value
    pending = col(Message.status) == messages.PENDING
    due = or_(col(Message.send_after).is_(None), col(Message.send_after) <= now)
    for status, number in session.execute(
        select(col(Message.status), func.count())
        .where(outbound, col(Message.status).in_((messages.DISPATCHING, messages.UNKNOWN)))
        .group_by(col(Message.status))
    ):
        result["sending" if status == messages.DISPATCHING else "unknown"] = int(number)
    result["queued"] = int(
        session.execute(select(func.count()).where(outbound, pending, due)).scalar_one()
    )
    result["retrying"] = int(
        session.execute(
            select(func.count()).where(outbound, pending, ~due, col(Message.attempts) > 0)
        ).scalar_one()
    )
    result["waiting"] = int(
        session.execute(
            select(func.count()).where(
                outbound,
                pending,
                ~due,
                col(Message.attempts) == 0,
                col(Message.engine_initiated) == False,  # noqa: E712
            )
        ).scalar_one()
    )
    held_by_phone: dict[str, int] = {
        phone: int(number)
        for phone, number in session.execute(
            select(col(Message.phone), func.count())
            .where(
                outbound,
                pending,
                ~due,
                col(Message.attempts) == 0,
                col(Message.engine_initiated) == True,  # noqa: E712
            )
            .group_by(col(Message.phone))
        )
    }
    capped = _numbers_at_cap(session, held_by_phone, now=now)
    for phone, number in held_by_phone.items():
        result["held_by_cap" if phone in capped else "held_by_quiet_hours"] += int(number)
    return result


def _numbers_at_cap(session: Session, phones: Iterable[str], *, now: datetime) -> set[str]:
    """Of these numbers, those that have had the global daily cap's worth of capped texts in
    the last 24 hours (counted as the dispatcher counts them)."""
    wanted = sorted(phones)
    if not wanted:
        return set()
    cap = get_global_settings(session).daily_message_cap
    day_ago = now - timedelta(hours=24)
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for phone, number in session.execute(
            select(col(Message.phone), func.count())
            .where(
                col(Message.phone).in_(chunk),
                col(Message.direction) == MessageDirection.OUTBOUND.value,
                col(Message.engine_initiated) == True,  # noqa: E712
                or_(
                    col(Message.sent_at) > day_ago,
                    and_(
                        col(Message.status).in_((messages.DISPATCHING, messages.UNKNOWN)),
                        col(Message.updated_at) > day_ago,
                    ),
                ),
            )
            .group_by(col(Message.phone))
        ):
            if int(number) >= cap:
                found.add(phone)
    return found


def _count_outcome(
    counts: dict[str, dict[str, int]],
    reasons: dict[str, dict[str, int]],
    day: str,
    *,
    autopay: bool,
    status: str,
    reason: str | None,
    number: int,
) -> None:
    if status == AttemptStatus.SUCCEEDED.value:
        name = "autopay_charged" if autopay else "funded"
    elif status == AttemptStatus.DECLINED.value:
        name = "autopay_declined" if autopay else "card_declined"
        key = reason or NO_REASON
        reasons[key][day] = reasons[key].get(day, 0) + number
    else:
        name = "autopay_failed" if autopay else "charge_failed"
    counts[name][day] = counts[name].get(day, 0) + number


def _spread(by_day: dict[str, int], keys: list[str]) -> list[int]:
    return [by_day.get(key, 0) for key in keys]


def _spread_all(by_name: dict[str, dict[str, int]], keys: list[str]) -> dict[str, list[int]]:
    return {name: _spread(by_name[name], keys) for name in sorted(by_name)}
