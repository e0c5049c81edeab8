"""An account's whole story, for the support desk's Account page (issue 15): what a person at a
calling provider needs on one screen when a family calls saying "I was charged twice" or "I never
got the text".

Owns gathering it: `tell` reads the account, its card on file (brand, last 4, expiry: never the
token), its effective settings with where each comes from, its AutoPay state, the texts to and
from its number (a thread, oldest first), its offers, its gateway attempts and card refunds, a
page of its ledger, its number's consent history, the audit trail of the account, and the other
accounts on its number. Also `find`, the desk's search: a phone in any spelling, an account
number, or a confirmation code `TP-XXXXXX`.

A bounded number of queries whatever the account's history: `tell` runs at most 14 statements,
plus the settings cache's reload when its copy is a few seconds old (each list is capped:
`THREAD_LIMIT` texts, `OFFER_LIMIT` offers, and so on; the ledger is read `LEDGER_PAGE + 1` rows
at a time, the extra one only saying whether there is more), and `find` at most 2. Pure
database work: no Flask.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from textpay import card_refunds, funding, ledger
from textpay.errors import NotFound, ValidationFailed
from textpay.models import (
    Account,
    AttemptStatus,
    AuditLogEntry,
    CardRefund,
    CardRefundStatus,
    ConsentEvent,
    Facility,
    LedgerEntry,
    Message,
    MessageDirection,
    PaymentAttempt,
    PaymentMethod,
    PhoneConsent,
    Prompt,
)
from textpay.phones import to_e164
from textpay.policy import EffectiveSettings, effective_for_account

THREAD_LIMIT = 200
OFFER_LIMIT = 50
ATTEMPT_LIMIT = 50
REFUND_LIMIT = 20
LEDGER_PAGE = 50
CONSENT_LIMIT = 100
AUDIT_LIMIT = 100
FIND_LIMIT = 50

CONFIRMATION = re.compile(r"^TP-[0-9A-Z]{6}$")

# Why a text did not go, by its outbox status (the row keeps the status, not a reason).
WHY_NOT_SENT = {
    "withheld": "never sent: the number had opted out (STOP) when it was queued",
    "canceled": "withdrawn before it went: STOP, an offer no longer live, or the account "
    "moved to another number",
    "unknown": "sent, but Twilio never answered: not sent again; check Twilio's log",
    "failed": "Twilio could not deliver it",
    "undelivered": "the carrier could not deliver it",
}


@dataclass(frozen=True)
class Card:
    """What may be shown of the card on file (the token never leaves the database)."""

    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Text:
    """One text in the thread, with what happened to it."""

    message: Message
    held_until: datetime | None  # queued, waiting for its sending window or the daily cap
    why_not_sent: str | None


@dataclass(frozen=True)
class Attempt:
    """A gateway charge and, when it succeeded, the deposit it posted and what of it may still
    go back to the card."""

    attempt: PaymentAttempt
    deposit_id: int | None
    refundable_cents: int


@dataclass(frozen=True)
class AccountStory:
    account: Account
    facility: Facility | None
    card: Card | None
    effective: EffectiveSettings
    opted_out: bool  # the number's consent now (it belongs to the number)
    thread: list[Text]  # oldest first
    thread_truncated: bool
    offers: list[Prompt]  # newest first
    attempts: list[Attempt]  # newest first
    card_refunds: list[CardRefund]  # newest first
    ledger: list[LedgerEntry]  # newest first, one page
    ledger_next_before: int | None  # the id to page on from, when there are older entries
    consent: list[ConsentEvent]  # newest first
    audit: list[AuditLogEntry]  # newest first
    same_number: list[Account]  # the other accounts on this number
    now: datetime


def tell(
    session: Session, account_id: int, *, now: datetime, ledger_before: int | None = None
) -> AccountStory:
    """The account's story as of `now` (ledger page: entries older than `ledger_before`)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    facility = session.get(Facility, account.facility_id) if account.facility_id else None
    method = session.exec(
        select(PaymentMethod).where(PaymentMethod.account_id == account_id)
    ).first()
    card = (
        Card(method.brand, method.last4, method.exp_month, method.exp_year, method.updated_at)
        if method is not None
        else None
    )
    opted_out = bool(
        session.exec(
            select(PhoneConsent.opted_out).where(PhoneConsent.phone == account.phone)
        ).first()
    )
    messages = list(
        session.exec(
            select(Message)
            .where(Message.phone == account.phone)
            .order_by(col(Message.id).desc())
            .limit(THREAD_LIMIT + 1)
        )
    )
    offers = list(
        session.exec(
            select(Prompt)
            .where(Prompt.account_id == account_id)
            .order_by(col(Prompt.id).desc())
            .limit(OFFER_LIMIT)
        )
    )
    attempts = list(
        session.exec(
            select(PaymentAttempt)
            .where(PaymentAttempt.account_id == account_id)
            .order_by(col(PaymentAttempt.id).desc())
            .limit(ATTEMPT_LIMIT)
        )
    )
    refunds = card_refunds.recent(session, account_id, limit=REFUND_LIMIT)
    page = ledger.entries(session, account_id, limit=LEDGER_PAGE + 1, before_id=ledger_before)
    consent = list(
        session.exec(
            select(ConsentEvent)
            .where(ConsentEvent.phone == account.phone)
            .order_by(col(ConsentEvent.id).desc())
            .limit(CONSENT_LIMIT)
        )
    )
    audit = list(
        session.exec(
            select(AuditLogEntry)
            .where(AuditLogEntry.entity_type == "account")
            .where(AuditLogEntry.entity_id == str(account_id))
            .order_by(col(AuditLogEntry.id).desc())
            .limit(AUDIT_LIMIT)
        )
    )
    same_number = list(
        session.exec(
            select(Account)
            .where(Account.phone == account.phone, col(Account.id) != account_id)
            .order_by(col(Account.id))
            .limit(FIND_LIMIT)
        )
    )
    more = len(page) > LEDGER_PAGE
    page = page[:LEDGER_PAGE]
    return AccountStory(
        account=account,
        facility=facility,
        card=card,
        effective=effective_for_account(session, account),
        opted_out=opted_out,
        thread=[_text(m, now) for m in reversed(messages[:THREAD_LIMIT])],
        thread_truncated=len(messages) > THREAD_LIMIT,
        offers=offers,
        attempts=_with_deposits(session, attempts, account.balance_cents),
        card_refunds=refunds,
        ledger=page,
        ledger_next_before=page[-1].id if more and page else None,
        consent=consent,
        audit=audit,
        same_number=same_number,
        now=now,
    )


def find(session: Session, query: str, *, default_region: str = "US") -> list[Account]:
    """Accounts matching what an operator typed: a confirmation code (`TP-` and six letters or
    digits, any case), an account number, or a phone number in any spelling. Empty when nothing
    matches; at most `FIND_LIMIT`."""
    typed = query.strip()
    if not typed:
        return []
    code = typed.upper()
    if CONFIRMATION.match(code):
        attempt = session.exec(
            select(PaymentAttempt.account_id).where(PaymentAttempt.confirmation == code)
        ).first()
        return [a for a in [session.get(Account, attempt)] if a is not None] if attempt else []
    conditions = [col(Account.account_number) == typed[:40]]
    with suppress(ValidationFailed):  # not a phone number: an account number only
        conditions.append(col(Account.phone) == to_e164(typed, default_region=default_region))
    return list(
        session.exec(
            select(Account).where(or_(*conditions)).order_by(col(Account.id)).limit(FIND_LIMIT)
        )
    )


def _text(message: Message, now: datetime) -> Text:
    waiting = (
        message.direction == MessageDirection.OUTBOUND.value
        and message.status == "pending"
        and message.send_after is not None
        and message.send_after > now
    )
    outbound = message.direction == MessageDirection.OUTBOUND.value
    why = WHY_NOT_SENT.get(message.status) if outbound else None
    return Text(message, message.send_after if waiting else None, why)


def _with_deposits(
    session: Session, attempts: list[PaymentAttempt], balance_cents: int
) -> list[Attempt]:
    """Each succeeded attempt's deposit entry and the unspent part a card refund may return
    (two statements for the whole list, as `card_refunds.refundable` reckons it for one)."""
    succeeded = [a for a in attempts if a.status == AttemptStatus.SUCCEEDED.value]
    deposits: dict[str, int] = {}
    refunded: dict[int, int] = {}
    if succeeded:
        references = [funding.deposit_reference(a) for a in succeeded]
        for reference, entry_id in session.exec(
            select(LedgerEntry.reference, LedgerEntry.id).where(
                col(LedgerEntry.reference).in_(references)
            )
        ):
            deposits[reference] = entry_id or 0
        for attempt_id, total in session.exec(
            select(CardRefund.attempt_id, func.sum(CardRefund.amount_cents))
            .where(
                col(CardRefund.attempt_id).in_([a.id for a in succeeded]),
                CardRefund.status != CardRefundStatus.FAILED.value,
            )
            .group_by(col(CardRefund.attempt_id))
        ):
            refunded[attempt_id] = int(total or 0)
    shown = []
    for attempt in attempts:
        deposit_id = deposits.get(funding.deposit_reference(attempt))
        left = 0
        if deposit_id is not None:
            left = min(max(0, attempt.amount_cents - refunded.get(attempt.id or 0, 0)),
                       balance_cents)  # fmt: skip
        shown.append(Attempt(attempt, deposit_id, left))
    return shown
