"""Card refunds: money an operator sends back to the card a deposit came from, and refunds a
processor reports on its own. Three phases, like a charge (`textpay.funding`):

1. `begin` (the operator's request, in its transaction): under the account's row lock, check
   that the deposit is a card deposit of this account and that the amount is at most its
   unspent part (the deposit less its refunds not failed, never more than the balance now);
   post the `card_refund` debit (reference `card_refund:<operator's Idempotency-Key>`), record
   a pending `CardRefund` with a random key of ours, and audit it. The debit comes before the
   processor is asked so that calls cannot spend the money meanwhile: whatever the processor
   answers, the balance never goes below zero. A replay of the operator's key answers the
   first refund; the same key for another refund is refused.
2. `call_gateway` (outside any transaction): refund the charge with our key. A timeout means
   "unknown", never "failed": the refund stays pending, and the debit stays posted.
3. `settle` (a new transaction), once (a conditional update on `status = 'pending'`):
   succeeded → the processor's refund id, and a text to the subscriber (TextPay's own
   initiative: held to the sending window, withheld for a number that opted out); failed → the
   money goes back on the balance as an `adjustment` entry (reference
   `card_refund_failed:<id>`), never by editing the debit, and no text.

`pending` lists the refunds the reconciler asks again (`ask_again`): by the processor's refund
id whenever it is known, whatever the refund's age (Stripe answers a card refund `pending`
first, and replaying our key answers that first answer again, so only a lookup by id sees it
finish or fail); by replaying our key only while there is no refund id yet (the processor
never answered) and the processor still remembers the key. `confirm_from_gateway` applies what
a processor reports about a charge's refunds (Stripe's `charge.refunded`): it settles ours,
matched by refund id or by our key in the refund's metadata (`textpay_key`), and records a refund
made outside TextPay (an operator in the processor's dashboard) as a `card_refund` debit capped
at the balance, once per refund id.

Lock order, everywhere here: the account's row first, then the refund's. Settling from the web,
the reconciler and a webhook at once can therefore never deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from textpay import audit, episodes, facts, funding, ledger, messages, replies
from textpay.engine_config import EngineConfig, voice
from textpay.errors import IdempotencyConflict, ValidationFailed
from textpay.models import (
    Account,
    AttemptStatus,
    CardRefund,
    CardRefundStatus,
    LedgerEntry,
    LedgerKind,
    Message,
    PaymentAttempt,
    fit,
)
from textpay.money import format_cents
from textpay.payments import (
    GatewayRefund,
    GatewayTimeout,
    PaymentGateway,
    RefundResult,
    RefundStatus,
)
from textpay.policy import delivery_rules

log = logging.getLogger(__name__)

# The actor of what a processor did on its own (a refund in its dashboard, a refusal).
GATEWAY_ACTOR = "gateway"
# The outbox kind of the subscriber's text.
TEXT_KIND = "card_refund"


def refund_reference(request_key: str) -> str:
    """The debit's ledger reference: the operator's Idempotency-Key, namespaced."""
    return f"card_refund:{request_key}"


def gateway_refund_key(refund_id: str) -> str:
    """The request key (and our key) of a refund made outside TextPay: the processor's id."""
    return f"gateway:{refund_id}"


def give_back_reference(card_refund_id: int) -> str:
    return f"card_refund_failed:{card_refund_id}"


@dataclass(frozen=True)
class RefundOrder:
    """What phase 2 needs, detached from any session."""

    card_refund_id: int
    charge_id: str
    amount_cents: int
    idempotency_key: str
    reason: str
    created_at: datetime
    # The processor's refund id, once it answered (a pending refund): asked by it from then on.
    refund_id: str | None = None


@dataclass(frozen=True)
class Begun:
    card_refund_id: int
    # The gateway call still to make (with the same key on a replay of a pending refund);
    # None when the refund is settled already.
    order: RefundOrder | None
    replayed: bool


@dataclass(frozen=True)
class RefundOutcome:
    refund: CardRefund
    changed: bool  # this call settled the refund (False: it was settled before, or still pending)
    give_back: LedgerEntry | None = None  # the adjustment that undid the debit, on failure
    queued: Message | None = None  # the subscriber's text, on success


@dataclass(frozen=True)
class RefundFacts:
    """A refund as the admin API shows it."""

    refund: CardRefund
    deposit_id: int | None
    card_last4: str
    debit: LedgerEntry | None  # None for a processor's refund found when the balance was 0
    give_back: LedgerEntry | None
    balance_cents: int


@dataclass(frozen=True)
class Refundable:
    """How much of a deposit can go back to its card now, and why no more."""

    most_cents: int
    deposit_cents: int
    refunded_cents: int  # refunds of the deposit not failed (pending ones hold their money)
    balance_cents: int


@dataclass(frozen=True)
class Confirmed:
    """What `confirm_from_gateway` did with one refund the processor reported."""

    refund_id: str
    action: str  # settled | recorded | failed | unchanged | pending | not_ours
    card_refund_id: int | None = None
    posted_cents: int = 0  # the debit a refund made outside TextPay posted (capped at the balance)


def begin(
    session: Session,
    *,
    account_id: int,
    deposit_id: int,
    amount_cents: int,
    reason: str,
    request_key: str,
    actor: str,
    now: datetime,
) -> Begun:
    """Phase 1. The caller commits before calling the gateway."""
    # The row lock serialises refunds (and every posting) of this account, so two refunds of one
    # deposit cannot both pass the unspent check below.
    account = ledger.lock_account(session, account_id)
    existing = session.exec(select(CardRefund).where(CardRefund.request_key == request_key)).first()
    if existing is not None:
        return _replay(session, existing, account_id=account_id, deposit_id=deposit_id,
                       amount_cents=amount_cents)  # fmt: skip
    attempt = _charge_of_deposit(session, account_id, deposit_id)
    room = refundable(session, attempt, account)
    if amount_cents > room.most_cents:
        raise ValidationFailed.single("amount_cents", _too_much(deposit_id, room))
    debit = ledger.post(
        session,
        account_id=account_id,
        kind=LedgerKind.CARD_REFUND,
        amount_cents=-amount_cents,
        reference=refund_reference(request_key),
        memo=f"refund to card ...{attempt.card_last4}: {reason}"[:500],
        now=now,
    )
    if debit.replayed:  # the reference is taken but no refund has the key: refuse, move nothing
        raise IdempotencyConflict(
            f"Idempotency-Key {request_key!r} was already used for ledger entry {debit.entry.id}"
        )
    refund = CardRefund(
        account_id=account_id,
        attempt_id=attempt.id or 0,
        amount_cents=amount_cents,
        reason=reason,
        request_key=request_key,
        idempotency_key=funding.new_idempotency_key(),
        actor=actor,
        created_at=now,
    )
    session.add(refund)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="card_refund.requested",
        entity_type="account",
        entity_id=account_id,
        before=None,
        after={**(audit.snapshot(refund) or {}), "deposit_id": deposit_id,
               "ledger_entry_id": debit.entry.id},
        now=now,
    )  # fmt: skip
    return Begun(refund.id or 0, _order(refund, attempt), replayed=False)


def refundable(session: Session, attempt: PaymentAttempt, account: Account) -> Refundable:
    """The unspent part of an attempt's deposit: what it put on the balance, less its refunds
    that have not failed, and never more than the balance now (what was spent on calls cannot
    go back to the card). Read under the account's lock to be exact."""
    refunded = int(
        session.exec(
            select(func.coalesce(func.sum(CardRefund.amount_cents), 0)).where(
                CardRefund.attempt_id == attempt.id,
                CardRefund.status != CardRefundStatus.FAILED.value,
            )
        ).one()
    )
    left = max(0, attempt.amount_cents - refunded)
    return Refundable(min(left, account.balance_cents), attempt.amount_cents, refunded,
                      account.balance_cents)  # fmt: skip


def call_gateway(
    gateway: PaymentGateway, order: RefundOrder, *, timeout_seconds: float
) -> RefundResult | None:
    """Phase 2, outside any transaction. None means no answer in time: the refund stays
    pending and the reconciler asks again with the same key."""
    try:
        return gateway.refund(
            charge_id=order.charge_id,
            amount_cents=order.amount_cents,
            idempotency_key=order.idempotency_key,
            reason=order.reason,
            timeout_seconds=timeout_seconds,
        )
    except GatewayTimeout:
        return None


def settle(
    session: Session,
    card_refund_id: int,
    result: RefundResult,
    *,
    now: datetime,
    config: EngineConfig,
) -> RefundOutcome:
    """Phase 3: record the processor's answer once. A pending answer only records the
    processor's refund id (so its later report can be matched); settling a settled refund
    changes nothing and returns what was recorded."""
    refund = _load(session, card_refund_id)
    ledger.lock_account(session, refund.account_id)  # the lock order: account, then refund
    if result.status is RefundStatus.PENDING:
        if result.refund_id:
            session.execute(
                update(CardRefund)
                .where(
                    col(CardRefund.id) == card_refund_id,
                    col(CardRefund.status) == CardRefundStatus.PENDING.value,
                    col(CardRefund.refund_id).is_(None),
                )
                .values(refund_id=fit(CardRefund, "refund_id", result.refund_id))
                .execution_options(synchronize_session=False)
            )
        return RefundOutcome(_load(session, card_refund_id), changed=False)
    succeeded = result.status is RefundStatus.SUCCEEDED
    values: dict[str, Any] = {
        "status": (CardRefundStatus.SUCCEEDED if succeeded else CardRefundStatus.FAILED).value,
        "settled_at": now,
        "failure_reason": None
        if succeeded
        else fit(CardRefund, "failure_reason", result.failure_reason or "refused"),
    }
    if result.refund_id:
        values["refund_id"] = fit(CardRefund, "refund_id", result.refund_id)
    won = session.execute(
        update(CardRefund)
        .where(
            col(CardRefund.id) == card_refund_id,
            col(CardRefund.status) == CardRefundStatus.PENDING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    refund = _load(session, card_refund_id)
    if not won:
        return RefundOutcome(refund, changed=False, give_back=_give_back_of(session, refund))
    if succeeded:
        queued = _tell(session, refund, refund.amount_cents, now=now, config=config)
        return RefundOutcome(refund, changed=True, queued=queued)
    return RefundOutcome(refund, changed=True, give_back=_give_back(session, refund, now=now))


def pending(session: Session, *, older_than: datetime, limit: int = 100) -> list[int]:
    """Refunds still pending since before `older_than`: the processor did not answer in time,
    or the process died between the phases."""
    return [
        refund_id
        for refund_id in session.exec(
            select(CardRefund.id)
            .where(
                col(CardRefund.status) == CardRefundStatus.PENDING.value,
                col(CardRefund.created_at) < older_than,
            )
            .order_by(col(CardRefund.id))
            .limit(limit)
        )
        if refund_id is not None
    ]


def order_of(session: Session, card_refund_id: int) -> RefundOrder | None:
    """A pending refund's phase-2 order again, for the reconciler; None once it is settled."""
    refund = session.get(CardRefund, card_refund_id)
    if refund is None or refund.status != CardRefundStatus.PENDING.value:
        return None
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    return _order(refund, attempt)


def ask_again(
    gateway: PaymentGateway, order: RefundOrder, *, now: datetime, timeout_seconds: float
) -> RefundResult | None:
    """The reconciler's question about a pending refund, outside any transaction; None when
    there is no answer (no answer in time, or nothing may safely be asked).

    With the processor's refund id: looked up by it (`retrieve_refund`), however old the refund.
    Without one (the processor never answered): our key replayed, while the processor
    remembers it (`may_ask_again`); after that, left to the processor's own report or an
    operator, since a forgotten key could refund twice."""
    if order.refund_id:
        try:
            return gateway.retrieve_refund(order.refund_id, timeout_seconds=timeout_seconds)
        except GatewayTimeout:
            return None
    if not may_ask_again(gateway, order, now=now):
        return None
    return call_gateway(gateway, order, timeout_seconds=timeout_seconds)


def may_ask_again(gateway: PaymentGateway, order: RefundOrder, *, now: datetime) -> bool:
    """Whether asking the processor again with the refund's key is safe. Once the processor may
    have forgotten the key (Stripe keeps one 24 h), the same key could refund twice: the refund
    is then left to the processor's own report (`confirm_from_gateway`) or an operator."""
    lifetime = gateway.key_lifetime
    return lifetime is None or now - order.created_at < lifetime


def describe(session: Session, card_refund_id: int) -> RefundFacts:
    refund = _load(session, card_refund_id)
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    deposit = session.exec(
        select(LedgerEntry).where(LedgerEntry.reference == funding.deposit_reference(attempt))
    ).first()
    debit = session.exec(
        select(LedgerEntry).where(LedgerEntry.reference == refund_reference(refund.request_key))
    ).first()
    account = session.get(Account, refund.account_id)
    assert account is not None
    return RefundFacts(
        refund=refund,
        deposit_id=deposit.id if deposit else None,
        card_last4=attempt.card_last4,
        debit=debit,
        give_back=_give_back_of(session, refund),
        balance_cents=account.balance_cents,
    )


def recent(session: Session, account_id: int, *, limit: int = 20) -> list[CardRefund]:
    """An account's card refunds, newest first."""
    return list(
        session.exec(
            select(CardRefund)
            .where(CardRefund.account_id == account_id)
            .order_by(col(CardRefund.id).desc())
            .limit(limit)
        )
    )


def confirm_from_gateway(
    session: Session,
    *,
    charge_id: str,
    refunds: Sequence[GatewayRefund],
    now: datetime,
    config: EngineConfig,
) -> list[Confirmed]:
    """Apply a processor's report of a charge's refunds, in the caller's transaction. Safe to
    call as often as the processor repeats itself: each refund moves money once.

    `charge_id` is the id the gateway returned as the charge's `ChargeResult.charge_id` (for
    Stripe the PaymentIntent's: a `charge.refunded` event's `payment_intent`, not the `ch_` id).

    - one of ours (matched by refund id, or by our key the processor carries as metadata
      `textpay_key`): settled if still pending; reported failed after it had succeeded (a
      card refund can fail late, the card closed meanwhile): marked failed and its debit given
      back by an adjustment; else unchanged;
    - one made outside TextPay, succeeded: a `card_refund` debit of its amount capped at the
      balance (what was spent on calls cannot be taken back), reference
      `card_refund:gateway:<refund id>`, recorded as a succeeded `CardRefund` by actor
      "gateway" (so that it counts against the deposit's unspent part), audited with a note
      when capped, and texted to the subscriber;
    - anything on a charge TextPay did not make: `not_ours`, nothing done.
    """
    attempt = session.exec(
        select(PaymentAttempt).where(
            PaymentAttempt.charge_id == fit(PaymentAttempt, "charge_id", charge_id)
        )
    ).first()
    if attempt is None:
        return [Confirmed(r.refund_id, "not_ours") for r in refunds]
    ledger.lock_account(session, attempt.account_id)  # before any refund row: the lock order
    done = []
    for reported in refunds:
        ours = _matching(session, attempt, reported)
        if ours is None:
            done.append(_record_outside(session, attempt, reported, now=now, config=config))
            continue
        assert ours.id is not None
        if (
            ours.status == CardRefundStatus.SUCCEEDED.value
            and reported.status is RefundStatus.FAILED
        ):
            # A card refund can fail after it succeeded (the card was closed meanwhile): Stripe
            # keeps the money, so the balance gets back what the debit took.
            done.append(_failed_after_success(session, ours, now=now))
            continue
        if ours.status != CardRefundStatus.PENDING.value:
            done.append(Confirmed(reported.refund_id, "unchanged", ours.id))
            continue
        outcome = settle(
            session,
            ours.id,
            RefundResult(reported.status, reported.refund_id, None if reported.status
                         is not RefundStatus.FAILED else "failed_at_processor"),
            now=now,
            config=config,
        )  # fmt: skip
        action = "settled" if outcome.changed else "pending"
        done.append(Confirmed(reported.refund_id, action, ours.id))
    return done


def _matching(
    session: Session, attempt: PaymentAttempt, reported: GatewayRefund
) -> CardRefund | None:
    # Compared as recorded (`fit`): a refund id longer than the column was stored cut, and
    # would otherwise never match again and be recorded a second time (a unique violation).
    refund_id = fit(CardRefund, "refund_id", reported.refund_id)
    by_id = session.exec(select(CardRefund).where(CardRefund.refund_id == refund_id)).first()
    if by_id is not None or not reported.idempotency_key:
        return by_id
    key = fit(CardRefund, "idempotency_key", reported.idempotency_key)
    return session.exec(
        select(CardRefund).where(
            CardRefund.idempotency_key == key,
            CardRefund.attempt_id == attempt.id,
        )
    ).first()


def _failed_after_success(session: Session, refund: CardRefund, *, now: datetime) -> Confirmed:
    """A refund reported failed after it had succeeded: marked failed (once: a conditional
    update) and its debit, as far as one was posted, given back by an adjustment."""
    assert refund.id is not None
    won = session.execute(
        update(CardRefund)
        .where(
            col(CardRefund.id) == refund.id,
            col(CardRefund.status) == CardRefundStatus.SUCCEEDED.value,
        )
        .values(status=CardRefundStatus.FAILED.value, failure_reason="failed_after_success")
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    refund = _load(session, refund.id)
    if not won:
        return Confirmed(refund.refund_id or "", "unchanged", refund.id)
    debit = session.exec(
        select(LedgerEntry).where(LedgerEntry.reference == refund_reference(refund.request_key))
    ).first()
    posted = -debit.amount_cents if debit is not None else 0  # capped for a dashboard refund
    if posted > 0:
        _give_back(session, refund, now=now, amount_cents=posted)
    return Confirmed(refund.refund_id or "", "failed", refund.id, posted_cents=posted)


def _record_outside(
    session: Session,
    attempt: PaymentAttempt,
    reported: GatewayRefund,
    *,
    now: datetime,
    config: EngineConfig,
) -> Confirmed:
    """A refund made at the processor, not through TextPay: the card has the money back, so
    the balance gives it up, as far as the balance goes."""
    if reported.status is not RefundStatus.SUCCEEDED:
        # Nothing went back to the card (yet): a later report of its success records it.
        return Confirmed(reported.refund_id, "pending")
    account = ledger.lock_account(session, attempt.account_id)
    key = fit(CardRefund, "request_key", gateway_refund_key(reported.refund_id)) or ""
    posted = min(reported.amount_cents, account.balance_cents)
    debit = None
    if posted > 0:
        debit = ledger.post(
            session,
            account_id=account.id or 0,
            kind=LedgerKind.CARD_REFUND,
            amount_cents=-posted,
            reference=refund_reference(key),
            memo=f"refund to card ...{attempt.card_last4} made at the payment processor",
            now=now,
        ).entry
    refund = CardRefund(
        account_id=attempt.account_id,
        attempt_id=attempt.id or 0,
        amount_cents=reported.amount_cents,
        reason="refunded at the payment processor, outside TextPay",
        request_key=key,
        idempotency_key=fit(CardRefund, "idempotency_key", key) or key,
        status=CardRefundStatus.SUCCEEDED.value,
        refund_id=fit(CardRefund, "refund_id", reported.refund_id),
        actor=GATEWAY_ACTOR,
        created_at=now,
        settled_at=now,
    )
    session.add(refund)
    session.flush()
    after: dict[str, Any] = {**(audit.snapshot(refund) or {}), "posted_cents": posted,
                             "ledger_entry_id": debit.id if debit else None}  # fmt: skip
    if posted < reported.amount_cents:
        after["note"] = (
            f"capped at the balance: {reported.amount_cents} cents went back to the card, "
            f"{posted} cents were left on the balance to debit"
        )
    audit.record(session, actor=GATEWAY_ACTOR, action="card_refund.outside_textpay",
                 entity_type="account", entity_id=attempt.account_id, before=None, after=after,
                 now=now)  # fmt: skip
    _tell(session, refund, reported.amount_cents, now=now, config=config)
    return Confirmed(reported.refund_id, "recorded", refund.id, posted_cents=posted)


def _charge_of_deposit(session: Session, account_id: int, deposit_id: int) -> PaymentAttempt:
    """The succeeded card charge behind a deposit entry of this account, or a 422 naming what
    the entry is instead."""
    entry = session.get(LedgerEntry, deposit_id)
    if entry is None or entry.account_id != account_id:
        raise ValidationFailed.single(
            "deposit_id", f"names no ledger entry of account {account_id}"
        )
    if entry.kind != LedgerKind.DEPOSIT.value:
        raise ValidationFailed.single(
            "deposit_id",
            f"entry {deposit_id} is a {entry.kind} entry, not a card deposit: only money that "
            "came from a card can go back to one",
        )
    key = entry.reference.removeprefix("deposit:")
    attempt = session.exec(
        select(PaymentAttempt).where(PaymentAttempt.idempotency_key == key)
    ).first()
    if (
        attempt is None
        or attempt.status != AttemptStatus.SUCCEEDED.value
        or not attempt.charge_id
        or funding.deposit_reference(attempt) != entry.reference
    ):
        raise ValidationFailed.single(
            "deposit_id", f"deposit {deposit_id} has no card charge on record to refund"
        )
    return attempt


def _too_much(deposit_id: int, room: Refundable) -> str:
    if room.most_cents == 0 and room.refunded_cents >= room.deposit_cents:
        return f"nothing is left to refund: deposit {deposit_id} went back to the card in full"
    if room.most_cents == 0:
        return f"nothing of deposit {deposit_id} can be refunded: the balance is 0"
    return (
        f"must be at most {room.most_cents} ({format_cents(room.most_cents)}), the unspent "
        f"part of deposit {deposit_id}: deposited {format_cents(room.deposit_cents)}, "
        f"refunded already {format_cents(room.refunded_cents)}, balance now "
        f"{format_cents(room.balance_cents)}"
    )


def _replay(
    session: Session, existing: CardRefund, *, account_id: int, deposit_id: int, amount_cents: int
) -> Begun:
    """The first refund made with this Idempotency-Key, if this request is the same one."""
    attempt = session.get(PaymentAttempt, existing.attempt_id)
    assert attempt is not None
    first_deposit = session.exec(
        select(LedgerEntry.id).where(LedgerEntry.reference == funding.deposit_reference(attempt))
    ).first()
    if (existing.account_id, first_deposit, existing.amount_cents) != (
        account_id,
        deposit_id,
        amount_cents,
    ):
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different card refund (of "
            f"{existing.amount_cents} cents, deposit {first_deposit}, account "
            f"{existing.account_id})"
        )
    pending_order = (
        _order(existing, attempt) if existing.status == CardRefundStatus.PENDING.value else None
    )
    return Begun(existing.id or 0, pending_order, replayed=True)


def _order(refund: CardRefund, attempt: PaymentAttempt) -> RefundOrder:
    return RefundOrder(
        card_refund_id=refund.id or 0,
        charge_id=attempt.charge_id or "",
        amount_cents=refund.amount_cents,
        idempotency_key=refund.idempotency_key,
        reason=refund.reason,
        created_at=refund.created_at,
        refund_id=refund.refund_id,
    )


def _load(session: Session, card_refund_id: int) -> CardRefund:
    return session.exec(
        select(CardRefund)
        .where(CardRefund.id == card_refund_id)
        .execution_options(populate_existing=True)
    ).one()


def _give_back(
    session: Session, refund: CardRefund, *, now: datetime, amount_cents: int | None = None
) -> LedgerEntry:
    """The processor refused: the debit's money goes back on the balance (a second entry; the
    ledger is never edited), audited as the processor's doing."""
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    assert attempt is not None
    assert refund.id is not None
    entry = ledger.post(
        session,
        account_id=refund.account_id,
        kind=LedgerKind.ADJUSTMENT,
        amount_cents=refund.amount_cents if amount_cents is None else amount_cents,
        reference=give_back_reference(refund.id),
        memo=f"refund to card ...{attempt.card_last4} failed ({refund.failure_reason}): "
        "the money is back on the balance",
        now=now,
    ).entry
    audit.record(session, actor=GATEWAY_ACTOR, action="card_refund.failed",
                 entity_type="account", entity_id=refund.account_id, before=None,
                 after={**(audit.snapshot(refund) or {}), "ledger_entry_id": entry.id},
                 now=now)  # fmt: skip
    account = session.get(Account, refund.account_id)
    assert account is not None
    episodes.rearm_if_healthy(session, account, now=now)
    return entry


def _give_back_of(session: Session, refund: CardRefund) -> LedgerEntry | None:
    if refund.id is None or refund.status != CardRefundStatus.FAILED.value:
        return None
    return session.exec(
        select(LedgerEntry).where(LedgerEntry.reference == give_back_reference(refund.id))
    ).first()


def _tell(
    session: Session,
    refund: CardRefund,
    amount_cents: int,
    *,
    now: datetime,
    config: EngineConfig,
) -> Message | None:
    """Queue the subscriber's text: TextPay's own initiative, so held to the account's sending
    window (and its daily cap, by the outbox), withheld for a number that opted out. In a
    savepoint: if the words fail, the settled money still commits (logged; not retried)."""
    try:
        with session.begin_nested():
            account = session.get(Account, refund.account_id)
            attempt = session.get(PaymentAttempt, refund.attempt_id)
            assert account is not None
            assert attempt is not None
            known = facts.account_facts(session, account, now=now, with_deposits=False)
            words = replies.card_refund(
                known,
                amount_cents=amount_cents,
                new_balance_cents=account.balance_cents,
                card_last4=attempt.card_last4,
                voice=voice(session, config),
            )
            return messages.queue_outbound(
                session,
                phone=account.phone,
                account_id=account.id,
                body=words,
                kind=TEXT_KIND,
                now=now,
                send_after=delivery_rules(session, account).next_allowed(now),
                engine_initiated=True,
            )
    except Exception:
        log.exception("telling card refund %s failed", refund.id)
        return None
