"""One turn of the conversation: a subscriber's text in, effects applied, a reply out.

Orchestrates the pure parts (`conversation`, `replies`) over the database: the facts come from
`textpay.facts`, offers from `textpay.offers`, and a charge's outcome is finished by
`textpay.settlement`. It takes a session and never commits: the webhook view runs `receive` in
one transaction, makes any card charge outside it (`funding.call_gateway`), and runs `finish` in
another, so no transaction is ever held open across the network call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, func
from sqlmodel import Session, select

from textpay import (
    card_links,
    consent,
    conversation,
    episodes,
    funding,
    ledger,
    messages,
    offers,
    passcodes,
    prompts,
    replies,
    settlement,
)
from textpay import facts as gathered_facts
from textpay.conversation import (
    AskPasscode,
    Decision,
    DeclineOffer,
    Facts,
    Fund,
    OfferAgain,
    OptIn,
    OptOut,
    PasscodeTried,
    Reply,
    SetAutopay,
    SetLanguage,
    TopUp,
)
from textpay.db import core, on_postgresql
from textpay.engine_config import EngineConfig, voice
from textpay.errors import ValidationFailed
from textpay.models import (
    Account,
    ConsentKind,
    Message,
    MessageDirection,
    PaymentAttempt,
    Prompt,
    PromptStatus,
)
from textpay.money import format_cents
from textpay.payments import ChargeResult, ChargeStatus, Initiator
from textpay.phones import to_e164
from textpay.policy import effective_for_account
from textpay.redaction import PASSCODE_MASK, mask_four_digit_runs, storable

DAY = timedelta(hours=24)
# The inbound flood limit (`EngineConfig.inbound_per_minute`) counts texts over this window.
FLOOD_WINDOW = timedelta(minutes=1)
# First key of the flood limit's per-number advisory locks ("TPIN"), apart from the consent
# and outbox locks on the same numbers (`consent.CONSENT_LOCK_CLASS`, `outbox.PHONE_LOCK_SPACE`).
# A turn takes it before any consent lock, and nothing takes them the other way round.
INBOUND_LOCK_SPACE = 0x5450494E
# Built once, as an expression rather than text: SQLAlchemy then knows its one result column
# and does not read the cursor's description on every webhook.
_LOCK_NUMBER = select(
    func.pg_advisory_xact_lock(bindparam("space"), func.hashtext(bindparam("phone", type_=String)))
)


# Texts whose decision may move money, or offer to: they need the day's deposits.
_MOVES_MONEY = frozenset(
    {conversation.Intent.CONFIRM, conversation.Intent.TOP_UP, conversation.Intent.PASSCODE}
)


@dataclass(frozen=True)
class InboundSms:
    sid: str
    sender: str
    body: str
    request_id: str | None = None  # the web request's id, kept on the message for its logs


@dataclass(frozen=True)
class Turn:
    """The result of the first phase. `reply` is the answer when no charge is needed (None:
    say nothing); with `charge`, the answer waits for the card."""

    message_id: int
    reply: str | None
    charge: funding.ChargeOrder | None = None
    replayed: bool = False
    label: str | None = None  # the charged account's label on the phone, for the receipt
    intent: str = "replay"  # what the words asked (`conversation.Intent`), for the metrics


def receive(session: Session, sms: InboundSms, *, now: datetime, config: EngineConfig) -> Turn:
    """Phase 1 of a turn: record the text once, decide, apply what needs no card.

    The hot path of every webhook, so it reads the phone once (`facts.gather_for_text`: its
    accounts, offers, cards, consent, whether this SID was seen, the flood count) and records
    the text with its answer in one insert; a BAL is three statements."""
    phone = to_e164(sms.sender, default_region=config.default_region, field="From")
    command = conversation.parse(sms.body)
    weighed = command.intent is not conversation.Intent.OPT_OUT
    if weighed:
        _lock_number_for_flood_count(session, phone)
    found = gathered_facts.gather_for_text(
        session,
        phone,
        now=now,
        carrier_answers_keywords=config.carrier_answers_keywords,
        with_deposits=command.intent in _MOVES_MONEY,
        sid=sms.sid,
        inbound_since=now - FLOOD_WINDOW if weighed else None,
    )
    if found.seen_message_id is not None:
        return _replayed(session, found.seen_message_id, config, now=now)
    facts = found.facts
    body = _storable(sms.body, command, facts)
    account_id = facts.accounts[0].account_id if facts.accounts else None
    if weighed and found.recent_inbound + 1 > config.inbound_per_minute:
        # Recorded, not answered: a runaway script or a loop between two bots costs nothing.
        message_id = messages.record_inbound(
            session, sid=sms.sid, phone=phone, body=body, account_id=account_id, now=now,
            reply_body="", request_id=sms.request_id, wait_for_disk=False,
        )  # fmt: skip
        return Turn(message_id, None, intent="flood")
    if command.passcode is not None:
        facts = _check_passcode(found, command.passcode)
    decision = conversation.decide(facts, command)
    language = _language(facts, command, decision)
    spoken = voice(session, config)

    reply = decision.reply
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
            answer = _offer_again(session, effect.account_id, facts, now=now, config=config)
        elif isinstance(effect, TopUp):
            answer = _offer_again(session, effect.account_id, facts, now=now, config=config,
                                  top_up=effect)  # fmt: skip
        elif isinstance(effect, Fund):
            charge, answer = _accept(session, effect, found, now=now, config=config)
        elif isinstance(effect, AskPasscode):
            if not passcodes.ask(session, effect.prompt_id, effect.amount_cents, now=now):
                reply = None  # it expired between the read and the update
                answer = _offer_again(session, effect.account_id, facts, now=now, config=config)
        elif isinstance(effect, PasscodeTried):
            tried = facts.account(effect.account_id)
            passcodes.record_try(session, effect.account_id, right=effect.right, lock=effect.lock,
                                 tries_left=tried.passcode_tries_left, now=now)  # fmt: skip

    link = _link_for(session, reply, phone=phone, now=now, config=config)
    if reply is not None:
        answer = replies.render(reply, facts, language=language, now=now, voice=spoken,
                                link=link)  # fmt: skip
    # Stored with any card link masked: the link works only from the text it went out in. With
    # a charge, the answer waits for the card (a replay meanwhile hears "processing").
    message_id = messages.record_inbound(
        session,
        sid=sms.sid,
        phone=phone,
        body=body,
        account_id=account_id,
        now=now,
        reply_body=None if charge is not None else card_links.masked(answer or ""),
        request_id=sms.request_id,
        # A turn that changed nothing (no effect, no card link made) writes only this record,
        # which need not wait for the disk; every other turn's commit waits.
        wait_for_disk=bool(decision.effects) or link is not None,
    )
    label = facts.account(charge_account).label if (charge_account := _charged(decision)) else None
    return Turn(message_id, answer, charge, label=label, intent=command.intent.value)


def _storable(body: str, command: conversation.Command, facts: Facts) -> str:
    """The text as it may be kept: card numbers masked, a text of four digits alone masked
    whole (it may be a passcode, asked for or not), while a passcode is asked for every four
    digits in any text, and on a phone with a passcode account every four digits that are not
    an account's label (`YES 2468` sent before the passcode was asked for; `YES 4821` names
    an account and is kept: a passcode is never its account's last four digits)."""
    if command.intent is conversation.Intent.PASSCODE:
        return PASSCODE_MASK
    kept = storable(body)
    if any(o.passcode == "open" for o in facts.offers):
        return mask_four_digit_runs(kept)
    if any(a.has_passcode for a in facts.accounts):
        labels = {a.label for a in facts.accounts} | {o.label_sent or "" for o in facts.offers}
        return mask_four_digit_runs(kept, keep=frozenset(labels))
    return kept


def _check_passcode(found: gathered_facts.PhoneFacts, typed: str) -> Facts:
    """The facts with the verdict on four digits typed while a passcode request is open: the
    passcode of the account whose request it is (a slow hash: only then is it checked)."""
    request = conversation.passcode_request(found.facts)
    if request is None:
        return found.facts
    account = next(a for a in found.accounts if a.id == request.account_id)
    locked = found.facts.account(request.account_id).passcode_locked_until is not None
    if account.passcode_hash is None or locked:
        return found.facts  # locked, or the passcode was cleared: not checked, never charged
    return replace(found.facts, passcode_right=passcodes.matches(account.passcode_hash, typed))


def _charged(decision: Decision) -> int | None:
    return next((e.account_id for e in decision.effects if isinstance(e, Fund)), None)


def _replayed(session: Session, message_id: int, config: EngineConfig, *, now: datetime) -> Turn:
    """A MessageSid seen before: Twilio retried, and gets the answer it got the first time."""
    seen = session.get(Message, message_id)
    assert seen is not None
    if seen.direction != MessageDirection.INBOUND.value:
        # SIDs are unique across both directions (one column, one key), and Twilio never gives
        # a text it delivers to us the SID of one we sent: refused, nothing recorded.
        raise ValidationFailed.single("MessageSid", "is the SID of a text TextPay sent")
    return Turn(message_id, _replay_answer(session, seen, config, now=now), replayed=True)


def finish(
    session: Session,
    turn: Turn,
    result: ChargeResult | None,
    *,
    now: datetime,
    config: EngineConfig,
) -> str:
    """Phase 3 of a turn: settle the charge (or say it is still processing) and reply. The
    receipt is the reply unless someone else (the reconciler, for a charge this slow) already
    told the subscriber, or telling failed and will be retried by text. Nothing is said to a
    number that opted out while its card was charged: its STOP confirmation is the last text."""
    assert turn.charge is not None
    if result is None or result.status is ChargeStatus.PENDING:
        attempt = session.get(PaymentAttempt, turn.charge.attempt_id)
        assert attempt is not None
        answer = _processing(session, attempt, voice(session, config))
    else:
        outcome = settlement.settle(session, turn.charge.attempt_id, result, now=now,
                                    config=config, by_reply=True, label=turn.label)  # fmt: skip
        answer = outcome.reply or ""
    said = messages.record_reply(session, turn.message_id, answer,
                                 stored=card_links.masked(answer), now=now)  # fmt: skip
    return answer if said else ""


def _lock_number_for_flood_count(session: Session, phone: str) -> None:
    """Weigh turns from one number one at a time for the flood limit, or two turns side by side
    each miss the other's uncommitted text and both answer (eight parallel senders got 21-24
    answers against a limit of 20): on PostgreSQL a transaction-scoped advisory lock per number,
    taken before counting and held until commit; on SQLite the write lock taken at BEGIN
    already serialises every turn. STOP never takes it, so it never waits."""
    if on_postgresql(session):
        core(session).execute(_LOCK_NUMBER, {"space": INBOUND_LOCK_SPACE, "phone": phone})


def _replay_answer(
    session: Session, seen: Message, config: EngineConfig, *, now: datetime
) -> str | None:
    """The answer already given to this MessageSid; while its charge is still in flight,
    "processing" (and nothing is charged again)."""
    if seen.reply_body is not None:
        if card_links.MASKED in seen.reply_body:
            # The first answer's link is stored only masked: the replay gets a fresh one for
            # the same account (Twilio retries when our first answer never reached it).
            account_id = card_links.latest_account(session, seen.phone, since=seen.created_at)
            return card_links.fill_in(session, seen.reply_body, account_id=account_id,
                                      phone=seen.phone, now=now) or None  # fmt: skip
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
        label=gathered_facts.labels_on_phone(session, account.phone)[account.account_number],
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
        if effect.enabled and not account.autopay_enabled:
            episodes.restart_autopay(account, now=now)
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


def _offer_again(
    session: Session, account_id: int, facts: Facts, *, now: datetime, config: EngineConfig,
    top_up: TopUp | None = None,
) -> str:  # fmt: skip
    """The offer to answer a YES that found none it could accept, or a top-up asked for by
    text (`top_up`); nothing is charged. An offer still pending (not yet acceptable: its text
    waits in the outbox, or went out a moment ago; or, for a top-up, live) is given again as it
    is, unless the top-up asks for another amount: then it is withdrawn and replaced, so only
    the amount last offered can be accepted. One that expired or failed, or that named a card
    no longer on file, is replaced by a fresh one."""
    # Its row held while its offers are looked at and one is made (PostgreSQL; on SQLite the
    # write lock taken at BEGIN already holds every other writer off). The scan locks the row
    # the same way before it checks for an open offer and makes one, so the two never both
    # make one (the second would break the one-open-offer index).
    account = ledger.lock_account(session, account_id)
    amount = top_up.amount_cents if top_up is not None else None
    words = "top_up" if top_up is not None else "offer"
    stale = prompts.latest_for(session, [account_id]).get(account_id)
    if stale is not None and stale.status == PromptStatus.PENDING.value:
        if stale.expires_at <= now:
            prompts.expire(session, [stale.id or 0], now=now)
        elif amount is not None and amount != stale.amount_cents:
            prompts.cancel_pending(session, [account_id], now=now)  # replaced by what was asked
        else:
            given = offers.present_waiting(session, stale, now=now, config=config, words=words)
            if given is not None:
                return given
            prompts.cancel_pending(session, [account_id], now=now)  # its card is gone
    fresh = offers.make_reply(
        session, account, effective_for_account(session, account), now=now, config=config,
        amount_cents=amount, words=words,
    )  # fmt: skip
    spoken = voice(session, config)
    if fresh is None:
        reply = Reply("no_card", account_id=account_id)
        link = _link_for(session, reply, phone=account.phone, now=now, config=config)
        return replies.render(reply, facts, language=facts.account(account_id).language,
                              now=now, voice=spoken, link=link)  # fmt: skip
    return fresh.body


def _link_for(
    session: Session, reply: Reply | None, *, phone: str, now: datetime, config: EngineConfig
) -> str | None:
    """A fresh card link for a reply that carries one (CARD, a YES on an account with no
    card), texted to `phone`; None for other replies and for none."""
    if reply is None or reply.key not in replies.LINK_REPLIES or reply.account_id is None:
        return None
    account = session.get(Account, reply.account_id)
    assert account is not None
    token = card_links.issue(session, account, phone=phone, now=now)
    return card_links.url(config.link_base, token)


def _accept(
    session: Session, fund: Fund, found: gathered_facts.PhoneFacts, *, now: datetime,
    config: EngineConfig,
) -> tuple[funding.ChargeOrder | None, str | None]:  # fmt: skip
    """Win the prompt (pending → accepted) and record the charge to make. A reply that lost the
    race to another one for the same prompt charges nothing and says why."""
    facts = found.facts
    offer = next(o for o in facts.offers if o.prompt_id == fund.prompt_id)
    if prompts.accept(session, fund.prompt_id, now=now):
        account = next(a for a in found.accounts if a.id == fund.account_id)
        order = funding.begin(
            session,
            account,
            prompt_id=fund.prompt_id,
            amount_cents=fund.amount_cents,
            fee_cents=offer.fee_cents,
            initiator=Initiator.CUSTOMER,
            now=now,
            card=found.cards.get(fund.account_id),
        )
        return order, None
    prompt = session.exec(
        select(Prompt).where(Prompt.id == fund.prompt_id).execution_options(populate_existing=True)
    ).one()
    language = facts.account(fund.account_id).language
    if prompt.status == PromptStatus.PENDING.value:  # it expired between the read and the update
        return None, _offer_again(session, fund.account_id, facts, now=now, config=config)
    if prompt.status == PromptStatus.ACCEPTED.value:
        reply = Reply("already_processing", account_id=fund.account_id)
    else:
        reply = Reply("no_offer")
    return None, replies.render(
        reply, facts, language=language, now=now, voice=voice(session, config)
    )
