"""Low-balance episodes: one offer per stretch of low balance, re-armed by a top-up.

An episode starts when an account becomes low and ends when it is low no more (`is_low`). Low
is below its threshold, or, for a TextPay account without AutoPay whose `runway_days` is on,
short of runway: fewer days of calls left at its usual pace (`textpay.runway`) than that. So
an offer made on the runway rule is not re-armed by a balance that is above the threshold all
along: only by money that lifts the runway back to `runway_days` (or by the pace, recomputed at
a later call charge, falling; or by the estimate lapsing when calls stop). Within an episode
the scan makes one offer (and one reminder after the cooldown); AutoPay charges once and counts
its declines. Ending the episode clears both and advances `episode_seq`, which keeps AutoPay's
slots (one try each) unique.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, case, false, not_, null, or_
from sqlmodel import Session, col

from textpay import runway
from textpay.models import Account
from textpay.policy import EffectiveSettings, effective_for_account


class RunwayAccount(Protocol):
    """What the runway rule reads of an account: an `Account`, or a plain row of one."""

    @property
    def balance_cents(self) -> int: ...
    @property
    def textpay_enabled(self) -> bool: ...
    @property
    def autopay_enabled(self) -> bool: ...
    @property
    def usage_pace_cents(self) -> int | None: ...
    @property
    def usage_pace_hours(self) -> int | None: ...
    @property
    def usage_pace_until(self) -> datetime | None: ...


def runway_days_left(account: RunwayAccount, *, now: datetime) -> int | None:
    """Days of calls the account's balance buys at its stored usual pace, if known."""
    return runway.stored_days_left(account.balance_cents, account.usage_pace_cents,
                                   account.usage_pace_hours, account.usage_pace_until,
                                   now=now)  # fmt: skip


def runway_low(account: RunwayAccount, settings: EffectiveSettings, *, now: datetime) -> bool:
    """Low by the runway rule: a TextPay account without AutoPay whose runway is known and
    under its `runway_days`."""
    if settings.runway_days is None or account.autopay_enabled or not account.textpay_enabled:
        return False
    return runway.below(runway_days_left(account, now=now), settings.runway_days)


def is_low(account: RunwayAccount, settings: EffectiveSettings, *, now: datetime) -> bool:
    """Low by either rule: below its threshold, or short of runway. An episode lasts while
    this holds, and ends (re-arms) once it does not."""
    return account.balance_cents < settings.low_balance_threshold_cents or runway_low(
        account, settings, now=now
    )


def in_episode(account: Account) -> bool:
    return bool(
        account.episode_prompts
        or account.episode_autopay_charges
        or account.autopay_failures
        or account.autopay_retry_at
    )


def rearm(account: Account, *, now: datetime) -> None:
    account.episode_seq += 1
    account.episode_prompts = 0
    account.episode_last_prompt_at = None
    account.episode_autopay_charges = 0
    account.autopay_failures = 0
    account.autopay_retry_at = None
    account.updated_at = now


def rearm_values(
    *, new_balance: Any, threshold: Any, now: Any, runway_days: Any = None
) -> dict[str, Any]:
    """`rearm`, as the column values of an UPDATE that moves the balance to `new_balance`
    (an expression): the episode ends in that same statement if the account is no longer low
    (`is_low`): the balance reaches `threshold` (an expression too: the account's effective
    threshold) and, when `runway_days` is given (the account's effective setting, an
    expression that may be null), the runway is not short of it. `now`: a moment, or a bound
    parameter for one."""
    in_episode_now = or_(  # `in_episode`, over the row
        col(Account.episode_prompts) > 0,
        col(Account.episode_autopay_charges) > 0,
        col(Account.autopay_failures) > 0,
        col(Account.autopay_retry_at).is_not(None),
    )
    short = false() if runway_days is None else _runway_short(new_balance, runway_days, now)
    ends = and_(new_balance >= threshold, not_(short), in_episode_now)

    def unless_ended(column: Any, ended: Any) -> Any:
        return case((ends, ended), else_=column)

    return {
        "episode_seq": unless_ended(col(Account.episode_seq), col(Account.episode_seq) + 1),
        "episode_prompts": unless_ended(col(Account.episode_prompts), 0),
        "episode_last_prompt_at": unless_ended(col(Account.episode_last_prompt_at), null()),
        "episode_autopay_charges": unless_ended(col(Account.episode_autopay_charges), 0),
        "autopay_failures": unless_ended(col(Account.autopay_failures), 0),
        "autopay_retry_at": unless_ended(col(Account.autopay_retry_at), null()),
        "updated_at": unless_ended(col(Account.updated_at), now),
    }


def _runway_short(new_balance: Any, runway_days: Any, now: Any) -> Any:
    """`runway_low` over the row, for the balance `new_balance`: never null (each null makes
    one of its terms false), so that `not_` of it is true when the rule does not apply."""
    return and_(
        col(Account.textpay_enabled),
        not_(col(Account.autopay_enabled)),
        runway_days.is_not(None),
        col(Account.usage_pace_cents).is_not(None),
        col(Account.usage_pace_until) > now,
        # `runway.days_left < runway_days`, in whole hours (see `textpay.runway.below`).
        new_balance * col(Account.usage_pace_hours) // col(Account.usage_pace_cents)
        < runway_days * 24,
    )


# With no money in, an episode ends on the runway rule only once the runway is this many times
# `runway_days`: a 30-day pace drifts as calls come and go (a few small calls spread the same
# charges over a longer span), and an episode that ended on such a drift would offer again for
# a balance nobody added to.
RECOVERED_RUNWAY_FACTOR = 2


def recovered_without_money(
    account: RunwayAccount, settings: EffectiveSettings, *, now: datetime
) -> bool:
    """Whether an episode may end when no money came in (the scan's sweep, after an operator's
    change): back at the threshold, and the runway, if the rule applies and it is known, at
    `RECOVERED_RUNWAY_FACTOR` times `runway_days`."""
    if account.balance_cents < settings.low_balance_threshold_cents:
        return False
    if settings.runway_days is None or account.autopay_enabled or not account.textpay_enabled:
        return True
    left = runway_days_left(account, now=now)
    return left is None or left >= RECOVERED_RUNWAY_FACTOR * settings.runway_days


def rearm_if_healthy(
    session: Session, account: Account, *, now: datetime, money_in: bool = True
) -> bool:
    """End the episode if the account is no longer low by either rule (`is_low`); with no
    money in (`money_in=False`), only once it has clearly recovered (`recovered_without_money`)."""
    if not in_episode(account):
        return False
    settings = effective_for_account(session, account)
    if is_low(account, settings, now=now):
        return False
    if not money_in and not recovered_without_money(account, settings, now=now):
        return False
    rearm(account, now=now)
    session.add(account)
    return True


def restart_autopay(account: Account, *, now: datetime) -> None:
    """AutoPay switched on again (by the subscriber or an operator): a fresh schedule, not the
    declines that once turned it off. It is a new series of tries, so it gets AutoPay slots of
    its own (the old series may have used this episode's first ones)."""
    account.episode_seq += 1
    account.autopay_failures = 0
    account.autopay_retry_at = None
    account.updated_at = now
