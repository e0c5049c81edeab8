"""Top-up offers ("prompts") and their lifecycle.

    pending ──YES──► accepted ──charge ok──► funded
       │                 └──declined/failed──► failed
       ├──NO──► declined      ├──past expiry──► expired      └──STOP──► cancelled

Every transition here is one conditional UPDATE (`WHERE id = ? AND status = ?`, plus
`expires_at > now` and `acceptable_after <= now` for acceptance) whose row count says whether
this caller won. Two replies racing for one prompt therefore cannot both accept it, whatever the
database's isolation level; and no YES can accept an offer whose text has not gone out yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from sqlalchemy import bindparam, func, update
from sqlmodel import Session, col, select

from textpay.db import core
from textpay.models import OPEN_PROMPT_STATUSES, Account, Prompt, PromptStatus
from textpay.policy import EffectiveSettings


class PresentedOffer(Protocol):
    """What `acceptable` reads of an offer: a `Prompt`, or a text's plain row of one."""

    @property
    def acceptable_after(self) -> datetime | None: ...


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


def acceptable(prompt: PresentedOffer, *, now: datetime) -> bool:
    """Whether a YES received at `now` may accept this offer: its text has gone out (and, for an
    offer sent as a reply, the subscriber has had a moment to read it)."""
    return prompt.acceptable_after is not None and prompt.acceptable_after <= now


def present(session: Session, prompt_id: int, *, acceptable_after: datetime, now: datetime) -> None:
    """The offer's text is being given to the subscriber now (as a reply): it may be accepted
    from `acceptable_after`, unless it already could be."""
    session.execute(
        update(Prompt)
        .where(col(Prompt.id) == prompt_id, col(Prompt.acceptable_after).is_(None))
        .values(acceptable_after=acceptable_after, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def offer(
    session: Session,
    account: Account,
    settings: EffectiveSettings,
    *,
    now: datetime,
    starts_at: datetime | None = None,
    acceptable_after: datetime | None = None,
    label: str | None = None,
    card_token: str | None = None,
) -> Prompt:
    """Create one pending offer row (the partial unique index refuses a second open prompt for
    the account). Only the row: `textpay.offers` makes offers with their texts; this is for
    seeding data in tests and benchmarks."""
    prompt = Prompt(
        **offer_row(
            account,
            settings,
            now=now,
            starts_at=starts_at,
            acceptable_after=acceptable_after,
            label=label,
            card_token=card_token,
        )
    )
    session.add(prompt)
    session.flush()
    return prompt


class OfferedAccount(Protocol):
    """What an offer's row reads of its account: an `Account`, or the scan's plain row."""

    @property
    def id(self) -> int | None: ...
    @property
    def balance_cents(self) -> int: ...


def offer_row(
    account: OfferedAccount,
    settings: EffectiveSettings,
    *,
    now: datetime,
    starts_at: datetime | None = None,
    acceptable_after: datetime | None = None,
    label: str | None = None,
    card_token: str | None = None,
    amount_cents: int | None = None,
) -> dict[str, Any]:
    """An offer's column values (offers are inserted a batch at a time). `acceptable_after` is
    None while the offer's text waits in the outbox; the dispatcher sets it when it goes.
    `label` and `card_token` are how the text names the account and which card it names;
    `amount_cents` what a subscriber asked for (a top-up by text), else the preset."""
    assert account.id is not None
    return {
        "account_id": account.id,
        "status": PromptStatus.PENDING.value,
        "amount_cents": settings.preset_amount_cents if amount_cents is None else amount_cents,
        "fee_cents": settings.deposit_fee_cents,
        "balance_at_offer_cents": account.balance_cents,
        "expires_at": (starts_at or now) + timedelta(minutes=settings.prompt_ttl_minutes),
        "acceptable_after": acceptable_after,
        "label": label,
        "card_token": card_token,
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
    """Move these prompts from one of `from_statuses` to `to`; `live_only` also requires the
    offer to be unexpired and acceptable now. Returns how many moved."""
    ids = list(prompt_ids)
    if not ids:
        return 0
    if len(ids) == 1 and not expired_only:  # every text's YES, and its settlement
        moved = core(session).execute(
            _move_one(from_statuses, to, live_only=live_only),
            {"prompt_id": ids[0], "now": now},
        )
        return int(moved.rowcount)
    statement = (
        update(Prompt)
        .where(col(Prompt.id).in_(ids), col(Prompt.status).in_(from_statuses))
        .values(status=to.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if live_only:
        statement = statement.where(
            col(Prompt.expires_at) > now, col(Prompt.acceptable_after) <= now
        )
    if expired_only:
        statement = statement.where(col(Prompt.expires_at) <= now)
    return int(core(session).execute(statement).rowcount)


@cache
def _move_one(from_statuses: tuple[str, ...], to: PromptStatus, *, live_only: bool) -> Any:
    """`_move` of one prompt, built once per transition with bound parameters."""
    now: Any = bindparam("now")
    statement = (
        update(Prompt)
        .where(col(Prompt.id) == bindparam("prompt_id"), col(Prompt.status).in_(from_statuses))
        .values(status=to.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if live_only:
        statement = statement.where(col(Prompt.expires_at) > now,
                                    col(Prompt.acceptable_after) <= now)  # fmt: skip
    return statement


def accept(session: Session, prompt_id: int, *, now: datetime) -> bool:
    """pending → accepted, only while the offer is live and its text has gone out. True if
    this caller won."""
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
