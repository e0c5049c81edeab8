"""The outbox's rules: which waiting texts may go now, and what a send's outcome does to them.

Answers to a subscriber's own texts go first and are never held. Texts TextPay starts itself are
held until the recipient's sending window opens, and until the number is under its daily cap of
engine-initiated texts; a number that opted out gets nothing more. Claims use
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several dispatchers never take the same row.
A text whose send had no clear answer (a 5xx, a connection reset after the request went out, a
read timeout) is never sent again blindly: it waits `LOOK_AFTER`, then the next try first asks
Twilio for it (`send_or_find`). Found, it is recorded as sent with Twilio's SID; not found, it
is sent again (within `MAX_ATTEMPTS`); if the lookup fails, it is marked `unknown`, and an
operator decides.

What leaves must still be true when it leaves: a text may have waited hours (quiet hours, the
cap), so at claim time it is dropped (`canceled`) if its number has opted out since, if the offer
it carries is no longer pending or has expired, if an offer's account can no longer be paid by
text (closed, suspended, TextPay off), or if a card notice's account is no longer active or its
card is no longer the one on file. An offer becomes acceptable when its text is sent.

The daily cap counts texts sent, claimed and of unknown outcome alike, and two dispatchers never
weigh the same number at once: on PostgreSQL a claim takes a transaction-scoped advisory lock per
number (a number another dispatcher is claiming for is left for the next round); on SQLite the
write lock taken at BEGIN already serialises claims. One text that cannot be claimed (a window
no moment fits, a zone that does not exist) is logged, put back for a while and skipped: it
never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import delete, text, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay import card_expiry, card_links, consent, messages, prompts
from textpay.models import (
    WAITING_MESSAGE,
    Account,
    AccountStatus,
    Message,
    MessageDirection,
    Prompt,
    PromptStatus,
    StatusReport,
    fit,
)
from textpay.phones import masked_phone
from textpay.policy import DeliveryRules, delivery_rules
from textpay.sms import SendOutcome, SendResult, SmsSender

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
# How long to keep trying while Twilio cannot be reached at all (nothing was sent, so trying
# again cannot duplicate a text).
UNREACHABLE_FOR = timedelta(hours=24)
# How long a text whose send had no clear answer waits before its lookup at Twilio. Not at
# once: a request Twilio is still working on (a 504, our read timeout) may create the message
# after we gave up on it, and Twilio's message list can lag behind its newest messages.
LOOK_AFTER = timedelta(minutes=2)
# A claim older than this whose outcome was never recorded: the dispatcher died mid-send.
STALE_CLAIM = timedelta(minutes=5)
DAY = timedelta(hours=24)
# A text that could not be claimed waits this long before it is tried again, so that it does
# not stay at the head of the queue and crowd out the texts behind it.
CLAIM_ERROR_DELAY = timedelta(minutes=15)
CANCELED = "canceled"
# Texts that carry an offer (`Message.prompt_id`).
OFFER_KINDS = frozenset({"prompt", "reminder"})
# Notices about an account's card (`textpay.card_expiry`): only true while the account is active.
ACTIVE_ACCOUNT_KINDS = frozenset({"card_expiring", "card_expired"})
# First key of the per-number advisory locks ("TPOB"), apart from every other lock's keys.
PHONE_LOCK_SPACE = 0x54504F42
# Rows that count against a number's daily cap besides those sent: claimed by a dispatcher
# right now, or sent with no answer (they may have arrived).
_CAPPED_UNSENT = (messages.DISPATCHING, messages.UNKNOWN)


@dataclass(frozen=True)
class Outgoing:
    message_id: int
    phone: str
    body: str
    # When an earlier try of this text had no clear answer (it may be at Twilio): look for it
    # there before sending it again. None: no earlier try can have reached Twilio.
    look_since: datetime | None = None
    # False when the tries are used up: only look, never send again.
    may_send: bool = True


@dataclass
class Claim:
    """One claim's result: the texts to send now, and how many could not be claimed."""

    items: list[Outgoing] = field(default_factory=list)
    errors: int = 0


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
    return claim_batch(session, now=now, limit=limit).items


def claim_batch(session: Session, *, now: datetime, limit: int) -> Claim:
    """`claim`, also counting the texts that could not be claimed (see the module's notes)."""
    _give_up_on_stale_claims(session, now=now)
    # Reports for SIDs never recorded within the hour are not ours (or are lost): drop them.
    session.execute(
        delete(StatusReport)
        .where(col(StatusReport.created_at) < now - timedelta(hours=1))
        .execution_options(synchronize_session=False)
    )
    _apply_waiting_reports(session, now=now)
    due = session.exec(due_query(now, limit)).all()
    batch = _Batch.load(session, due, now=now)
    result = Claim()
    for message in due:
        assert message.id is not None
        try:
            verdict = _verdict(session, message, batch, now=now)
        except Exception as error:  # one bad text must not stop the batch
            result.errors += 1
            log.error(  # no body, no full number: logs are not for subscribers' data
                "outbox: text %s to %s could not be claimed (%s); trying again in %s",
                message.id, masked_phone(message.phone), type(error).__name__, CLAIM_ERROR_DELAY,
            )  # fmt: skip
            message.send_after = now + CLAIM_ERROR_DELAY
        else:
            if verdict is _Verdict.SKIP:
                continue
            if isinstance(verdict, datetime):
                message.send_after = verdict
            elif verdict is _Verdict.DROP:
                message.status = CANCELED
            else:
                message.status = messages.DISPATCHING
                result.items.append(
                    Outgoing(
                        message.id,
                        message.phone,
                        # A card link is stored masked; each send gets a fresh one, whose 30
                        # minutes start now (`textpay.card_links`).
                        card_links.fill_in(
                            session,
                            message.body,
                            account_id=message.account_id,
                            phone=message.phone,
                            now=now,
                        ),
                        look_since=_ambiguous_since(message),
                        may_send=message.attempts < MAX_ATTEMPTS,
                    )
                )
        message.updated_at = now
        session.add(message)
    return result


class _Verdict(Enum):
    """What a claim does with a due text, when it does not hold it until a later moment."""

    SEND = "send"
    DROP = "drop"  # no longer true: never send it
    SKIP = "skip"  # another dispatcher is weighing its number: leave it for the next round


@dataclass
class _Batch:
    """What the claim of one batch knows, read once for all its texts."""

    opted_out: dict[str, bool]
    offers: dict[int, Prompt]
    accounts: dict[int, Account]
    # Numbers whose engine-initiated texts this claim may weigh (it holds their lock).
    ours: set[str]
    # When each of those numbers' capped texts of the last day went (or were claimed).
    recent: dict[str, list[datetime]]
    rules: dict[int, DeliveryRules] = field(default_factory=dict)
    # Card notices whose card is no longer the one on file (`card_expiry.stale_notices`).
    stale_card_notices: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, session: Session, due: Sequence[Message], *, now: datetime) -> _Batch:
        phones = {m.phone for m in due}
        offer_ids = {m.prompt_id for m in due if m.prompt_id is not None}
        account_ids = {m.account_id for m in due if m.account_id is not None}
        offers = (
            {p.id: p for p in session.exec(select(Prompt).where(col(Prompt.id).in_(offer_ids)))}
            if offer_ids
            else {}
        )
        accounts = (
            {a.id: a for a in session.exec(select(Account).where(col(Account.id).in_(account_ids)))}
            if account_ids
            else {}
        )
        ours = _lock_numbers(session, {m.phone for m in due if m.engine_initiated})
        return cls(
            opted_out={phone: consent.is_opted_out(session, phone) for phone in sorted(phones)},
            offers={i: p for i, p in offers.items() if i is not None},
            accounts={i: a for i, a in accounts.items() if i is not None},
            ours=ours,
            recent=_capped_times(session, ours, now=now),
            stale_card_notices=card_expiry.stale_notices(
                session, (m.id for m in due if m.kind in ACTIVE_ACCOUNT_KINDS and m.id is not None)
            ),
        )


def _verdict(
    session: Session, message: Message, batch: _Batch, *, now: datetime
) -> _Verdict | datetime:
    """Send, drop or skip the text, or the later moment to hold it until."""
    if batch.opted_out.get(message.phone, False):
        return _Verdict.DROP
    account = batch.accounts.get(message.account_id) if message.account_id else None
    if message.prompt_id is not None:
        offer = batch.offers.get(message.prompt_id)
        if offer is None or offer.status != PromptStatus.PENDING.value or offer.expires_at <= now:
            return _Verdict.DROP
    if (message.prompt_id is not None or message.kind in OFFER_KINDS) and (
        account is not None
        and (account.status != AccountStatus.ACTIVE.value or not account.textpay_enabled)
    ):
        return _Verdict.DROP
    if message.kind in ACTIVE_ACCOUNT_KINDS and (
        (account is not None and account.status != AccountStatus.ACTIVE.value)
        or message.id in batch.stale_card_notices
    ):
        return _Verdict.DROP
    if not message.engine_initiated or account is None:
        return _Verdict.SEND
    if message.phone not in batch.ours:
        return _Verdict.SKIP
    assert account.id is not None
    if account.id not in batch.rules:
        batch.rules[account.id] = delivery_rules(session, account)
    rule = batch.rules[account.id]
    if not rule.allows(now):
        return rule.next_allowed(now)
    sent = sorted(batch.recent.setdefault(message.phone, []))
    own = _ambiguous_since(message)
    if own is not None and own in sent:
        sent.remove(own)  # its own earlier try is already counted: not a second text
    if len(sent) >= rule.daily_cap:
        return rule.next_allowed(sent[len(sent) - rule.daily_cap] + DAY)
    if own is None:
        batch.recent[message.phone].append(now)
    return _Verdict.SEND


def _lock_numbers(session: Session, phones: set[str]) -> set[str]:
    """The numbers this claim may weigh against their cap: on PostgreSQL those whose advisory
    lock it got (held until commit; a number another dispatcher holds is not waited for, so
    two claims can never deadlock); on SQLite all, the write lock being held since BEGIN."""
    if not phones:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return set(phones)
    locked = session.execute(
        text(
            "SELECT phone FROM unnest(CAST(:phones AS text[])) AS phone"
            " WHERE pg_try_advisory_xact_lock(:space, hashtext(phone))"
        ),
        {"phones": sorted(phones), "space": PHONE_LOCK_SPACE},
    )
    return {str(row[0]) for row in locked}


def _capped_times(
    session: Session, phones: set[str], *, now: datetime
) -> dict[str, list[datetime]]:
    """When each number's engine-initiated texts of the last day went: sent, claimed (at the
    claim) or of unknown outcome. Read after the numbers' locks are held, so a claim committed
    by another dispatcher a moment ago is counted."""
    if not phones:
        return {}
    rows = session.exec(
        select(Message.phone, Message.sent_at, Message.updated_at).where(
            col(Message.phone).in_(phones),
            Message.direction == MessageDirection.OUTBOUND.value,
            Message.engine_initiated == True,  # noqa: E712
            (col(Message.sent_at) > now - DAY)
            | (col(Message.status).in_(_CAPPED_UNSENT) & (col(Message.updated_at) > now - DAY)),
        )
    )
    found: dict[str, list[datetime]] = {phone: [] for phone in phones}
    for phone, sent_at, updated_at in rows:
        found[phone].append(sent_at or updated_at)
    return found


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
        # Found now, though the update above did not find it: on PostgreSQL each statement sees
        # what was committed before it began, and the dispatcher recorded the SID in between.
        # Applied now (if it moves the text forward), or the status was lost for good.
        changed = messages.apply_status(session, sid=sid, status=status,
                                        error_code=error_code, now=now)  # fmt: skip
        if changed is None:
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


def _ambiguous_since(message: Message) -> datetime | None:
    """When a waiting text's first try with no clear answer was made (it may be at Twilio), or
    None. A waiting text has `sent_at` only after such a try: `record` sets it then, so that
    the text also counts against the daily cap while it waits."""
    if message.status in (messages.PENDING, messages.DISPATCHING):
        return message.sent_at
    return None


def send_or_find(sender: SmsSender, item: Outgoing, *, status_callback: str | None) -> SendResult:
    """Send a claimed text; but if an earlier try may have reached Twilio, ask Twilio for it
    first: found, that is the outcome (its SID); the lookup failed, `unknown`; not there, send
    it again, unless the tries are used up (then it failed: it never reached Twilio)."""
    if item.look_since is not None:
        # An earlier try carried another card link than this one (each send makes its own):
        # senders compare bodies with links masked (`card_links.masked`).
        found = sender.find(to=item.phone, body=item.body, since=item.look_since)
        if found is not None:
            return found
        if not item.may_send:
            return SendResult(SendOutcome.FAILED, detail="not at Twilio after the last try")
    return sender.send(to=item.phone, body=item.body, status_callback=status_callback)


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
    # Twilio's codes are five digits and its statuses short words; whatever an API (or a proxy
    # before it) answers is kept as the columns can hold it, never a failed record.
    message.error_code = fit(Message, "error_code", result.error_code)
    outcome = result.outcome
    if outcome is SendOutcome.ACCEPTED:
        message.status = fit(Message, "status", result.status) or "queued"
        message.twilio_sid = result.sid
        message.sent_at = now
        session.add(message)
        if message.prompt_id is not None:
            # The offer's text has gone out: from now a YES may accept it.
            prompts.present(session, message.prompt_id, acceptable_after=now, now=now)
        _apply_early_reports(session, message, now=now)
    elif outcome is SendOutcome.RETRY and _may_retry(message, result, now=now):
        message.status = messages.PENDING
        message.send_after = now + backoff(message.attempts)
    elif outcome is SendOutcome.AMBIGUOUS:
        # It may be at Twilio: the next try looks for it there first (`send_or_find`), and when
        # the tries are used up, that look is all it gets. `sent_at` marks it (the first such
        # try) and counts it against the cap meanwhile.
        message.status = messages.PENDING
        message.sent_at = message.sent_at or now
        message.send_after = now + max(LOOK_AFTER, backoff(message.attempts))
    elif outcome is SendOutcome.UNKNOWN:
        # It may be on its way and Twilio could not tell us: sending again could text the
        # subscriber twice. It counts against the cap, and an operator decides.
        message.status = messages.UNKNOWN
        message.sent_at = message.sent_at or now
    else:
        message.status = "failed"
        if outcome is SendOutcome.OPTED_OUT:
            consent.opt_out(
                session, message.phone, words="Twilio error 21610", source="carrier", now=now
            )
    session.add(message)
    return message
