"""The low-balance scan: which accounts need an offer, a reminder or an AutoPay charge now.

Reads only low accounts: the partial index on balance (enrolled, reachable, active accounts)
is range-scanned below the highest threshold in force, then each account is checked against its
own effective threshold. An account gets one offer per low-balance episode and one reminder
after the cooldown; an AutoPay account is charged instead, once per episode, unless a decline
has it waiting for its retry. The offers themselves are made by `textpay.offers`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, text
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay import autopay, episodes
from textpay.models import (
    ACCOUNT_IN_EPISODE,
    OPEN_PROMPT_STATUSES,
    SCANNABLE_ACCOUNT,
    Account,
    AccountStatus,
    AttemptStatus,
    Facility,
    PaymentAttempt,
    Prompt,
)
from textpay.policy import (
    EffectiveSettings,
    get_global_settings,
    resolve,
)

_CHUNK = 500


class Action(StrEnum):
    PROMPT = "prompt"
    REMINDER = "reminder"
    AUTOPAY = "autopay"


@dataclass(frozen=True)
class Candidate:
    account: Account
    settings: EffectiveSettings
    action: Action


@dataclass
class Plan:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: int = 0
    rearmed: int = 0


def low_accounts_query(ceiling: int) -> SelectOfScalar[Account]:
    """Enrolled, reachable, active accounts with a balance below `ceiling`: a range scan of the
    partial index `ix_account_low_balance_scan`, whatever the number of healthy accounts."""
    return select(Account).where(col(Account.balance_cents) < ceiling, text(SCANNABLE_ACCOUNT))


def in_episode_query() -> SelectOfScalar[Account]:
    return select(Account).where(text(ACCOUNT_IN_EPISODE))


def low_accounts(session: Session, *, ceiling: int) -> list[Account]:
    return sorted(session.exec(low_accounts_query(ceiling)), key=lambda a: a.id or 0)


def plan(session: Session, *, now: datetime) -> Plan:
    """Decide, without writing anything but re-armed episodes, what the scan should do."""
    rearmed = _rearm_recovered(session, now=now)
    result = _decide(session, now=now)
    result.rearmed = rearmed
    return result


def eligible_now(session: Session, *, now: datetime) -> Counter[Action]:
    """How many accounts a scan run now would act on, by action (an offer, a reminder, an
    AutoPay charge): the scan's own decision, read-only. (The scan first re-arms episodes whose
    balance is back at its threshold; those accounts are not below it, so they count for
    nothing either way.) The console's settings preview compares this before and after a
    change, in a transaction it rolls back."""
    return Counter(candidate.action for candidate in _decide(session, now=now).candidates)


def _decide(session: Session, *, now: datetime) -> Plan:
    global_settings = get_global_settings(session)
    facilities = {f.id: f for f in session.exec(select(Facility))}
    result = Plan()
    highest_override = session.exec(select(func.max(Account.threshold_cents))).one() or 0
    ceiling = max(
        [global_settings.low_balance_threshold_cents, highest_override]
        + [f.low_balance_threshold_cents or 0 for f in facilities.values()]
    )
    low = low_accounts(session, ceiling=ceiling)
    ids = [a.id for a in low if a.id is not None]
    busy = busy_accounts(session, ids)
    for account in low:
        settings = resolve(global_settings, facilities.get(account.facility_id), account)
        if account.balance_cents >= settings.low_balance_threshold_cents:
            continue  # low for someone else's threshold, not its own
        action = action_for(account, settings, busy, now=now)
        if action is None:
            result.skipped += 1
        else:
            result.candidates.append(Candidate(account, settings, action))
    return result


def action_for(
    account: Account, settings: EffectiveSettings, busy: set[int], *, now: datetime
) -> Action | None:
    """What a low account needs now, if anything. `busy` holds the accounts with an open offer
    or a charge in flight. The scan re-checks this on each account's fresh row, so it repeats
    what the scan's index query implies: an operator may have suspended or closed the account,
    or the number may have opted out, since the plan was made."""
    if account.id in busy or account.opted_out:
        return None
    if account.status != AccountStatus.ACTIVE.value:
        return None
    if account.autopay_enabled:
        # One AutoPay charge per episode; after a decline, nothing until the retry is due.
        return Action.AUTOPAY if autopay.due(account, now=now) else None
    if not account.textpay_enabled:
        return None
    if account.episode_prompts == 0:
        return Action.PROMPT
    cooldown = timedelta(hours=settings.prompt_cooldown_hours)
    last = account.episode_last_prompt_at
    if account.episode_prompts == 1 and last is not None and last + cooldown <= now:
        return Action.REMINDER
    return None


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def busy_accounts(session: Session, ids: list[int]) -> set[int]:
    """Of these accounts, those with an open offer or a charge in flight."""
    return _with_open_prompt(session, ids) | _with_charge_in_flight(session, ids)


def _with_open_prompt(session: Session, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(ids):
        found.update(
            session.exec(
                select(Prompt.account_id).where(
                    col(Prompt.account_id).in_(chunk), col(Prompt.status).in_(OPEN_PROMPT_STATUSES)
                )
            )
        )
    return found


def _with_charge_in_flight(session: Session, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(ids):
        found.update(
            session.exec(
                select(PaymentAttempt.account_id).where(
                    col(PaymentAttempt.account_id).in_(chunk),
                    PaymentAttempt.status == AttemptStatus.PENDING.value,
                )
            )
        )
    return found


def _rearm_recovered(session: Session, *, now: datetime) -> int:
    """End the episodes of accounts whose balance has climbed back to their threshold."""
    in_episode = session.exec(in_episode_query())
    count = 0
    for account in in_episode:
        if episodes.rearm_if_healthy(session, account, now=now):
            count += 1
    return count
