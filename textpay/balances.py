"""Money that moves without a card: call charges from the calling platform and operator credits.

Owns how outside references become ledger references. Usage is idempotent on the platform's own
`reference` (stored as `usage:<reference>`); a credit or refund is idempotent on the operator's
`Idempotency-Key` (stored as `credit:<key>`). Prefixes keep the two sources from colliding.
"""

from __future__ import annotations

from sqlmodel import Session

from textpay import audit, episodes
from textpay.ledger import Posting, post
from textpay.models import Account, LedgerKind


def usage_reference(reference: str) -> str:
    return f"usage:{reference}"


def credit_reference(idempotency_key: str) -> str:
    return f"credit:{idempotency_key}"


def record_usage(
    session: Session, *, account_id: int, amount_cents: int, reference: str
) -> Posting:
    """Debit call charges. A replay of `reference` returns the original entry."""
    return post(
        session,
        account_id=account_id,
        kind=LedgerKind.USAGE,
        amount_cents=-amount_cents,
        reference=usage_reference(reference),
        memo="call charges",
    )


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
