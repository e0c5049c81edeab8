"""Low-balance episodes: one offer per stretch of low balance, re-armed by a top-up.

An episode starts when an account's balance falls below its threshold and ends when the balance
climbs back to it. Within an episode the scan makes one offer (and one reminder after the
cooldown); AutoPay charges once and counts its declines. Ending the episode clears both and advances
`episode_seq`, which keeps AutoPay's slots (one try each) unique.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, null, or_
from sqlmodel import Session, col

from textpay.models import Account
from textpay.policy import effective_for_account


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


def rearm_values(*, new_balance: Any, threshold: Any, now: Any) -> dict[str, Any]:
    """`rearm`, as the column values of an UPDATE that moves the balance to `new_balance`
    (an expression): the episode ends in that same statement if the balance reaches
    `threshold` (an expression too: the account's effective threshold). `now`: a moment, or
    a bound parameter for one."""
    in_episode_now = or_(  # `in_episode`, over the row
        col(Account.episode_prompts) > 0,
        col(Account.episode_autopay_charges) > 0,
        col(Account.autopay_failures) > 0,
        col(Account.autopay_retry_at).is_not(None),
    )
    ends = and_(new_balance >= threshold, in_episode_now)

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


def rearm_if_healthy(session: Session, account: Account, *, now: datetime) -> bool:
    """End the episode if the balance is back at or above the account's threshold."""
    if not in_episode(account):
        return False
    threshold = effective_for_account(session, account).low_balance_threshold_cents
    if account.balance_cents < threshold:
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
