"""Charging a card and crediting the account, in the three phases that make it safe.

1. `begin` (in a transaction): record a pending `PaymentAttempt` with its idempotency key and
   commit it, before any money moves.
2. `call_gateway` (outside any transaction): charge the card with that key. A timeout means
   "unknown", never "declined".
3. `settle` (in a transaction): record the outcome; on success post the deposit to the ledger,
   keyed by the attempt, so it can be posted once only.

A crash between the phases leaves a pending attempt, which the reconciler settles by asking the
gateway what happened to the key (and charging the card recorded on the attempt, with the same
key, if the gateway never saw it). The same key can never charge twice, so every step is safe
to repeat. The key is random and stored at phase 1: a key built from database ids would repeat
after a restore, and a real processor would then replay an old charge's result.

This module moves money only. What follows an outcome (the offer, AutoPay's schedule, the text
to the subscriber) is `textpay.settlement`'s.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Protocol

from sqlalchemy import bindparam, func, literal, text, update
from sqlmodel import Session, col, select

from textpay import ledger, metrics
from textpay.accounts import payment_method_of
from textpay.db import constant, insert_returning_id, returning_objects
from textpay.errors import NotFound
from textpay.models import (
    UNSETTLED_ATTEMPT,
    Account,
    AttemptStatus,
    LedgerEntry,
    LedgerKind,
    PaymentAttempt,
    fit,
)
from textpay.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    GatewayTimeout,
    Initiator,
    PaymentGateway,
)

# The metadata field that carries an attempt's idempotency key to the processor.
METADATA_KEY = "textpay_key"

# Crockford's base 32 without I, L, O, U: nothing to misread when a subscriber reads it out.
_CONFIRMATION_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class ChargedAccount(Protocol):
    """What `begin` reads of the account it charges: an `Account`, or a text's plain row of
    one (`facts.TextAccount`)."""

    @property
    def id(self) -> int | None: ...
    @property
    def account_number(self) -> str: ...
    @property
    def phone(self) -> str: ...
    @property
    def language(self) -> str: ...


class CardOnFile(Protocol):
    """What a charge reads of the card on file: a `PaymentMethod`, or a plain row of one."""

    @property
    def token(self) -> str: ...
    @property
    def customer(self) -> str | None: ...
    @property
    def brand(self) -> str: ...
    @property
    def last4(self) -> str: ...


@dataclass(frozen=True)
class ChargeOrder:
    """What phase 2 needs, detached from any session."""

    attempt_id: int
    idempotency_key: str
    token: str
    total_cents: int
    initiator: Initiator
    customer: str | None = None
    account_number: str = ""

    def request(self) -> ChargeRequest:
        """The gateway's request: metadata names the attempt's key, so a processor's webhook or
        a search finds the attempt without our database ids."""
        return ChargeRequest(
            token=self.token,
            amount_cents=self.total_cents,
            idempotency_key=self.idempotency_key,
            initiator=self.initiator,
            customer=self.customer,
            description=f"Deposit to calling account {self.account_number}",
            metadata={
                METADATA_KEY: self.idempotency_key,
                "textpay_attempt": str(self.attempt_id),
                "textpay_account": self.account_number,
            },
        )


@dataclass(frozen=True)
class Settlement:
    attempt: PaymentAttempt
    entry: LedgerEntry | None  # the deposit, when the charge succeeded
    # The balance after the deposit, or as it stands when someone else settled the attempt;
    # None when this call settled a decline or failure (the balance did not move).
    new_balance_cents: int | None
    changed: bool  # False when the attempt had already been settled
    account: Account | None = None  # the account as the deposit left it, with a deposit


def new_idempotency_key() -> str:
    return f"tp_{uuid.uuid4().hex}"


def confirmation_code() -> str:
    return "TP-" + "".join(secrets.choice(_CONFIRMATION_ALPHABET) for _ in range(6))


def deposit_reference(attempt: PaymentAttempt) -> str:
    return f"deposit:{attempt.idempotency_key}"


def deposited_since(session: Session, account_id: int, since: datetime) -> int:
    """Deposits posted since `since` plus charges still in flight: what counts toward a daily
    limit, so that two quick YESes cannot slip past it together."""
    return int(session.exec(select(_deposited_since(literal(account_id), since))).one())


def deposited_since_column(since: Any) -> Any:
    """`deposited_since` of each account, as a column of a query over `Account` (the facts of
    a phone are read in one query). `since`: a moment, or a bound parameter for one."""
    return _deposited_since(col(Account.id), since)


def _deposited_since(account_id: Any, since: Any) -> Any:
    posted = (
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .where(
            col(LedgerEntry.account_id) == account_id,
            LedgerEntry.kind == constant(LedgerKind.DEPOSIT.value),
            col(LedgerEntry.created_at) >= since,
        )
        .scalar_subquery()
    )
    in_flight = (
        select(func.coalesce(func.sum(PaymentAttempt.amount_cents), 0))
        .where(
            col(PaymentAttempt.account_id) == account_id,
            PaymentAttempt.status == constant(AttemptStatus.PENDING.value),
        )
        .scalar_subquery()
    )
    return posted + in_flight


def begin(
    session: Session,
    account: ChargedAccount,
    *,
    prompt_id: int | None,
    amount_cents: int,
    fee_cents: int,
    initiator: Initiator,
    now: datetime,
    autopay_slot: str | None = None,
    card: CardOnFile | None = None,
) -> ChargeOrder:
    """Phase 1: record the attempt, with a fresh random idempotency key and the card on file
    now, which is the card this attempt will ever charge (`card`, when the caller read it in
    this transaction already). The caller commits before calling the gateway."""
    assert account.id is not None
    method: CardOnFile | None = card if card is not None else payment_method_of(session, account.id)
    if method is None:
        raise NotFound(f"account {account.id} has no card on file")
    idempotency_key = new_idempotency_key()
    attempt = PaymentAttempt(
        account_id=account.id,
        prompt_id=prompt_id,
        idempotency_key=idempotency_key,
        autopay_slot=autopay_slot,
        initiator=initiator.value,
        amount_cents=amount_cents,
        fee_cents=fee_cents,
        card_token=method.token,
        card_customer=method.customer,
        card_brand=method.brand,
        card_last4=method.last4,
        confirmation=confirmation_code(),
        notify_phone=account.phone,
        language=account.language,
        created_at=now,
    )
    attempt_id = insert_returning_id(session, attempt)
    return ChargeOrder(
        attempt_id=attempt_id,
        idempotency_key=idempotency_key,
        token=method.token,
        total_cents=amount_cents + fee_cents,
        initiator=initiator,
        customer=method.customer,
        account_number=account.account_number,
    )


def order_of(attempt: PaymentAttempt, account_number: str) -> ChargeOrder:
    """An attempt's phase-2 order again, for the reconciler: the card recorded at phase 1."""
    return ChargeOrder(
        attempt_id=attempt.id or 0,
        idempotency_key=attempt.idempotency_key,
        token=attempt.card_token,
        total_cents=attempt.amount_cents + attempt.fee_cents,
        initiator=Initiator(attempt.initiator),
        customer=attempt.card_customer,
        account_number=account_number,
    )


def call_gateway(
    gateway: PaymentGateway, order: ChargeOrder, *, timeout_seconds: float
) -> ChargeResult | None:
    """Phase 2, outside any transaction. None means the outcome is not known yet (no answer in
    time, or the processor is still processing): a webhook or the reconciler settles it."""
    backend = metrics.backend_label(gateway)
    try:
        result = gateway.charge(order.request(), timeout_seconds=timeout_seconds)
    except GatewayTimeout:
        metrics.CHARGES.labels(backend=backend, outcome="timeout").inc()
        return None
    metrics.CHARGES.labels(backend=backend, outcome=result.status.value).inc()
    return None if result.status is ChargeStatus.PENDING else result


def settle(
    session: Session,
    attempt_id: int,
    result: ChargeResult,
    *,
    now: datetime,
    claim_telling: bool = False,
    deposit_also: Callable[[PaymentAttempt], ledger.RowChanges | None] | None = None,
) -> Settlement:
    """Phase 3: record the outcome once. Settling an already settled attempt changes nothing
    and returns what was recorded the first time.

    The attempt moves out of pending in one `UPDATE ... RETURNING`; only the caller that moved
    it posts the deposit. `claim_telling`: also stamp `notified_at` in that statement (the
    caller tells the outcome itself, now). `deposit_also(attempt)`: other columns the caller
    changes on the account row in the deposit's statement (`ledger.post`).

    The gateway's charge id and decline reason are recorded as their columns can hold them (cut
    to length, NUL removed): whatever a processor returns, the money is settled."""
    if result.status is ChargeStatus.PENDING:
        raise ValueError("a pending charge cannot be settled yet")
    status = {
        ChargeStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
        ChargeStatus.DECLINED: AttemptStatus.DECLINED,
        ChargeStatus.FAILED: AttemptStatus.FAILED,
    }[result.status]
    won = session.execute(
        _settle_attempt(claim_telling=claim_telling),
        {
            "attempt_id": attempt_id,
            "status": status.value,
            "charge_id": fit(PaymentAttempt, "charge_id", result.charge_id),
            "decline_reason": fit(PaymentAttempt, "decline_reason", result.decline_reason),
            "now": now,
        },
    ).scalar_one_or_none()
    if won is None:
        return _settled_before(session, attempt_id)
    if status is not AttemptStatus.SUCCEEDED:
        return Settlement(won, None, None, changed=True)
    posting = ledger.post(
        session,
        account_id=won.account_id,
        kind=LedgerKind.DEPOSIT,
        amount_cents=won.amount_cents,
        reference=deposit_reference(won),
        memo=f"card ...{won.card_last4} {won.confirmation}",
        now=now,
        new_reference=True,
        also=deposit_also(won) if deposit_also else None,
    )
    deposited = won.amount_cents
    metrics.on_commit(session, lambda: _count_deposit(deposited))
    return Settlement(won, posting.entry, posting.entry.balance_after_cents, changed=True,
                      account=posting.account)  # fmt: skip


def _count_deposit(cents: int) -> None:
    metrics.DEPOSITS.inc()
    metrics.DEPOSITS_CENTS.inc(cents)


@cache
def _settle_attempt(*, claim_telling: bool) -> Any:
    """The UPDATE that moves an attempt out of pending, built once with bound parameters."""
    values: dict[str, Any] = {
        "status": bindparam("status"),
        "charge_id": bindparam("charge_id"),
        "decline_reason": bindparam("decline_reason"),
        "settled_at": bindparam("now"),
    }
    if claim_telling:
        values["notified_at"] = bindparam("now")
    return returning_objects(
        PaymentAttempt,
        update(PaymentAttempt)
        .where(
            col(PaymentAttempt.id) == bindparam("attempt_id"),
            col(PaymentAttempt.status) == AttemptStatus.PENDING.value,
        )
        .values(**values),
    )


def _settled_before(session: Session, attempt_id: int) -> Settlement:
    """What an attempt someone else settled came to (this caller changes nothing)."""
    attempt = session.exec(
        select(PaymentAttempt)
        .where(PaymentAttempt.id == attempt_id)
        .execution_options(populate_existing=True)
    ).one()
    entry = None
    if attempt.status == AttemptStatus.SUCCEEDED.value:
        entry = session.exec(
            select(LedgerEntry).where(LedgerEntry.reference == deposit_reference(attempt))
        ).first()
    account = session.get(Account, attempt.account_id)
    assert account is not None
    return Settlement(attempt, entry, account.balance_cents, changed=False)


def unsettled(session: Session, *, older_than: datetime) -> list[int]:
    """Attempts still pending since before `older_than`: a process died or a charge was slow."""
    return [
        attempt_id
        for attempt_id in session.exec(
            select(PaymentAttempt.id)
            .where(text(UNSETTLED_ATTEMPT), col(PaymentAttempt.created_at) < older_than)
            .order_by(col(PaymentAttempt.id))
        )
        if attempt_id is not None
    ]


def reconcile_result(
    gateway: PaymentGateway,
    attempt: PaymentAttempt,
    *,
    account_number: str,
    timeout_seconds: float,
    now: datetime,
) -> ChargeResult | None:
    """What really happened to an attempt, from the gateway: its record of the key, or, if it
    never saw the key (the process died before calling), the charge made now with that key on
    the card recorded at phase 1 (never a card put on file since). None while the gateway has
    no final answer.

    Once the gateway may have forgotten the key (Stripe keeps one 24 h), charging with it again
    could charge twice: the attempt is then only looked up, and failed if it was never made."""
    try:
        result = gateway.retrieve(attempt.idempotency_key)
    except GatewayTimeout:
        return None  # the processor could not be asked: still pending, ask next time
    if result is None and not attempt.card_token:
        # Recorded before attempts kept their card: nothing to charge that the subscriber chose.
        return ChargeResult(ChargeStatus.FAILED, decline_reason="no_card_recorded")
    lifetime = gateway.key_lifetime
    if result is None and lifetime is not None and now - attempt.created_at >= lifetime:
        return ChargeResult(ChargeStatus.FAILED, decline_reason="never_charged")
    if result is None:
        result = call_gateway(
            gateway, order_of(attempt, account_number), timeout_seconds=timeout_seconds
        )
    if result is None or result.status is ChargeStatus.PENDING:
        return None
    return result


def stale_before(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
