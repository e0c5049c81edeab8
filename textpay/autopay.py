"""AutoPay: charging an enrolled account's preset amount on the subscriber's standing consent.

Owns the merchant-initiated charge for a low account (within the deposit limits, with a key
unique per episode and attempt so a retry can never be mistaken for a repeat), and what follows
its outcome: a receipt; or a decline notice and a retry on a bounded schedule (by default
+1 day, then +3 days); after the last decline AutoPay turns itself off, says so, and the account
falls back to TextPay offers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from textpay import consent, engine, episodes, funding, messages, replies
from textpay.localtime import when
from textpay.models import Account, ConsentKind, Message
from textpay.payments import Initiator
from textpay.policy import EffectiveSettings, delivery_rules


def idempotency_key(account: Account) -> str:
    return f"autopay-{account.id}-e{account.episode_seq}-a{account.autopay_failures}"


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
    """Phase 1 of an AutoPay charge. The unique key makes a second clock's try fail instead of
    charging twice."""
    return funding.begin(
        session,
        account,
        prompt_id=None,
        amount_cents=settings.preset_amount_cents,
        fee_cents=settings.deposit_fee_cents,
        initiator=Initiator.MERCHANT,
        idempotency_key=idempotency_key(account),
        now=now,
    )


def after_settlement(
    session: Session,
    settlement: funding.Settlement,
    *,
    now: datetime,
    config: engine.EngineConfig,
) -> Message:
    """Tell the subscriber and schedule what comes next. Returns the queued text."""
    attempt = settlement.attempt
    retry_days = config.autopay_retry_days
    account = session.get(Account, attempt.account_id)
    assert account is not None
    spoken = engine.voice(session, config)
    facts = engine.account_facts(session, account, now=now)
    rules = delivery_rules(session, account)
    send_at = rules.next_allowed(now)
    if attempt.status == "succeeded":
        text = replies.receipt(
            facts,
            key="autopay_receipt",
            amount_cents=attempt.amount_cents,
            fee_cents=attempt.fee_cents,
            new_balance_cents=settlement.new_balance_cents,
            card_last4=attempt.card_last4,
            confirmation=attempt.confirmation,
            voice=spoken,
        )
        kind = "autopay_receipt"
        # A successful charge ends AutoPay's part of the episode, so that the next time the
        # account runs low its charge gets a fresh key (and the daily limit still bounds it).
        episodes.rearm(account, now=now)
        session.add(account)
    else:
        account.autopay_failures += 1
        reason = replies.decline_reason(attempt.decline_reason, account.language)
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
            key = "autopay_disabled"
            retry = ""
        else:
            account.autopay_retry_at = now + timedelta(
                days=retry_days[account.autopay_failures - 1]
            )
            key = "autopay_declined"
            retry = when(account.autopay_retry_at, now, facts.timezone, account.language)
        text = replies.fill(
            key,
            account.language,
            spoken,
            card=attempt.card_last4,
            label=facts.label,
            reason=reason,
            retry=retry,
        )
        kind = key
        account.updated_at = now
        session.add(account)
    return messages.queue_outbound(
        session,
        phone=account.phone,
        account_id=account.id,
        body=text,
        kind=kind,
        now=now,
        send_after=send_at,
        engine_initiated=True,
    )
