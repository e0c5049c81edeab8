"""Consent: whether a phone number may be texted, its changes, and the record of them (TCPA).

Consent belongs to the phone number, as carriers keep it, not to an account: the `phone_consent`
row of a number says whether it opted out, and this module is its only writer. STOP from a
number stops every account on it, cancels their open offers and withdraws queued texts, at once;
an account enrolled on a number, or moved onto it, takes that number's consent
(`apply_to_account`). A STOP from a number with no account is remembered all the same, so that an
account enrolled on it later starts opted out.

`Account.opted_out` is a copy of its number's consent, kept here in step with `phone_consent`
for the low-balance scan's partial index; nothing else writes it. Each change of a number's
consent is recorded in `consent_event` with the time and the words (or carrier error) that
caused it; a repeated STOP changes nothing and adds no record (its text is in the message log).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from textpay import messages, prompts
from textpay.db import on_postgresql
from textpay.models import Account, ConsentEvent, ConsentKind, PhoneConsent

# First key of the PostgreSQL advisory lock taken on a number while its consent is read to be
# applied or changed ("TPC1"); the second key is the number's hash. The two-key space is apart
# from the single-key one the scan's leader lock uses.
CONSENT_LOCK_CLASS = 0x54504331


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


def is_opted_out(session: Session, phone: str) -> bool:
    """Whether the number said STOP (or its carrier did) and has not opted back in."""
    return _consent_of(session, phone, lock=False)[0]


def opt_out(session: Session, phone: str, *, words: str, source: str, now: datetime) -> None:
    """STOP: the number gets no more texts. Always applied in full, however often it is said: a
    repeat still stops any account that has joined the number and anything queued since."""
    changed = _set_consent(session, phone, opted_out=True, now=now)
    prompts.cancel_pending(session, _sync_accounts(session, phone, now=now), now=now)
    messages.cancel_queued(session, phone, now=now)
    if changed:
        record(session, phone=phone, kind=ConsentKind.OPT_OUT, words=words, source=source, now=now)


def opt_in(session: Session, phone: str, *, words: str, source: str, now: datetime) -> None:
    """START (or YES while opted out): the number may be texted again, every account on it.
    Texts withheld while it was opted out stay withheld: they are out of date by now."""
    changed = _set_consent(session, phone, opted_out=False, now=now)
    _sync_accounts(session, phone, now=now)
    if changed:
        record(session, phone=phone, kind=ConsentKind.OPT_IN, words=words, source=source, now=now)


def apply_to_account(
    session: Session, account: Account, *, now: datetime, moved_from: str | None = None
) -> None:
    """Give an account its number's consent: at enrolment, and whenever its phone changes.

    An account moved onto a number that said STOP is opted out (and its open offers cancelled);
    moved onto a number that did not, it is opted in. An account moved off `moved_from` leaves
    nothing behind there: its texts still queued for that number are withdrawn and its open
    offer, made to whoever had that number, is cancelled, so that the new number can never
    accept an offer it was not sent. Call before the account's new phone is flushed, so that
    the number's lock is taken before the account's row (the order STOP takes them in).
    """
    opted_out, since = _consent_of(session, account.phone, lock=True)
    if account.opted_out != opted_out:
        account.opted_out = opted_out
        account.opted_out_at = since if opted_out else None
        account.updated_at = now
        session.add(account)
    if account.id is None:
        return  # a new account has no offers or texts yet
    moved = moved_from is not None and moved_from != account.phone
    if opted_out or moved:
        prompts.cancel_pending(session, [account.id], now=now)
    if moved_from is not None and moved:
        messages.cancel_queued(session, moved_from, account_id=account.id, now=now)


def _lock_number(session: Session, phone: str) -> None:
    """Serialise, until this transaction ends, everything that reads a number's consent to act
    on it or changes it. Without it, on PostgreSQL an account moved onto a number at the moment
    that number's first STOP commits could be missed by both. SQLite needs nothing: every write
    transaction there begins IMMEDIATE, so writers already take turns."""
    if on_postgresql(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:kind, hashtext(:phone))"),
            {"kind": CONSENT_LOCK_CLASS, "phone": phone},
        )


def _consent_of(session: Session, phone: str, *, lock: bool) -> tuple[bool, datetime | None]:
    """The number's consent: whether it is opted out, and since when."""
    if lock:
        _lock_number(session, phone)
    row = session.exec(
        select(PhoneConsent.opted_out, PhoneConsent.changed_at).where(PhoneConsent.phone == phone)
    ).first()
    return (bool(row[0]), row[1]) if row is not None else (False, None)


def _set_consent(session: Session, phone: str, *, opted_out: bool, now: datetime) -> bool:
    """Upsert the number's row; True when its consent changed (or it had none yet).

    One `INSERT ... ON CONFLICT DO UPDATE` on both databases: two STOPs at once never fail on
    the primary key, whichever inserts first. The update only happens when the value differs,
    so whether the statement returns a row says whether anything changed and `changed_at` stays the
    moment consent last changed.
    """
    _lock_number(session, phone)
    insert = postgresql_insert if on_postgresql(session) else sqlite_insert
    statement = insert(PhoneConsent).values(phone=phone, opted_out=opted_out, changed_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[col(PhoneConsent.phone)],
        set_={
            "opted_out": statement.excluded.opted_out,
            "changed_at": statement.excluded.changed_at,
        },
        where=col(PhoneConsent.opted_out) != statement.excluded.opted_out,
    )
    # RETURNING, not the row count, which psycopg does not report for this statement.
    return session.execute(statement.returning(col(PhoneConsent.phone))).first() is not None


def _sync_accounts(session: Session, phone: str, *, now: datetime) -> list[int]:
    """Copy the number's consent onto every account on it (the scan's cache); their ids.

    One set-based UPDATE, not the ORM's update by id: an account whose move off this number
    commits while this waits for its row is then looked at again, and left alone.
    """
    opted_out, since = _consent_of(session, phone, lock=False)
    session.execute(
        update(Account)
        .where(col(Account.phone) == phone, col(Account.opted_out) != opted_out)
        .values(opted_out=opted_out, opted_out_at=since if opted_out else None, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return [i for i in session.exec(select(Account.id).where(Account.phone == phone)) if i]
