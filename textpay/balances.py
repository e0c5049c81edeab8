"""Money that moves without a card: call charges from the calling platform and operator credits.

Owns how outside references become ledger references. Usage is idempotent on the platform's own
`reference` (stored as `usage:<reference>`); a credit or refund is idempotent on the operator's
`Idempotency-Key` (stored as `credit:<key>`). Prefixes keep the two sources from colliding.

Also owns each account's usual pace of calls (`textpay.runway`): every new usage posting works
it out again from the account's charges of the last 30 days (one range read of the partial
index `ix_ledger_entry_usage`) and stores it on the account in the same transaction, so that
the scan and the texts never read an account's history.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session, col, select

from textpay import audit, episodes, runway
from textpay.ledger import Posting, post
from textpay.models import USAGE_ENTRY, Account, LedgerEntry, LedgerKind


def usage_reference(reference: str) -> str:
    return f"usage:{reference}"


def credit_reference(idempotency_key: str) -> str:
    return f"credit:{idempotency_key}"


def record_usage(
    session: Session, *, account_id: int, amount_cents: int, reference: str
) -> Posting:
    """Debit call charges, and keep the account's usual pace with them. A replay of
    `reference` returns the original entry and changes nothing."""
    posting = post(
        session,
        account_id=account_id,
        kind=LedgerKind.USAGE,
        amount_cents=-amount_cents,
        reference=usage_reference(reference),
        memo="call charges",
    )
    if not posting.replayed:
        account = session.get(Account, account_id)  # loaded, and locked, by the posting
        assert account is not None
        keep_pace(session, account, now=posting.entry.created_at)
    return posting


def keep_pace(session: Session, account: Account, *, now: datetime) -> None:
    """Store the account's usual pace as of `now` (its row is locked: the caller posted)."""
    session.flush()  # the new entry counts
    start = now - runway.WINDOW
    usage = (
        select(LedgerEntry.created_at, LedgerEntry.amount_cents)
        .where(col(LedgerEntry.account_id) == account.id, text(USAGE_ENTRY))
        .order_by(col(LedgerEntry.created_at).desc())
    )
    recent = session.execute(usage.where(col(LedgerEntry.created_at) > start)).all()
    # The newest charge before the window, if any: it tells that the account's pace is over
    # the whole window (`textpay.runway.pace`).
    before = session.execute(usage.where(col(LedgerEntry.created_at) <= start).limit(1)).all()
    pace = runway.pace([(when, cents) for when, cents in [*recent, *before]], now=now)
    account.usage_pace_cents = pace.cents if pace else None
    account.usage_pace_hours = pace.hours if pace else None
    account.usage_pace_until = pace.until if pace else None
    session.add(account)


def issue_credit(
    session: Session,
    *,
    account_id: int,
    amount_cents: int,
    reason: str,
    idempotency_key: str,
    kind: LedgerKind,
    actor: str,
) -> Posting:
    """Credit the account on an operator's say-so, and write who did it to the audit trail.

    A replay of `idempotency_key` returns the original entry and writes nothing more.
    """
    if kind not in (LedgerKind.CREDIT, LedgerKind.REFUND):
        raise ValueError(f"an operator credit is a credit or a refund, not {kind}")
    posting = post(
        session,
        account_id=account_id,
        kind=kind,
        amount_cents=amount_cents,
        reference=credit_reference(idempotency_key),
        memo=reason,
    )
    if not posting.replayed:
        account = session.get(Account, account_id)
        if account is not None:
            episodes.rearm_if_healthy(session, account, now=posting.entry.created_at)
        audit.record(
            session,
            actor=actor,
            action=f"ledger.{kind.value}",
            entity_type="account",
            entity_id=account_id,
            before=None,
            after=audit.snapshot(posting.entry),
            now=posting.entry.created_at,
        )
    return posting
