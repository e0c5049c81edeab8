"""Settling a charge whose outcome is known: the one place a payment is finished.

Whoever learns a charge's outcome (the webhook that charged a YES, the scan that charged an
AutoPay account, the reconciler that asked the gateway later) calls `settle` and nothing else.
In the caller's transaction it

1. settles the attempt and posts the deposit (`textpay.funding`), once: a second caller for the
   same attempt changes nothing and gets nothing to say;
2. only if this call settled it: moves the offer to funded or failed, or advances AutoPay's
   schedule (one charge per low episode; after a decline, a retry on the schedule or AutoPay
   off), and re-arms the episode when the deposit brought the balance back;
3. tells the subscriber, once (`notified_at` is claimed by a conditional update): as the words
   of the caller's reply, or as a text in the outbox. Telling runs in a savepoint: if rendering
   or queueing fails, the money and the state above still commit, `notified_at` stays empty,
   and `tell_untold` (run by the reconciler) tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, text, update
from sqlmodel import Session, col, select

from textpay import (
    autopay,
    card_links,
    episodes,
    facts,
    funding,
    ledger,
    messages,
    prompts,
    replies,
)
from textpay.db import core
from textpay.engine_config import EngineConfig, voice
from textpay.localtime import when
from textpay.models import (
    UNTOLD_ATTEMPT,
    Account,
    AttemptStatus,
    Message,
    PaymentAttempt,
)
from textpay.payments import AUTHENTICATION_REQUIRED, ChargeResult, Initiator
from textpay.policy import (
    cached_global_settings,
    delivery_rules,
    low_balance_threshold_column,
    runway_days_column,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    attempt: PaymentAttempt
    changed: bool  # this call settled the attempt (False: someone else already had)
    new_balance_cents: int | None  # None: this call settled a decline (the balance is as was)
    reply: str | None = None  # the words for the caller's reply, when it asked to tell by reply
    queued: Message | None = None  # the text queued, when it asked to tell by text


def settle(
    session: Session,
    attempt_id: int,
    result: ChargeResult,
    *,
    now: datetime,
    config: EngineConfig,
    by_reply: bool,
    label: str | None = None,
) -> Outcome:
    """Finish a charge whose outcome is `result`. With `by_reply` the caller answers the
    subscriber itself (the webhook's TwiML) and gets the words in `Outcome.reply`; otherwise
    the outcome is queued as a text. `label`: the account's label on its phone, when the caller
    already knows it (the webhook read it a moment ago).

    A YES answered by reply is the hot path, so its telling is claimed in the statement that
    settles the attempt, and a deposit re-arms the episode in the statement that moves the
    balance; the reply is held back if the number opts out meanwhile by the caller
    (`messages.record_reply`), which records it after this returns."""
    held = cached_global_settings(session)
    default_threshold = held.low_balance_threshold_cents

    def rearm(attempt: PaymentAttempt) -> ledger.RowChanges | None:
        # AutoPay's deposits re-arm after its schedule moves (`_follow_up`), so not here.
        if attempt.initiator != Initiator.CUSTOMER.value:
            return None
        return ledger.RowChanges(_rearm_if_back, {"default_threshold": default_threshold,
                                                  "default_runway_days": held.runway_days,
                                                  "rearmed_at": now})  # fmt: skip

    settlement = funding.settle(session, attempt_id, result, now=now, claim_telling=by_reply,
                                deposit_also=rearm)  # fmt: skip
    attempt = settlement.attempt
    if settlement.changed:
        _follow_up(session, attempt, now=now, config=config)
    outcome = Outcome(attempt, settlement.changed, settlement.new_balance_cents)
    if settlement.changed and by_reply:
        return _reply(session, outcome, now=now, config=config, label=label,
                      account=settlement.account)  # fmt: skip
    return tell(session, outcome, now=now, config=config, by_reply=by_reply)


def _rearm_if_back(new_balance: Any) -> dict[str, Any]:
    """The episode ends in the deposit's own statement if the balance is back at the account's
    threshold (its own, its facility's, else `:default_threshold`) and, where the runway rule
    is on (`:default_runway_days` the global setting, null for off), the runway is too."""
    threshold = low_balance_threshold_column(default=bindparam("default_threshold"))
    runway_days = runway_days_column(default=bindparam("default_runway_days", type_=Integer))
    return episodes.rearm_values(new_balance=new_balance, threshold=threshold,
                                 now=bindparam("rearmed_at"),
                                 runway_days=runway_days)  # fmt: skip


def _reply(
    session: Session,
    outcome: Outcome,
    *,
    now: datetime,
    config: EngineConfig,
    label: str | None,
    account: Account | None,
) -> Outcome:
    """The words of a reply whose telling was claimed when the attempt was settled. If they
    cannot be made, the claim is given back and `tell_untold` texts them later.

    The words are made in a savepoint: a statement of theirs that fails (a timeout, say) aborts
    a PostgreSQL transaction, and without the savepoint the settled deposit would be rolled back
    with it after the card was charged."""
    attempt = outcome.attempt
    try:
        with session.begin_nested():
            words, _, _ = _words(session, attempt, now=now, config=config, live_link=True,
                                 label=label, account=account)  # fmt: skip
    except Exception:
        log.exception("telling the outcome of payment attempt %s failed", attempt.id)
        session.execute(
            update(PaymentAttempt)
            .where(col(PaymentAttempt.id) == attempt.id)
            .values(notified_at=None)
            .execution_options(synchronize_session=False)
        )
        return outcome
    return replace(outcome, reply=words)


def tell(
    session: Session, outcome: Outcome, *, now: datetime, config: EngineConfig, by_reply: bool
) -> Outcome:
    """Tell the subscriber a settled attempt's outcome, unless someone already has."""
    attempt = outcome.attempt
    try:
        with session.begin_nested():
            if not _claim_telling(session, attempt.id or 0, now=now):
                return outcome
            if by_reply and messages.number_opted_out(session, attempt.notify_phone):
                # STOP arrived while the card was charged: its confirmation is the last text.
                return outcome
            words, kind, engine_initiated = _words(session, attempt, now=now, config=config,
                                                   live_link=by_reply)  # fmt: skip
            if by_reply:
                return replace(outcome, reply=words)
            account = session.get(Account, attempt.account_id)
            assert account is not None
            send_after = delivery_rules(session, account).next_allowed(now) if engine_initiated \
                else now  # fmt: skip
            queued = messages.queue_outbound(
                session,
                phone=attempt.notify_phone,
                account_id=attempt.account_id,
                body=words,
                kind=kind,
                now=now,
                send_after=send_after,
                engine_initiated=engine_initiated,
            )
            return replace(outcome, queued=queued)
    except Exception:
        # The money above is settled whatever happens to the words: log, leave `notified_at`
        # empty, and let `tell_untold` try again.
        log.exception("telling the outcome of payment attempt %s failed", attempt.id)
        return outcome


def untold(session: Session, *, older_than: datetime, limit: int = 100) -> list[int]:
    """Settled attempts whose outcome nobody has told yet (telling failed, or a crash came
    between settling and telling), settled before `older_than`."""
    return [
        attempt_id
        for attempt_id in session.exec(
            select(PaymentAttempt.id)
            .where(text(UNTOLD_ATTEMPT), col(PaymentAttempt.settled_at) < older_than)
            .order_by(col(PaymentAttempt.id))
            .limit(limit)
        )
        if attempt_id is not None
    ]


def tell_untold(
    session: Session, attempt_id: int, *, now: datetime, config: EngineConfig
) -> Outcome | None:
    attempt = session.get(PaymentAttempt, attempt_id)
    if attempt is None or attempt.status == AttemptStatus.PENDING.value:
        return None
    account = session.get(Account, attempt.account_id)
    assert account is not None
    outcome = Outcome(attempt, changed=False, new_balance_cents=account.balance_cents)
    return tell(session, outcome, now=now, config=config, by_reply=False)


def words_for(session: Session, attempt: PaymentAttempt, *, now: datetime,
              config: EngineConfig) -> str:  # fmt: skip
    """What the subscriber is told about a settled attempt (for a replayed webhook)."""
    return _words(session, attempt, now=now, config=config, live_link=False)[0]


def _follow_up(
    session: Session, attempt: PaymentAttempt, *, now: datetime, config: EngineConfig
) -> None:
    """The offer and AutoPay's schedule after this call settled `attempt`. A subscriber's
    deposit already re-armed the episode, if the balance is back, in its own statement."""
    succeeded = attempt.status == AttemptStatus.SUCCEEDED.value
    if attempt.prompt_id is not None:
        prompts.settle(session, attempt.prompt_id, funded=succeeded, now=now)
    if attempt.initiator == Initiator.MERCHANT.value:
        account = session.get(Account, attempt.account_id)
        assert account is not None
        autopay.advance_schedule(
            session, account, succeeded=succeeded, retry_days=config.autopay_retry_days, now=now
        )
        if succeeded:
            episodes.rearm_if_healthy(session, account, now=now)
        session.add(account)


def _claim_telling(session: Session, attempt_id: int, *, now: datetime) -> bool:
    won = (
        core(session)
        .execute(
            update(PaymentAttempt)
            .where(
                col(PaymentAttempt.id) == attempt_id,
                col(PaymentAttempt.notified_at).is_(None),
                col(PaymentAttempt.status) != AttemptStatus.PENDING.value,
            )
            .values(notified_at=now)
            .execution_options(synchronize_session=False)
        )
        .rowcount
    )
    return bool(won)


def _words(
    session: Session,
    attempt: PaymentAttempt,
    *,
    now: datetime,
    config: EngineConfig,
    live_link: bool,
    label: str | None = None,
    account: Account | None = None,
) -> tuple[str, str, bool]:
    """The words, the outbox kind, and whether the text is TextPay's own initiative (AutoPay:
    held for quiet hours) rather than the answer to the subscriber's YES.

    A failure's words carry a card link. `live_link`: a working one, made now (the words are
    the webhook's reply); else the link is masked (`/card/[link]`) and the dispatcher makes it
    when the text leaves, so that the token is never stored and its 30 minutes start when the
    subscriber can read it (a text held for quiet hours included). `account`: the account as
    the caller already holds it, if it does."""
    account = account or session.get(Account, attempt.account_id)
    assert account is not None
    spoken = voice(session, config)
    known = replace(
        facts.account_facts(session, account, now=now, with_deposits=False, with_card=False,
                            label=label),
        language=attempt.language,
    )  # fmt: skip
    merchant = attempt.initiator == Initiator.MERCHANT.value
    if attempt.status == AttemptStatus.SUCCEEDED.value:
        key = "autopay_receipt" if merchant else "receipt"
        words = replies.receipt(
            known,
            key=key,
            amount_cents=attempt.amount_cents,
            fee_cents=attempt.fee_cents,
            new_balance_cents=account.balance_cents,
            card_last4=attempt.card_last4,
            confirmation=attempt.confirmation,
            voice=spoken,
        )
        return words, key, merchant
    reason = replies.decline_reason(attempt.decline_reason, attempt.language)
    if live_link:
        token = card_links.issue(session, account, phone=attempt.notify_phone, now=now,
                                 language=attempt.language)  # fmt: skip
        link = card_links.url(config.link_base, token)
    else:
        link = card_links.placeholder_url(config.link_base)
    if not merchant:
        key = "card_declined" if attempt.status == AttemptStatus.DECLINED.value else \
            "charge_failed"  # fmt: skip
        if key == "card_declined" and attempt.decline_reason == AUTHENTICATION_REQUIRED:
            # Not the card refused: its bank wants the holder to confirm, which the card
            # link's page is for.
            key = "card_needs_confirmation"
        words = replies.fill(key, attempt.language, spoken, card=attempt.card_last4,
                             label=known.label, reason=reason, link=link)  # fmt: skip
        return card_links.masked(words) if not live_link else words, "payment_failed", False
    if account.autopay_enabled and account.autopay_retry_at is not None:
        key = "autopay_declined"
        retry = when(account.autopay_retry_at, now, known.timezone, attempt.language,
                     name_zone=known.zone_named)  # fmt: skip
    else:
        key, retry = "autopay_disabled", ""
    words = replies.fill(key, attempt.language, spoken, card=attempt.card_last4,
                         label=known.label, reason=reason, retry=retry, link=link)  # fmt: skip
    return card_links.masked(words) if not live_link else words, key, True
