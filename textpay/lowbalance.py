"""The low-balance scan: which accounts need an offer, a reminder or an AutoPay charge now.

Reads only low accounts: the partial index on balance (enrolled, reachable, active accounts)
is range-scanned below the highest threshold in force, then each account is checked against its
own effective threshold. An account gets one offer per low-balance episode and one reminder
after the cooldown; an AutoPay account is charged instead, unless a decline has it waiting for
its retry. Offers are written with the moment their text may go out (quiet hours), and last
their full time from then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, text, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay import engine, episodes, messages, prompts, replies
from textpay.accounts import payment_method_of
from textpay.models import (
    ACCOUNT_IN_EPISODE,
    OPEN_PROMPT_STATUSES,
    SCANNABLE_ACCOUNT,
    Account,
    AttemptStatus,
    Facility,
    Message,
    PaymentAttempt,
    PaymentMethod,
    Prompt,
)
from textpay.policy import (
    EffectiveSettings,
    delivery_rules_for,
    get_global_settings,
    resolve,
    state_windows,
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


@dataclass(frozen=True)
class QueuedText:
    """What the scan queued for one account: enough to count, print and check it."""

    phone: str
    kind: str
    body: str
    send_after: datetime


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
    global_settings = get_global_settings(session)
    facilities = {f.id: f for f in session.exec(select(Facility))}
    result = Plan()
    result.rearmed = _rearm_recovered(session, now=now)

    highest_override = session.exec(select(func.max(Account.threshold_cents))).one() or 0
    ceiling = max(
        [global_settings.low_balance_threshold_cents, highest_override]
        + [f.low_balance_threshold_cents or 0 for f in facilities.values()]
    )
    low = low_accounts(session, ceiling=ceiling)
    ids = [a.id for a in low if a.id is not None]
    busy = _with_open_prompt(session, ids) | _with_charge_in_flight(session, ids)
    for account in low:
        settings = resolve(global_settings, facilities.get(account.facility_id), account)
        if account.balance_cents >= settings.low_balance_threshold_cents:
            continue  # low for someone else's threshold, not its own
        action = _action(account, settings, busy, now=now)
        if action is None:
            result.skipped += 1
        else:
            result.candidates.append(Candidate(account, settings, action))
    return result


def _action(
    account: Account, settings: EffectiveSettings, busy: set[int], *, now: datetime
) -> Action | None:
    if account.id in busy:
        return None
    if account.autopay_enabled:
        if account.autopay_retry_at is not None and now < account.autopay_retry_at:
            return None
        return Action.AUTOPAY
    if not account.textpay_enabled:
        return None
    if account.episode_prompts == 0:
        return Action.PROMPT
    cooldown = timedelta(hours=settings.prompt_cooldown_hours)
    last = account.episode_last_prompt_at
    if account.episode_prompts == 1 and last is not None and last + cooldown <= now:
        return Action.REMINDER
    return None


def make_offer(
    session: Session, candidate: Candidate, *, now: datetime, config: engine.EngineConfig
) -> QueuedText | None:
    """Create the offer and queue its text (held until quiet hours end, if need be). Returns
    the queued text, or None when no offer can be made (no card on file)."""
    account = candidate.account
    assert account.id is not None
    if payment_method_of(session, account.id) is None:
        return None  # nothing to charge: the operator must add a card first
    global_settings = get_global_settings(session)
    rules = delivery_rules_for(account, candidate.settings, state_windows(global_settings))
    send_at = rules.next_allowed(now)
    offer = prompts.offer(session, account, candidate.settings, now=now, starts_at=send_at)
    text = replies.offer(
        engine.account_facts(session, account, now=now),
        offer.amount_cents,
        offer.fee_cents,
        offer.expires_at,
        now=send_at,
        voice=engine.voice(session, config),
    )
    text_message = messages.queue_outbound(
        session,
        phone=account.phone,
        account_id=account.id,
        body=text,
        kind=candidate.action.value,
        now=now,
        send_after=send_at,
        engine_initiated=True,
    )
    account.episode_prompts += 1
    account.episode_last_prompt_at = now
    account.updated_at = now
    session.add(account)
    assert text_message.send_after is not None
    return QueuedText(text_message.phone, text_message.kind, text_message.body,
                      text_message.send_after)  # fmt: skip


def make_offers(
    session: Session, candidates: list[Candidate], *, now: datetime, config: engine.EngineConfig
) -> list[QueuedText]:
    """`make_offer` for a batch, with one query for the cards and one flush for all the rows
    (the scan's fast path; a conflict fails the whole batch, which the caller then retries one
    offer at a time). Candidates without a card on file are left out."""
    ids = [c.account.id for c in candidates if c.account.id is not None]
    cards = {
        m.account_id: m
        for m in session.exec(select(PaymentMethod).where(col(PaymentMethod.account_id).in_(ids)))
    }
    windows = state_windows(get_global_settings(session))
    spoken = engine.voice(session, config)
    offers: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    made: list[int] = []
    for candidate in candidates:
        account, card = candidate.account, cards.get(candidate.account.id or 0)
        if card is None or account.id is None:
            continue
        send_at = delivery_rules_for(account, candidate.settings, windows).next_allowed(now)
        offer = prompts.offer_row(account, candidate.settings, now=now, starts_at=send_at)
        facts = engine.account_facts_from(
            account, candidate.settings, card, deposited_last_24h_cents=0
        )
        body = replies.offer(facts, candidate.settings.preset_amount_cents,
                             candidate.settings.deposit_fee_cents, offer["expires_at"],
                             now=send_at, voice=spoken)  # fmt: skip
        offers.append(offer)
        texts.append(
            messages.outbound_row(phone=account.phone, account_id=account.id, body=body,
                                  kind=candidate.action.value, now=now, send_after=send_at,
                                  engine_initiated=True)
        )  # fmt: skip
        made.append(account.id)
    if not made:
        return []
    # Plain multi-row INSERTs and one UPDATE: the ORM's per-object bookkeeping would cost
    # more than the database does here.
    session.execute(insert(Prompt), offers)
    session.execute(insert(Message), texts)
    session.execute(
        update(Account)
        .where(col(Account.id).in_(made))
        .values(
            episode_prompts=Account.episode_prompts + 1,
            episode_last_prompt_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return [QueuedText(t["phone"], t["kind"], t["body"], t["send_after"]) for t in texts]


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


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
