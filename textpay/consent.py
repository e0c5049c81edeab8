"""Consent: opting a number out and in, and the record of every change (TCPA evidence).

Opt-out is per phone number, as carriers keep it: STOP from a number stops every account it owns,
cancels their open offers and withdraws queued texts, at once. Each change is recorded with the
time and the words (or carrier error) that caused it.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from textpay import messages, prompts
from textpay.models import Account, ConsentEvent, ConsentKind


def record(
    session: Session,
    *,
    phone: str,
    kind: ConsentKind,
    words: str,
    source: str,
    now: datetime,
    account_id: int | None = None,
) -> ConsentEvent:
    event = ConsentEvent(
        phone=phone,
        account_id=account_id,
        kind=kind.value,
        words=words[:200],
        source=source,
        created_at=now,
    )
    session.add(event)
    return event


def accounts_of(session: Session, phone: str) -> list[Account]:
    return list(
        session.exec(select(Account).where(Account.phone == phone).order_by(col(Account.id)))
    )


def opt_out(session: Session, phone: str, *, words: str, source: str, now: datetime) -> None:
    owned = accounts_of(session, phone)
    for account in owned:
        account.opted_out = True
        account.opted_out_at = now
        account.updated_at = now
        session.add(account)
    prompts.cancel_pending(session, [a.id for a in owned if a.id is not None], now=now)
    messages.cancel_queued(session, phone, now=now)
    record(session, phone=phone, kind=ConsentKind.OPT_OUT, words=words, source=source, now=now)


def opt_in(session: Session, phone: str, *, words: str, source: str, now: datetime) -> None:
    for account in accounts_of(session, phone):
        account.opted_out = False
        account.opted_out_at = None
        account.updated_at = now
        session.add(account)
    record(session, phone=phone, kind=ConsentKind.OPT_IN, words=words, source=source, now=now)


def is_opted_out(session: Session, phone: str) -> bool:
    """A number is opted out once any of its accounts is: consent belongs to the number."""
    return any(account.opted_out for account in accounts_of(session, phone))
