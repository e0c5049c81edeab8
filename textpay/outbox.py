"""The outbox's rules: which waiting texts may go now, and what a send's outcome does to them.

Answers to a subscriber's own texts go first and are never held. Texts TextPay starts itself are
held until the recipient's sending window opens, and until the number is under its daily cap of
engine-initiated texts; a number that opted out gets nothing more. Claims use
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several dispatchers never take the same row.
A text whose send had no answer is marked `unknown` and never sent again automatically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, text, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay import consent, messages
from textpay.models import WAITING_MESSAGE, Account, Message, MessageDirection, StatusReport
from textpay.policy import DeliveryRules, delivery_rules
from textpay.sms import SendOutcome, SendResult

MAX_ATTEMPTS = 6
# How long to keep trying while Twilio cannot be reached at all (nothing was sent, so trying
# again cannot duplicate a text).
UNREACHABLE_FOR = timedelta(hours=24)
# A claim older than this whose outcome was never recorded: the dispatcher died mid-send.
STALE_CLAIM = timedelta(minutes=5)
DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Outgoing:
    message_id: int
    phone: str
    body: str


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: 2, 4, 8, ... seconds, at most five minutes."""
    return timedelta(seconds=min(300, 2**attempts))


def due_query(now: datetime, limit: int) -> SelectOfScalar[Message]:
    """Waiting texts that may go now, answers first: read through `ix_message_outbox`, locked
    and skipped by any other dispatcher (`FOR UPDATE SKIP LOCKED` on PostgreSQL)."""
    return (
        select(Message)
        .where(text(WAITING_MESSAGE), col(Message.send_after) <= now)
        .order_by(col(Message.engine_initiated), col(Message.send_after), col(Message.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def claim(session: Session, *, now: datetime, limit: int) -> list[Outgoing]:
    """Take up to `limit` texts that may go now, marking them `dispatching`."""
    _give_up_on_stale_claims(session, now=now)
    # Reports for SIDs never recorded within the hour are not ours (or are lost): drop them.
    session.execute(
        delete(StatusReport)
        .where(col(StatusReport.created_at) < now - timedelta(hours=1))
        .execution_options(synchronize_session=False)
    )
    _apply_waiting_reports(session, now=now)
    due = session.exec(due_query(now, limit)).all()
    rules: dict[int, DeliveryRules | None] = {}
    recent: dict[str, list[datetime]] = {}
    claimed: list[Outgoing] = []
    for message in due:
        if message.engine_initiated:
            hold = _hold(session, message, now=now, rules=rules, recent=recent)
            if hold is not None:
                message.send_after = hold
                message.updated_at = now
                session.add(message)
                continue
            if message.status == "canceled":
                session.add(message)
                continue
            recent.setdefault(message.phone, []).append(now)
        message.status = messages.DISPATCHING
        message.updated_at = now
        session.add(message)
        assert message.id is not None
        claimed.append(Outgoing(message.id, message.phone, message.body))
    return claimed


def _hold(
    session: Session,
    message: Message,
    *,
    now: datetime,
    rules: dict[int, DeliveryRules | None],
    recent: dict[str, list[datetime]],
) -> datetime | None:
    """When an engine-initiated text must wait until, or None if it may go now. Cancels it
    (status) if its number opted out."""
    account = session.get(Account, message.account_id) if message.account_id else None
    if account is None:
        return None
    if account.opted_out:
        message.status = "canceled"
        return None
    assert account.id is not None
    if account.id not in rules:
        rules[account.id] = delivery_rules(session, account)
    rule = rules[account.id]
    assert rule is not None
    if not rule.allows(now):
        return rule.next_allowed(now)
    if message.phone not in recent:
        sent_times = session.exec(
            select(Message.sent_at).where(
                Message.phone == message.phone,
                Message.direction == MessageDirection.OUTBOUND.value,
                Message.engine_initiated == True,  # noqa: E712
                col(Message.sent_at) > now - DAY,
            )
        )
        recent[message.phone] = [t for t in sent_times if t is not None]
    sent = sorted(recent[message.phone])
    if len(sent) >= rule.daily_cap:
        return rule.next_allowed(sent[len(sent) - rule.daily_cap] + DAY)
    return None


def _give_up_on_stale_claims(session: Session, *, now: datetime) -> None:
    """A text claimed long ago and never recorded may have been sent: mark it unknown."""
    session.execute(
        update(Message)
        .where(
            col(Message.direction) == MessageDirection.OUTBOUND.value,
            col(Message.status) == messages.DISPATCHING,
            col(Message.updated_at) < now - STALE_CLAIM,
        )
        .values(status=messages.UNKNOWN, sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def report_status(
    session: Session, *, sid: str, status: str, error_code: str | None, now: datetime
) -> None:
    """A delivery status callback. One for a SID not recorded yet (Twilio called back before
    the dispatcher stored it) is kept and applied when the SID arrives."""
    if status not in messages.STATUS_RANK:
        return
    changed = messages.apply_status(session, sid=sid, status=status, error_code=error_code, now=now)
    if changed is None:
        if messages.find(session, sid, MessageDirection.OUTBOUND) is None:
            session.add(StatusReport(twilio_sid=sid, status=status, error_code=error_code,
                                     created_at=now))  # fmt: skip
        return
    if error_code == messages.OPTED_OUT_ERROR:
        consent.opt_out(session, changed.phone, words=f"Twilio error {error_code}",
                        source="carrier", now=now)  # fmt: skip


def _apply_waiting_reports(session: Session, *, now: datetime) -> None:
    """Reports kept for a SID that has been recorded since. On PostgreSQL a callback and the
    dispatcher's own record of the SID can commit side by side, each unseen by the other; this
    sweep, run with every claim, applies what that race left waiting."""
    waiting = session.exec(
        select(Message)
        .join(StatusReport, col(StatusReport.twilio_sid) == col(Message.twilio_sid))
        .where(Message.direction == MessageDirection.OUTBOUND.value)
        .distinct()
    ).all()
    for message in waiting:
        _apply_early_reports(session, message, now=now)


def _apply_early_reports(session: Session, message: Message, *, now: datetime) -> None:
    assert message.twilio_sid is not None
    early = session.exec(
        select(StatusReport).where(StatusReport.twilio_sid == message.twilio_sid)
    ).all()
    session.flush()  # the message's SID must be in the database for apply_status to find it
    for report in sorted(early, key=lambda r: messages.STATUS_RANK.get(r.status, 0)):
        report_status(session, sid=report.twilio_sid, status=report.status,
                      error_code=report.error_code, now=now)  # fmt: skip
        session.delete(report)


def _may_retry(message: Message, result: SendResult, *, now: datetime) -> bool:
    if result.error_code is None:  # never reached Twilio: keep the text for a day
        return message.created_at > now - UNREACHABLE_FOR
    return message.attempts < MAX_ATTEMPTS  # Twilio answered 429/5xx: a bounded number of tries


def record(session: Session, message_id: int, result: SendResult, *, now: datetime) -> Message:
    """Apply a send's outcome to the text."""
    message = session.get(Message, message_id)
    assert message is not None
    message.attempts += 1
    message.updated_at = now
    message.error_code = result.error_code
    outcome = result.outcome
    if outcome is SendOutcome.ACCEPTED:
        message.status = result.status or "queued"
        message.twilio_sid = result.sid
        message.sent_at = now
        session.add(message)
        _apply_early_reports(session, message, now=now)
    elif outcome is SendOutcome.RETRY and _may_retry(message, result, now=now):
        message.status = messages.PENDING
        message.send_after = now + backoff(message.attempts)
    elif outcome is SendOutcome.UNKNOWN:
        # It may be on its way: sending again could text the subscriber twice. It counts
        # against the cap, and an operator decides.
        message.status = messages.UNKNOWN
        message.sent_at = now
    else:
        message.status = "failed"
        if outcome is SendOutcome.OPTED_OUT:
            consent.opt_out(
                session, message.phone, words="Twilio error 21610", source="carrier", now=now
            )
    session.add(message)
    return message
