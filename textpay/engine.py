"""One turn of the conversation: a subscriber's text in, effects applied, a reply out.

Orchestrates the pure parts (`conversation`, `replies`) over the database. It takes a session and
never commits: the webhook view runs `receive` in one transaction, makes any card charge outside
it (`funding.call_gateway`), and runs `finish` in another, so no transaction is ever held open
across the network call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from textpay import consent, conversation, funding, messages, prompts, replies
from textpay.accounts import payment_method_of
from textpay.conversation import (
    AccountFacts,
    Decision,
    DeclineOffer,
    Facts,
    Fund,
    OfferAgain,
    OfferFacts,
    OptIn,
    OptOut,
    Reply,
    SetAutopay,
    SetLanguage,
)
from textpay.localtime import FALLBACK_ZONE
from textpay.models import (
    Account,
    AccountStatus,
    ConsentKind,
    Message,
    MessageDirection,
    PaymentAttempt,
    PaymentMethod,
    Prompt,
    PromptStatus,
)
from textpay.money import format_cents
from textpay.payments import ChargeResult, ChargeStatus, Initiator
from textpay.phones import to_e164
from textpay.policy import (
    EffectiveSettings,
    effective_for_account,
    get_global_settings,
    stored_place,
)
from textpay.redaction import storable

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class EngineConfig:
    program: str = "TextPay"
    support: str = "textpay.example/help"
    carrier_answers_keywords: bool = False
    default_region: str = "US"
    autopay_retry_days: tuple[int, ...] = (1, 3)
    # Texts one number may send per minute before TextPay stops answering (STOP always works).
    inbound_per_minute: int = 20


@dataclass(frozen=True)
class InboundSms:
    sid: str
    sender: str
    body: str


@dataclass(frozen=True)
class Turn:
    """The result of the first phase. `reply` is the answer when no charge is needed (None:
    say nothing); with `charge`, the answer waits for the card."""

    message_id: int
    reply: str | None
    charge: funding.ChargeOrder | None = None
    replayed: bool = False


def voice(session: Session, config: EngineConfig) -> replies.Voice:
    cap = get_global_settings(session).daily_message_cap
    return replies.Voice(program=config.program, support=config.support, messages_per_day=cap)


def account_facts(
    session: Session, account: Account, *, now: datetime, with_deposits: bool = True
) -> AccountFacts:
    """The facts `decide` needs about an account. Today's deposits (two sums) are only looked
    up when a decision may move money: a BAL or HELP does not pay for them."""
    assert account.id is not None
    deposited = funding.deposited_since(session, account.id, now - DAY) if with_deposits else 0
    return account_facts_from(
        account,
        effective_for_account(session, account),
        payment_method_of(session, account.id),
        deposited_last_24h_cents=deposited,
    )


def account_facts_from(
    account: Account,
    effective: EffectiveSettings,
    method: PaymentMethod | None,
    *,
    deposited_last_24h_cents: int,
) -> AccountFacts:
    """The facts about an account from what the caller already loaded (the scan loads a whole
    batch at once)."""
    assert account.id is not None
    return AccountFacts(
        account_id=account.id,
        label=account.account_number[-4:],
        nickname=account.nickname,
        language=account.language,
        timezone=account.timezone or (stored_place(account)[1] or (FALLBACK_ZONE,))[0],
        balance_cents=account.balance_cents,
        balance_as_of=account.balance_updated_at,
        autopay_enabled=account.autopay_enabled,
        card_last4=method.last4 if method else None,
        preset_amount_cents=effective.preset_amount_cents,
        threshold_cents=effective.low_balance_threshold_cents,
        min_deposit_cents=effective.min_deposit_cents,
        max_deposit_cents=effective.max_deposit_cents,
        daily_limit_cents=effective.daily_deposit_limit_cents,
        deposited_last_24h_cents=deposited_last_24h_cents,
    )


def gather_facts(
    session: Session,
    phone: str,
    *,
    now: datetime,
    config: EngineConfig,
    with_deposits: bool = True,
) -> Facts:
    owned = consent.accounts_of(session, phone)
    active = [a for a in owned if a.status == AccountStatus.ACTIVE.value]
    latest = prompts.latest_for(session, (a.id for a in active if a.id is not None))
    offers = tuple(
        OfferFacts(
            prompt_id=p.id or 0,
            account_id=p.account_id,
            status=p.status,
            amount_cents=p.amount_cents,
            fee_cents=p.fee_cents,
            expires_at=p.expires_at,
            live=p.status == PromptStatus.PENDING.value and p.expires_at > now,
        )
        for p in latest.values()
    )
    return Facts(
        accounts=tuple(
            account_facts(session, a, now=now, with_deposits=with_deposits) for a in active
        ),
        offers=offers,
        opted_out=any(a.opted_out for a in owned),
        carrier_answers_keywords=config.carrier_answers_keywords,
    )


def receive(session: Session, sms: InboundSms, *, now: datetime, config: EngineConfig) -> Turn:
    """Phase 1 of a turn: record the text once, decide, apply what needs no card."""
    seen = messages.find(session, sms.sid, MessageDirection.INBOUND)
    if seen is not None:
        assert seen.id is not None
        return Turn(seen.id, _replay_answer(session, seen, config), replayed=True)

    phone = to_e164(sms.sender, default_region=config.default_region, field="From")
    body = storable(sms.body)
    command = conversation.parse(sms.body)
    facts = gather_facts(
        session,
        phone,
        now=now,
        config=config,
        with_deposits=command.intent is conversation.Intent.CONFIRM,
    )
    message = messages.record_inbound(
        session,
        sid=sms.sid,
        phone=phone,
        body=body,
        account_id=facts.accounts[0].account_id if facts.accounts else None,
        now=now,
    )
    assert message.id is not None
    if command.intent is not conversation.Intent.OPT_OUT and _flooding(
        session, phone, now=now, limit=config.inbound_per_minute
    ):
        # Recorded, not answered: a runaway script or a loop between two bots costs nothing.
        message.reply_body = ""
        session.add(message)
        return Turn(message.id, None)
    decision = conversation.decide(facts, command)
    language = _language(facts, command, decision)
    spoken = voice(session, config)

    answer: str | None = None
    charge: funding.ChargeOrder | None = None
    for effect in decision.effects:
        if isinstance(effect, OptOut):
            consent.opt_out(session, phone, words=body, source="sms", now=now)
        elif isinstance(effect, OptIn):
            consent.opt_in(session, phone, words=body, source="sms", now=now)
        elif isinstance(effect, SetLanguage):
            for account in consent.accounts_of(session, phone):
                account.language = effect.language
                session.add(account)
        elif isinstance(effect, DeclineOffer):
            prompts.decline(session, effect.prompt_id, now=now)
        elif isinstance(effect, SetAutopay):
            _set_autopay(session, effect, phone=phone, words=body, now=now)
        elif isinstance(effect, OfferAgain):
            answer = _offer_again(session, effect.account_id, now=now, voice=spoken)
        elif isinstance(effect, Fund):
            charge, answer = _accept(session, effect, facts, now=now, voice=spoken)

    if decision.reply is not None:
        answer = replies.render(decision.reply, facts, language=language, now=now, voice=spoken)
    if charge is None:
        message.reply_body = answer or ""
        session.add(message)
    return Turn(message.id, answer, charge)


def finish(
    session: Session,
    turn: Turn,
    result: ChargeResult | None,
    *,
    now: datetime,
    config: EngineConfig,
) -> str:
    """Phase 3 of a turn: settle the charge (or say it is still processing) and reply."""
    assert turn.charge is not None
    message = session.get(Message, turn.message_id)
    attempt = session.get(PaymentAttempt, turn.charge.attempt_id)
    assert message is not None
    assert attempt is not None
    spoken = voice(session, config)
    if result is None or result.status is ChargeStatus.PENDING:
        answer = _processing(session, attempt, spoken)
    else:
        settlement = funding.settle(session, attempt.id or 0, result, now=now)
        answer = settlement_text(session, settlement, now=now, voice=spoken)
    message.reply_body = answer
    message.updated_at = now
    session.add(message)
    return answer


def settlement_text(
    session: Session, settlement: funding.Settlement, *, now: datetime, voice: replies.Voice
) -> str:
    """The receipt, or what went wrong, for a settled charge, in the subscriber's language."""
    attempt = settlement.attempt
    account = session.get(Account, attempt.account_id)
    assert account is not None
    facts = replace(account_facts(session, account, now=now), language=attempt.language)
    if attempt.status == "succeeded":
        return replies.receipt(
            facts,
            amount_cents=attempt.amount_cents,
            fee_cents=attempt.fee_cents,
            new_balance_cents=settlement.new_balance_cents,
            card_last4=attempt.card_last4,
            confirmation=attempt.confirmation,
            voice=voice,
        )
    key = "card_declined" if attempt.status == "declined" else "charge_failed"
    return replies.fill(
        key,
        attempt.language,
        voice,
        card=attempt.card_last4,
        label=facts.label,
        reason=replies.decline_reason(attempt.decline_reason, attempt.language),
    )


def notify_settlement(
    session: Session, settlement: funding.Settlement, *, now: datetime, config: EngineConfig
) -> Message:
    """Queue the outcome of a charge settled after its reply was sent (slow card, crash)."""
    attempt = settlement.attempt
    text = settlement_text(session, settlement, now=now, voice=voice(session, config))
    kind = "receipt" if attempt.status == "succeeded" else "payment_failed"
    return messages.queue_outbound(
        session,
        phone=attempt.notify_phone,
        account_id=attempt.account_id,
        body=text,
        kind=kind,
        now=now,
    )


def _flooding(session: Session, phone: str, *, now: datetime, limit: int) -> bool:
    recent = session.exec(
        select(func.count())
        .select_from(Message)
        .where(
            Message.phone == phone,
            Message.direction == "inbound",
            col(Message.created_at) > now - timedelta(minutes=1),
        )
    ).one()
    return int(recent) > limit


def _replay_answer(session: Session, seen: Message, config: EngineConfig) -> str | None:
    """The answer already given to this MessageSid; while its charge is still in flight,
    "processing" (and nothing is charged again)."""
    if seen.reply_body is not None:
        return seen.reply_body or None
    attempt = session.exec(
        select(PaymentAttempt)
        .where(PaymentAttempt.notify_phone == seen.phone)
        .order_by(PaymentAttempt.id.desc())  # type: ignore[union-attr]
    ).first()
    if attempt is None:
        return None
    return _processing(session, attempt, voice(session, config))


def _processing(session: Session, attempt: PaymentAttempt, spoken: replies.Voice) -> str:
    account = session.get(Account, attempt.account_id)
    assert account is not None
    return replies.fill(
        "processing",
        attempt.language,
        spoken,
        total=format_cents(attempt.amount_cents + attempt.fee_cents),
        label=account.account_number[-4:],
    )


def _language(facts: Facts, command: conversation.Command, decision: Decision) -> str:
    for effect in decision.effects:
        if isinstance(effect, SetLanguage):
            return effect.language
    if facts.accounts:
        return facts.accounts[0].language
    return "es" if command.spanish else "en"


def _set_autopay(
    session: Session, effect: SetAutopay, *, phone: str, words: str, now: datetime
) -> None:
    for account_id in effect.account_ids:
        account = session.get(Account, account_id)
        assert account is not None
        account.autopay_enabled = effect.enabled
        if effect.enabled and effect.amount_cents is not None:
            account.preset_amount_cents = effect.amount_cents
        account.updated_at = now
        session.add(account)
        consent.record(
            session,
            phone=phone,
            kind=ConsentKind.AUTOPAY_ON if effect.enabled else ConsentKind.AUTOPAY_OFF,
            words=words,
            source="sms",
            now=now,
            account_id=account_id,
        )


def _offer_again(session: Session, account_id: int, *, now: datetime, voice: replies.Voice) -> str:
    """A fresh offer in place of one that expired or failed; nothing is charged."""
    stale = prompts.latest_for(session, [account_id]).get(account_id)
    if stale is not None and stale.status == PromptStatus.PENDING.value:
        prompts.expire(session, [stale.id or 0], now=now)
    account = session.get(Account, account_id)
    assert account is not None
    fresh = prompts.offer(session, account, effective_for_account(session, account), now=now)
    facts = account_facts(session, account, now=now)
    return replies.offer(
        facts, fresh.amount_cents, fresh.fee_cents, fresh.expires_at, now=now, voice=voice
    )


def _accept(
    session: Session, fund: Fund, facts: Facts, *, now: datetime, voice: replies.Voice
) -> tuple[funding.ChargeOrder | None, str | None]:
    """Win the prompt (pending → accepted) and record the charge to make. A reply that lost the
    race to another one for the same prompt charges nothing and says why."""
    offer = next(o for o in facts.offers if o.prompt_id == fund.prompt_id)
    if prompts.accept(session, fund.prompt_id, now=now):
        account = session.get(Account, fund.account_id)
        assert account is not None
        order = funding.begin(
            session,
            account,
            prompt_id=fund.prompt_id,
            amount_cents=fund.amount_cents,
            fee_cents=offer.fee_cents,
            initiator=Initiator.CUSTOMER,
            idempotency_key=f"prompt-{fund.prompt_id}",
            now=now,
        )
        return order, None
    prompt = session.exec(
        select(Prompt).where(Prompt.id == fund.prompt_id).execution_options(populate_existing=True)
    ).one()
    language = facts.account(fund.account_id).language
    if prompt.status == PromptStatus.PENDING.value:  # it expired between the read and the update
        return None, _offer_again(session, fund.account_id, now=now, voice=voice)
    if prompt.status == PromptStatus.ACCEPTED.value:
        reply = Reply("already_processing", account_id=fund.account_id)
    else:
        reply = Reply("no_offer")
    return None, replies.render(reply, facts, language=language, now=now, voice=voice)
