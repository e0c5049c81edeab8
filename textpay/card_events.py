"""Applying what a card processor's webhook reports: each event once, whatever it says.

Owns the `gateway_event` table (one row per processor event id ever applied) and what each
fact (`textpay.payments.events`) does, in the caller's transaction:

- the event id is recorded first, in a savepoint: a redelivered event, or five deliveries of
  one event racing each other, find the id taken (a unique key, so the database decides) and
  change nothing;
- `ChargeSucceeded` / `ChargeFailed` finish a charge still pending (one that timed out, or that
  the processor was still processing) through `textpay.settlement`, the only finisher of
  charges; a charge already settled is left alone;
- `RefundsReported` goes to `textpay.card_refunds.confirm_from_gateway`. A refund of a charge
  still pending here (its success not yet delivered) settles the charge as succeeded first,
  found by our key the event carries; a refund of a charge settled declined or failed here is
  logged as an error and changes nothing;
- `DisputeOpened` records the dispute and turns AutoPay off on every account whose card on file
  is the disputed card, with an audit entry and a text. It posts nothing to the ledger and never
  suspends or blocks an account: a chargeback is the card holder's right (the CFPB's 2024 order
  against a prison-telecom payments business bans punishing it), and YES still charges;
- `DisputeClosed` records how the dispute ended, and does nothing else;
- `CardSetupCompleted` (a card link's hosted card page was completed; the webhook has asked the
  gateway which card it saved, before this transaction) makes that card the link's account's
  card through `textpay.card_links.redeem_checkout`: once, audited as the subscriber's, with
  the confirmation text.

An event about something TextPay does not know (another integration's charge, a dispute on a
charge made elsewhere) is acknowledged and logged: the processor would otherwise retry it for
days, and no retry can make it known.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy import insert, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from textpay import audit, card_links, card_refunds, consent, facts, messages, replies, settlement
from textpay.db import is_unique_violation
from textpay.engine_config import EngineConfig, voice
from textpay.models import (
    Account,
    AttemptStatus,
    ConsentKind,
    Dispute,
    GatewayEvent,
    PaymentAttempt,
    PaymentMethod,
    fit,
)
from textpay.payments import ChargeResult, ChargeStatus
from textpay.payments.events import (
    CardEvent,
    CardSetupCompleted,
    ChargeFailed,
    ChargeSucceeded,
    DisputeClosed,
    DisputeOpened,
    Ignored,
    RefundsReported,
)
from textpay.policy import delivery_rules

log = logging.getLogger(__name__)

ACTOR = "gateway"
DISPUTE_AUTOPAY_OFF = "account.autopay_off_dispute"
DISPUTE_TEXT = "autopay_off_dispute"  # the template, and the outbox kind


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event id was applied before: nothing changed
    IGNORED = "ignored"  # a type TextPay does not act on, or lacking what it would need
    UNKNOWN = "unknown"  # about a charge or dispute TextPay has no record of
    ALREADY_SETTLED = "already_settled"  # the charge was finished before this event came


def apply(
    session: Session,
    event_id: str,
    type: str,
    fact: CardEvent,
    *,
    now: datetime,
    config: EngineConfig,
) -> Applied:
    """Apply one verified event, once. The caller's transaction holds the event's row and its
    effects together: if the effects fail, the row goes too, and the redelivery applies it."""
    if not _record_event(session, event_id, type, now=now):
        log.info("gateway event %s (%s) was applied before", _safe(event_id), _safe(type))
        return Applied.DUPLICATE
    if isinstance(fact, ChargeSucceeded):
        result = ChargeResult(ChargeStatus.SUCCEEDED, charge_id=fact.charge_id)
        return _settle(session, event_id, fact.idempotency_key, result, now=now, config=config)
    if isinstance(fact, ChargeFailed):
        result = ChargeResult(
            ChargeStatus.DECLINED, charge_id=fact.charge_id, decline_reason=fact.reason
        )
        return _settle(session, event_id, fact.idempotency_key, result, now=now, config=config)
    if isinstance(fact, RefundsReported):
        return _refunds(session, event_id, fact, now=now, config=config)
    if isinstance(fact, DisputeOpened):
        return _dispute_opened(session, event_id, fact, now=now, config=config)
    if isinstance(fact, DisputeClosed):
        return _dispute_closed(session, event_id, fact, now=now)
    if isinstance(fact, CardSetupCompleted):
        return _card_set_up(session, event_id, fact, now=now, config=config)
    assert isinstance(fact, Ignored)
    log.info("gateway event %s (%s) ignored: %s", _safe(event_id), _safe(type), fact.why)
    return Applied.IGNORED


def _record_event(session: Session, event_id: str, type_: str, *, now: datetime) -> bool:
    """Take the event's id: False when it was taken already (applied, or being applied by a
    concurrent delivery, which the unique key makes this one wait for)."""
    event_id = fit(GatewayEvent, "event_id", event_id) or ""
    seen = session.exec(select(GatewayEvent.id).where(GatewayEvent.event_id == event_id)).first()
    if seen is not None:
        return False
    try:
        # A savepoint, so that losing the race undoes only this insert and the caller's
        # transaction stays usable (PostgreSQL aborts a transaction on any failed statement).
        with session.begin_nested():
            session.execute(
                insert(GatewayEvent).values(
                    event_id=event_id,
                    type=fit(GatewayEvent, "type", type_) or "",
                    received_at=now,
                )
            )
    except IntegrityError as error:
        if not is_unique_violation(error):
            raise
        return False
    return True


def _settle(
    session: Session,
    event_id: str,
    key: str,
    result: ChargeResult,
    *,
    now: datetime,
    config: EngineConfig,
) -> Applied:
    attempt = session.exec(
        select(PaymentAttempt).where(PaymentAttempt.idempotency_key == key)
    ).first()
    if attempt is None or attempt.id is None:
        log.warning("gateway event %s names a charge TextPay has no record of", _safe(event_id))
        return Applied.UNKNOWN
    if attempt.status != AttemptStatus.PENDING.value:
        if (attempt.status == AttemptStatus.SUCCEEDED.value) != result.succeeded:
            # Settled one way here, the other way at the processor (say a charge the reconciler
            # gave up on after the key's lifetime, that went through after all): money and
            # ledger disagree, and only an operator can decide. Never settled a second time.
            log.error(
                "payment attempt %s is %s but gateway event %s reports %s",
                attempt.id,
                attempt.status,
                _safe(event_id),
                result.status.value,
            )
        return Applied.ALREADY_SETTLED
    settlement.settle(session, attempt.id, result, now=now, config=config, by_reply=False)
    log.info("payment attempt %s settled %s by gateway event", attempt.id, result.status.value)
    return Applied.APPLIED


def _refunds(
    session: Session, event_id: str, fact: RefundsReported, *, now: datetime, config: EngineConfig
) -> Applied:
    attempt = _refunded_attempt(session, fact)
    if attempt is not None and attempt.id is not None:
        if attempt.status == AttemptStatus.PENDING.value:
            # Only a charge that succeeded can be refunded, and a processor does not order its
            # events: this refund came before the charge's success (a YES that timed out). The
            # charge is settled first, so the refund has a deposit to come out of; the success
            # delivered later finds it settled and changes nothing.
            result = ChargeResult(ChargeStatus.SUCCEEDED, charge_id=fact.charge_id)
            attempt = settlement.settle(
                session, attempt.id, result, now=now, config=config, by_reply=False
            ).attempt
            log.info("payment attempt %s settled succeeded by a refund event", attempt.id)
        if attempt.status != AttemptStatus.SUCCEEDED.value:
            # Declined or failed here, refunded at the processor: money and ledger disagree,
            # and only an operator can decide (as with any contradicting payment event).
            log.error(
                "payment attempt %s is %s but gateway event %s reports a refund of it",
                attempt.id,
                attempt.status,
                _safe(event_id),
            )
            return Applied.ALREADY_SETTLED
    confirmed = card_refunds.confirm_from_gateway(
        session, charge_id=fact.charge_id, refunds=fact.refunds, now=now, config=config
    )
    log.info("gateway event %s: %d refund(s) reported", _safe(event_id), len(confirmed))
    return Applied.APPLIED


def _refunded_attempt(session: Session, fact: RefundsReported) -> PaymentAttempt | None:
    """The attempt whose charge was refunded: by the charge id recorded when it settled, else
    (still pending: no charge id yet) by our key the event carries for the charge."""
    charge_id = fit(PaymentAttempt, "charge_id", fact.charge_id)
    attempt = session.exec(
        select(PaymentAttempt)
        .where(PaymentAttempt.charge_id == charge_id)
        .order_by(col(PaymentAttempt.id))
    ).first()
    if attempt is not None or not fact.charge_key:
        return attempt
    key = fit(PaymentAttempt, "idempotency_key", fact.charge_key)
    return session.exec(select(PaymentAttempt).where(PaymentAttempt.idempotency_key == key)).first()


def _dispute_opened(
    session: Session, event_id: str, fact: DisputeOpened, *, now: datetime, config: EngineConfig
) -> Applied:
    dispute_id = fit(Dispute, "gateway_dispute_id", fact.dispute_id) or ""
    if session.exec(select(Dispute.id).where(Dispute.gateway_dispute_id == dispute_id)).first():
        return Applied.ALREADY_SETTLED  # the same dispute told again by another event
    names = [fact.charge_id] + ([fact.other_charge_id] if fact.other_charge_id else [])
    names = [fit(PaymentAttempt, "charge_id", name) or "" for name in names]
    attempt = session.exec(
        select(PaymentAttempt)
        .where(or_(*(col(PaymentAttempt.charge_id) == name for name in names)))
        .order_by(col(PaymentAttempt.id))
    ).first()
    if attempt is None or attempt.id is None:
        log.warning("gateway event %s disputes a charge TextPay has no record of", _safe(event_id))
        return Applied.UNKNOWN
    session.add(
        Dispute(
            account_id=attempt.account_id,
            attempt_id=attempt.id,
            gateway_dispute_id=dispute_id,
            amount_cents=fact.amount_cents,
            reason=fit(Dispute, "reason", fact.reason) or "",
            status=fit(Dispute, "status", fact.status) or "",
            created_at=now,
        )
    )
    session.flush()
    turned_off = _autopay_off_for_card(session, attempt, now=now, config=config)
    log.info(
        "dispute on payment attempt %s recorded; AutoPay turned off on %d account(s)",
        attempt.id,
        turned_off,
    )
    return Applied.APPLIED


def _autopay_off_for_card(
    session: Session, attempt: PaymentAttempt, *, now: datetime, config: EngineConfig
) -> int:
    """AutoPay off on every account that would charge the disputed card again by itself (the
    card may be on file for several accounts). Texts and YES go on as before: the subscriber
    still chooses each charge, and the account is not touched otherwise."""
    if not attempt.card_token:
        return 0
    accounts = session.exec(
        select(Account)
        .join(PaymentMethod, col(PaymentMethod.account_id) == col(Account.id))
        .where(PaymentMethod.token == attempt.card_token, col(Account.autopay_enabled))
        .order_by(col(Account.id))
    ).all()
    spoken = voice(session, config)
    for account in accounts:
        before = audit.snapshot(account)
        account.autopay_enabled = False
        account.autopay_retry_at = None
        account.updated_at = now
        session.add(account)
        session.flush()
        audit.record(
            session,
            actor=ACTOR,
            action=DISPUTE_AUTOPAY_OFF,
            entity_type="account",
            entity_id=account.id,
            before=before,
            after=audit.snapshot(account),
            now=now,
        )
        consent.record(
            session,
            phone=account.phone,
            kind=ConsentKind.AUTOPAY_OFF,
            words=f"card ...{attempt.card_last4} disputed with the bank",
            source=ACTOR,
            now=now,
            account_id=account.id,
        )
        label = facts.account_facts(session, account, now=now).label
        words = replies.fill(
            DISPUTE_TEXT, account.language, spoken, label=label, card=attempt.card_last4
        )
        # TextPay's own initiative: held to the recipient's sending window; kept as withheld,
        # never sent, when the number has opted out.
        messages.queue_outbound(
            session,
            phone=account.phone,
            account_id=account.id,
            body=words,
            kind=DISPUTE_TEXT,
            now=now,
            send_after=delivery_rules(session, account).next_allowed(now),
            engine_initiated=True,
        )
    return len(accounts)


def _dispute_closed(
    session: Session, event_id: str, fact: DisputeClosed, *, now: datetime
) -> Applied:
    dispute_id = fit(Dispute, "gateway_dispute_id", fact.dispute_id) or ""
    dispute = session.exec(select(Dispute).where(Dispute.gateway_dispute_id == dispute_id)).first()
    if dispute is None:
        log.warning("gateway event %s closes a dispute TextPay has no record of", _safe(event_id))
        return Applied.UNKNOWN
    dispute.status = fit(Dispute, "status", fact.status) or dispute.status
    dispute.closed_at = dispute.closed_at or now
    session.add(dispute)
    return Applied.APPLIED


def _card_set_up(
    session: Session,
    event_id: str,
    fact: CardSetupCompleted,
    *,
    now: datetime,
    config: EngineConfig,
) -> Applied:
    if fact.card is None or not fact.card.token:
        # The webhook resolves the card before applying; a fact without one is a caller's bug,
        # and is not recorded as applied with nothing done.
        raise ValueError("a completed card setup must carry the card the gateway saved")
    outcome = card_links.redeem_checkout(
        session,
        session_id=fact.session_id,
        link_reference=fact.reference,
        card=fact.card,
        now=now,
        config=config,
    )
    if outcome is card_links.Refusal.UNKNOWN:
        log.warning(
            "gateway event %s completes a card page no card link of ours started",
            _safe(event_id),
        )
        return Applied.UNKNOWN
    if isinstance(outcome, card_links.Refusal):
        log.info("gateway event %s: its card link was used already", _safe(event_id))
        return Applied.ALREADY_SETTLED
    log.info("gateway event %s: account %s has a new card on file", _safe(event_id),
             outcome.account.id)  # fmt: skip
    return Applied.APPLIED


def _safe(value: str) -> str:
    """A processor's id for a log line: printable, and short."""
    return "".join(c if c.isprintable() else "?" for c in value[:80])
