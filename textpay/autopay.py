"""AutoPay: charging an enrolled account's preset amount on the subscriber's standing consent.

Owns the merchant-initiated charge for a low account (within the deposit limits; one try per
"slot", so a second clock's try for the same episode and decline count fails on a unique key
instead of charging again) and AutoPay's schedule: one successful charge per low-balance episode
(the episode re-arms when the balance is back at the threshold); after a decline a retry on a
bounded schedule (by default +1 day, then +3 days); after the last decline AutoPay turns itself
off and the account falls back to TextPay offers. What the subscriber is told is
`textpay.settlement`'s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel import Session

from textpay import consent, funding
from textpay.models import Account, ConsentKind
from textpay.payments import Initiator
from textpay.policy import EffectiveSettings


def slot(account: Account) -> str:
    """Which try this is: the account, its episode and its declines so far in it."""
    return f"{account.id}:e{account.episode_seq}:a{account.autopay_failures}"


class AutoPayState(Protocol):
    """What `due` reads of an account: an `Account`, or the scan's plain row of one."""

    @property
    def autopay_enabled(self) -> bool: ...
    @property
    def episode_autopay_charges(self) -> int: ...
    @property
    def autopay_retry_at(self) -> datetime | None: ...


def due(account: AutoPayState, *, now: datetime) -> bool:
    """Whether AutoPay should charge this (low) account now."""
    if not account.autopay_enabled or account.episode_autopay_charges > 0:
        return False
    return account.autopay_retry_at is None or account.autopay_retry_at <= now


def within_limits(
    session: Session, account: Account, settings: EffectiveSettings, now: datetime
) -> bool:
    amount = settings.preset_amount_cents
    if not settings.min_deposit_cents <= amount <= settings.max_deposit_cents:
        return False
    assert account.id is not None
    deposited = funding.deposited_since(session, account.id, now - timedelta(hours=24))
    return deposited + amount <= settings.daily_deposit_limit_cents


def begin(
    session: Session, account: Account, settings: EffectiveSettings, *, now: datetime
) -> funding.ChargeOrder:
    """Phase 1 of an AutoPay charge. The unique slot makes a second clock's try fail instead
    of charging twice."""
    return funding.begin(
        session,
        account,
        prompt_id=None,
        amount_cents=settings.preset_amount_cents,
        fee_cents=settings.deposit_fee_cents,
        initiator=Initiator.MERCHANT,
        now=now,
        autopay_slot=slot(account),
    )


def advance_schedule(
    session: Session,
    account: Account,
    *,
    succeeded: bool,
    retry_days: tuple[int, ...],
    now: datetime,
) -> None:
    """After an AutoPay charge settled: count it, or schedule the retry, or turn AutoPay off."""
    account.updated_at = now
    if succeeded:
        account.episode_autopay_charges += 1
        account.autopay_failures = 0
        account.autopay_retry_at = None
        return
    account.autopay_failures += 1
    if account.autopay_failures > len(retry_days):
        account.autopay_enabled = False
        account.autopay_retry_at = None
        consent.record(
            session,
            phone=account.phone,
            kind=ConsentKind.AUTOPAY_OFF,
            words=f"{account.autopay_failures} declines in a row",
            source="system",
            now=now,
            account_id=account.id,
        )
        return
    account.autopay_retry_at = now + timedelta(days=retry_days[account.autopay_failures - 1])
