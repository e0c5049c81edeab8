"""Top-up offers ("prompts") and their lifecycle.

    pending ──YES──► accepted ──charge ok──► funded
       │                 └──declined/failed──► failed
       ├──NO──► declined      ├──past expiry──► expired      └──STOP──► cancelled

Every transition here is one conditional UPDATE (`WHERE id = ? AND status = ?`, plus
`expires_at > now` for acceptance) whose row count says whether this caller won. Two replies
racing for one prompt therefore cannot both accept it, whatever the database's isolation level.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from textpay.models import OPEN_PROMPT_STATUSES, Account, Prompt, PromptStatus
from textpay.policy import EffectiveSettings


def latest_for(session: Session, account_ids: Iterable[int]) -> dict[int, Prompt]:
    """The newest prompt of each account that has one."""
    ids = list(account_ids)
    if not ids:
        return {}
    newest = (
        select(func.max(Prompt.id))
        .where(col(Prompt.account_id).in_(ids))
        .group_by(col(Prompt.account_id))
    )
    rows = session.exec(
        select(Prompt).where(col(Prompt.id).in_(newest)).execution_options(populate_existing=True)
    )
    return {prompt.account_id: prompt for prompt in rows}


def offer(
    session: Session,
    account: Account,
    settings: EffectiveSettings,
    *,
    now: datetime,
    starts_at: datetime | None = None,
) -> Prompt:
    """Create a pending offer of the account's preset amount. The partial unique index refuses
    a second open prompt for the same account.

    `starts_at` is when the offer's text may go out (after quiet hours); the offer lasts its
    full time from then, not from when it was made.
    """
    prompt = new_offer(account, settings, now=now, starts_at=starts_at)
    session.add(prompt)
    session.flush()
    return prompt


def new_offer(
    account: Account,
    settings: EffectiveSettings,
    *,
    now: datetime,
    starts_at: datetime | None = None,
) -> Prompt:
    """The offer `offer` makes, not yet added to a session."""
    return Prompt(**offer_row(account, settings, now=now, starts_at=starts_at))


def offer_row(
    account: Account,
    settings: EffectiveSettings,
    *,
    now: datetime,
    starts_at: datetime | None = None,
) -> dict[str, Any]:
    """An offer's column values (the scan inserts a whole batch of these in one statement)."""
    assert account.id is not None
    return {
        "account_id": account.id,
        "status": PromptStatus.PENDING.value,
        "amount_cents": settings.preset_amount_cents,
        "fee_cents": settings.deposit_fee_cents,
        "balance_at_offer_cents": account.balance_cents,
        "expires_at": (starts_at or now) + timedelta(minutes=settings.prompt_ttl_minutes),
        "created_at": now,
        "updated_at": now,
    }


def _move(
    session: Session,
    prompt_ids: Iterable[int],
    *,
    from_statuses: tuple[str, ...],
    to: PromptStatus,
    now: datetime,
    live_only: bool = False,
    expired_only: bool = False,
) -> int:
    ids = list(prompt_ids)
    if not ids:
        return 0
    statement = (
        update(Prompt)
        .where(col(Prompt.id).in_(ids), col(Prompt.status).in_(from_statuses))
        .values(status=to.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if live_only:
        statement = statement.where(col(Prompt.expires_at) > now)
    if expired_only:
        statement = statement.where(col(Prompt.expires_at) <= now)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def accept(session: Session, prompt_id: int, *, now: datetime) -> bool:
    """pending → accepted, only while the offer is live. True if this caller won."""
    return (
        _move(
            session,
            [prompt_id],
            from_statuses=(PromptStatus.PENDING.value,),
            to=PromptStatus.ACCEPTED,
            now=now,
            live_only=True,
        )
        == 1
    )


def settle(session: Session, prompt_id: int, *, funded: bool, now: datetime) -> bool:
    """accepted → funded or failed."""
    to = PromptStatus.FUNDED if funded else PromptStatus.FAILED
    moved = _move(
        session, [prompt_id], from_statuses=(PromptStatus.ACCEPTED.value,), to=to, now=now
    )
    return moved == 1


def decline(session: Session, prompt_id: int, *, now: datetime) -> bool:
    moved = _move(
        session,
        [prompt_id],
        from_statuses=(PromptStatus.PENDING.value,),
        to=PromptStatus.DECLINED,
        now=now,
    )
    return moved == 1


def expire(session: Session, prompt_ids: Iterable[int], *, now: datetime) -> int:
    """pending → expired for those past their expiry."""
    return _move(
        session,
        prompt_ids,
        from_statuses=(PromptStatus.PENDING.value,),
        to=PromptStatus.EXPIRED,
        now=now,
        expired_only=True,
    )


def expire_due(session: Session, *, now: datetime) -> int:
    """pending → expired for every offer past its expiry (the expiry job)."""
    statement = (
        update(Prompt)
        .where(
            col(Prompt.status) == PromptStatus.PENDING.value,
            col(Prompt.expires_at) <= now,
        )
        .values(status=PromptStatus.EXPIRED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def cancel_pending(session: Session, account_ids: Iterable[int], *, now: datetime) -> int:
    """Withdraw every pending offer of these accounts (a charge already accepted goes on)."""
    ids = list(account_ids)
    if not ids:
        return 0
    pending = session.exec(
        select(Prompt.id).where(
            col(Prompt.account_id).in_(ids), Prompt.status == PromptStatus.PENDING.value
        )
    )
    return _move(
        session,
        [i for i in pending if i is not None],
        from_statuses=(PromptStatus.PENDING.value,),
        to=PromptStatus.CANCELLED,
        now=now,
    )


def is_open(status: str) -> bool:
    return status in OPEN_PROMPT_STATUSES
