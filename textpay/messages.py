"""The message log and outbox: every text in and out, and delivery status from Twilio.

Inbound texts are recorded once per MessageSid with the reply we gave, so a retried webhook gets
the same answer and changes nothing. Outbound texts TextPay starts itself (receipts after a slow
charge, offers, notices) are queued here for the dispatcher; one for a number that has opted out
is kept as `withheld` and never sent. Delivery statuses only move forward: a late `sent` never
overwrites `delivered`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, case, func, insert, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay.db import commit_without_disk_wait, core, on_postgresql
from textpay.models import Message, MessageDirection, PhoneConsent

# How far along its life a status is; a callback may only move a message to a higher rank.
STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "accepted": 1,
    "scheduled": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}

# Outbox states of our own, before Twilio has the message (see `Message`).
PENDING = "pending"
DISPATCHING = "dispatching"
UNKNOWN = "unknown"
# Final states that never reach Twilio: withdrawn from the outbox (STOP, the account moved to
# another number), or written for a number that had already opted out and kept only as a record.
CANCELED = "canceled"
WITHHELD = "withheld"

# Twilio's error for "the recipient replied STOP": the number is opted out, carriers enforce it.
OPTED_OUT_ERROR = "21610"


def by_sid(sid: str, direction: MessageDirection) -> SelectOfScalar[Message]:
    """The message Twilio knows by `sid`, in one direction."""
    return select(Message).where(Message.twilio_sid == sid, Message.direction == direction.value)


def find(session: Session, sid: str, direction: MessageDirection) -> Message | None:
    return session.exec(by_sid(sid, direction)).first()


def find_any(session: Session, sid: str) -> Message | None:
    """The message with this SID in either direction (the key spans both): one lookup tells
    an inbound replay from a SID that is already one of our outbound texts'."""
    return session.exec(select(Message).where(Message.twilio_sid == sid)).first()


def record_inbound(
    session: Session,
    *,
    sid: str,
    phone: str,
    body: str,
    account_id: int | None,
    now: datetime,
    reply_body: str | None = None,
    request_id: str | None = None,
    wait_for_disk: bool = True,
) -> int:
    """Store an inbound text (its body already masked) and, when it is known, the answer given
    (None while a charge decides it); its id. The unique MessageSid makes a second insert of
    the same text fail, which the edge turns into a replay. One prepared insert: every text
    comes through here.

    `wait_for_disk=False`: this record is all the transaction writes (a BAL, a HELP, words
    TextPay does not know), so on PostgreSQL its commit does not wait for the disk
    (`db.commit_without_disk_wait`): a crash of the database server within a moment of it
    loses a line of the message log, and nothing else; a Twilio retry of that text is decided
    again, against the state then. A turn that moved money, consent, an offer, a card link, a
    passcode try or a setting never commits this way (`engine.receive`)."""
    statement = _INSERT_INBOUND
    if not wait_for_disk and on_postgresql(session):
        statement = _INSERT_INBOUND_WITHOUT_DISK_WAIT
    return int(
        core(session)
        .execute(
            statement,
            {
                "direction": MessageDirection.INBOUND.value,
                "phone": phone,
                "account_id": account_id,
                "body": body[:2000],
                "kind": "inbound",
                "status": "received",
                "engine_initiated": False,
                "attempts": 0,
                "twilio_sid": sid,
                "reply_body": reply_body,
                "request_id": request_id,
                "created_at": now,
                "updated_at": now,
            },
        )
        .scalar_one()
    )


_MESSAGE_TABLE: Table = Message.__table__  # type: ignore[attr-defined]
_INSERT_INBOUND = insert(_MESSAGE_TABLE).returning(_MESSAGE_TABLE.c.id)
_INSERT_INBOUND_WITHOUT_DISK_WAIT = insert(_MESSAGE_TABLE).returning(
    _MESSAGE_TABLE.c.id, commit_without_disk_wait()
)


def _record_reply_statement() -> Any:
    opted_out = (
        select(PhoneConsent.opted_out)
        .where(col(PhoneConsent.phone) == col(Message.phone))
        .correlate(Message)
        .scalar_subquery()
    )
    held = func.coalesce(opted_out, False)
    return (
        update(Message)
        .where(col(Message.id) == bindparam("message_id"))
        .values(reply_body=case((held, ""), else_=bindparam("stored")), updated_at=bindparam("now"))
        .returning(held)
        .execution_options(synchronize_session=False)
    )


_RECORD_REPLY = _record_reply_statement()


def queue_outbound(
    session: Session,
    *,
    phone: str,
    account_id: int | None,
    body: str,
    kind: str,
    now: datetime,
    send_after: datetime | None = None,
    engine_initiated: bool = False,
) -> Message:
    """Put a text in the outbox for the dispatcher, to go no earlier than `send_after`.

    A text for a number that has opted out is kept, as `withheld`, and never sent: after STOP
    the confirmation is the last text a number gets, so a receipt for a charge settled later
    (by the reconciler) or an AutoPay notice stays in the log for operators and goes nowhere.
    """
    message = Message(
        **outbound_row(phone=phone, account_id=account_id, body=body, kind=kind, now=now,
                       send_after=send_after, engine_initiated=engine_initiated,
                       withheld=number_opted_out(session, phone))
    )  # fmt: skip
    session.add(message)
    session.flush()
    return message


def outbound_row(
    *,
    phone: str,
    account_id: int | None,
    body: str,
    kind: str,
    now: datetime,
    send_after: datetime | None = None,
    engine_initiated: bool = False,
    withheld: bool = False,
) -> dict[str, Any]:
    """An outbox text's column values (the scan inserts a batch in one statement; its accounts
    come from the index of accounts not opted out, so it leaves `withheld` false)."""
    return {
        "direction": MessageDirection.OUTBOUND.value,
        "phone": phone,
        "account_id": account_id,
        "body": body,
        "kind": kind,
        "status": WITHHELD if withheld else PENDING,
        "engine_initiated": engine_initiated,
        "attempts": 0,
        "send_after": send_after or now,
        "created_at": now,
        "updated_at": now,
    }


def record_reply(
    session: Session, message_id: int, words: str, *, stored: str, now: datetime
) -> bool:
    """Record the answer to an inbound text whose answer waited for a card (`stored`: the words
    as they may be kept, card links masked). False, and nothing kept as said, when the number
    has opted out since the text came in: after STOP the only text is its confirmation."""
    found = (
        core(session)
        .execute(_RECORD_REPLY, {"message_id": message_id, "stored": stored, "now": now})
        .first()
    )
    return found is not None and not found[0] and bool(words)


def number_opted_out(session: Session, phone: str) -> bool:
    """Whether the number has opted out. Read here rather than through `textpay.consent`
    (which owns the table and imports this module): the outbox only needs the answer."""
    return bool(
        session.exec(select(PhoneConsent.opted_out).where(PhoneConsent.phone == phone)).first()
    )


def cancel_queued(
    session: Session, phone: str, *, now: datetime, account_id: int | None = None
) -> int:
    """Withdraw the texts still waiting to go to this number: all of them (it just opted out),
    or one account's (the account moved to another number)."""
    statement = (
        update(Message)
        .where(
            col(Message.phone) == phone,
            col(Message.direction) == MessageDirection.OUTBOUND.value,
            col(Message.status) == PENDING,
        )
        .values(status=CANCELED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if account_id is not None:
        statement = statement.where(col(Message.account_id) == account_id)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def apply_status(
    session: Session, *, sid: str, status: str, error_code: str | None, now: datetime
) -> Message | None:
    """Record a delivery status for an outbound message if it moves the message forward.

    Returns the message when it changed, None for an unknown SID or a stale status.
    """
    new_rank = STATUS_RANK.get(status)
    if new_rank is None:
        return None
    message = session.exec(
        by_sid(sid, MessageDirection.OUTBOUND)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if message is None or STATUS_RANK.get(message.status, 0) >= new_rank:
        return None
    message.status = status
    message.error_code = error_code or message.error_code
    message.updated_at = now
    session.add(message)
    return message
