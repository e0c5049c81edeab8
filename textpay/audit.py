"""The operator audit trail: who changed what, when, and the state before and after.

Every service that changes something on an operator's behalf calls `record` in the same
transaction as the change, so the trail can never disagree with the data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, SQLModel, select

from textpay.models import AuditLogEntry
from textpay.timeutil import utcnow

# Columns never copied into the trail: secrets and noise.
# A passcode's hash is as good as the passcode to whoever can try 10,000 guesses offline.
_OMITTED = frozenset({"token", "passcode_hash", "created_at", "updated_at", "balance_updated_at"})


def snapshot(row: SQLModel | None) -> dict[str, Any] | None:
    """A JSON-ready copy of a row for the trail, without secrets (a payment token is never kept)."""
    if row is None:
        return None
    data: dict[str, Any] = row.model_dump(mode="json", exclude=set(_OMITTED))
    return data


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: object,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime | None = None,
) -> AuditLogEntry:
    entry = AuditLogEntry(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        before=before,
        after=after,
        created_at=now or utcnow(),
    )
    session.add(entry)
    return entry


def history(
    session: Session,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditLogEntry]:
    """Audit entries, newest first, optionally for one entity."""
    statement = select(AuditLogEntry)
    if entity_type is not None:
        statement = statement.where(AuditLogEntry.entity_type == entity_type)
    if entity_id is not None:
        statement = statement.where(AuditLogEntry.entity_id == entity_id)
    if before_id is not None:
        statement = statement.where(AuditLogEntry.id < before_id)  # type: ignore[operator]
    statement = statement.order_by(AuditLogEntry.id.desc()).limit(limit)  # type: ignore[union-attr]
    return list(session.exec(statement))
