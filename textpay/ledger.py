"""The ledger: append-only postings, the cached balance, and the check that they agree.

Owns the money invariant. `post` is the only code that changes `Account.balance_cents`, and it
does so in the same transaction as the entry it writes, while holding the account's row lock
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers). Every
posting carries a unique reference, so replaying one returns the original entry instead of
moving money twice. `verify` recomputes balances from the entries and reports any drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlmodel import Session, col, select

from textpay.db import insert_returning_id, returning_objects
from textpay.errors import IdempotencyConflict, InsufficientBalance, NotFound, ValidationFailed
from textpay.models import LEDGER_KIND_SIGN, Account, LedgerEntry, LedgerKind
from textpay.policy import MAX_AMOUNT_CENTS
from textpay.timeutil import utcnow


@dataclass(frozen=True)
class Posting:
    """The entry a posting produced, and whether it was already there (a replay)."""

    entry: LedgerEntry
    replayed: bool
    # The account as the posting left it, when the posting loaded it (`new_reference`).
    account: Account | None = None


@dataclass(frozen=True)
class RowChanges:
    """Other columns of the account row a caller changes in the statement that moves its
    balance. `values(new_balance)` gives them as expressions (the new balance is one; in an
    UPDATE every column reads as it was before it) with bound parameters, whose values are
    `params`. `values` must be a function defined once (a module's), not a new lambda per
    call: the statement is built once per function and reused."""

    values: Callable[[Any], Mapping[str, Any]]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Drift:
    """An account whose cached balance or running balances disagree with its entries."""

    account_id: int
    cached_balance_cents: int
    ledger_sum_cents: int
    bad_entry_ids: tuple[int, ...]


def lock_account(session: Session, account_id: int) -> Account:
    """Load an account holding its row lock until the transaction ends.

    `populate_existing` matters: an account already loaded earlier in the session would otherwise
    keep its stale balance even though the locked read returned a newer one.
    """
    statement = (
        select(Account)
        .where(Account.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    account = session.exec(statement).first()
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account


def post(
    session: Session,
    *,
    account_id: int,
    kind: LedgerKind,
    amount_cents: int,
    reference: str,
    memo: str = "",
    now: datetime | None = None,
    new_reference: bool = False,
    also: RowChanges | None = None,
) -> Posting:
    """Append one entry and move the cached balance with it; idempotent on `reference`.

    A reference seen before returns the original entry when the request matches it, and raises
    `IdempotencyConflict` when it does not (same reference, different account, kind or amount).

    `new_reference`: the caller already holds the reference's uniqueness (settlement posts a
    deposit only when it won the attempt's move out of pending), so it is not looked up: the
    balance moves in one `UPDATE ... RETURNING` that also takes the row lock, and the unique
    index stays the backstop. `also`: other columns of the account row the caller changes in
    that same statement.
    """
    _check_amount(kind, amount_cents)
    if new_reference:
        return _post_new(session, account_id=account_id, kind=kind, amount_cents=amount_cents,
                         reference=reference, memo=memo, now=now or utcnow(),
                         also=also)  # fmt: skip
    if also is not None:
        raise ValueError("`also` is only taken with new_reference")
    account = lock_account(session, account_id)
    # Checked under the account lock, so two postings of one reference to one account cannot
    # both miss it; the unique index settles a race across different accounts.
    existing = session.exec(select(LedgerEntry).where(LedgerEntry.reference == reference)).first()
    if existing is not None:
        if (existing.account_id, existing.kind, existing.amount_cents) != (
            account_id,
            kind.value,
            amount_cents,
        ):
            raise IdempotencyConflict(
                f"reference {reference!r} was already used for a different posting "
                f"({existing.kind} of {existing.amount_cents} cents on account "
                f"{existing.account_id})"
            )
        return Posting(existing, replayed=True)

    new_balance = account.balance_cents + amount_cents
    if new_balance < 0:
        raise InsufficientBalance(
            f"a debit of {-amount_cents} cents exceeds the balance of {account.balance_cents} "
            "cents; prepaid accounts cannot go below zero"
        )
    now = now or utcnow()
    entry = LedgerEntry(
        account_id=account_id,
        kind=kind.value,
        amount_cents=amount_cents,
        balance_after_cents=new_balance,
        reference=reference,
        memo=memo,
        created_at=now,
    )
    account.balance_cents = new_balance
    account.balance_updated_at = now
    session.add(entry)
    session.add(account)
    session.flush()
    return Posting(entry, replayed=False)


def _post_new(
    session: Session,
    *,
    account_id: int,
    kind: LedgerKind,
    amount_cents: int,
    reference: str,
    memo: str,
    now: datetime,
    also: RowChanges | None,
) -> Posting:
    params = {"account_id": account_id, "amount_cents": amount_cents, "now": now}
    account = session.execute(
        _move_balance(also.values if also else None), {**params, **(also.params if also else {})}
    ).scalar_one_or_none()
    if account is None:
        account = lock_account(session, account_id)  # raises NotFound for no such account
        raise InsufficientBalance(
            f"a debit of {-amount_cents} cents exceeds the balance of {account.balance_cents} "
            "cents; prepaid accounts cannot go below zero"
        )
    entry = LedgerEntry(
        account_id=account_id,
        kind=kind.value,
        amount_cents=amount_cents,
        balance_after_cents=account.balance_cents,
        reference=reference,
        memo=memo,
        created_at=now,
    )
    insert_returning_id(session, entry)
    return Posting(entry, replayed=False, account=account)


@lru_cache(maxsize=16)
def _move_balance(values: Callable[[Any], Mapping[str, Any]] | None) -> Any:
    """The balance-moving UPDATE, built once (per `RowChanges.values`) with bound parameters:
    building it anew took longer than running it."""
    new_balance = col(Account.balance_cents) + bindparam("amount_cents")
    # The returned row is the account as it now is (`returning_objects` refreshes it).
    return returning_objects(
        Account,
        update(Account)
        .where(col(Account.id) == bindparam("account_id"), new_balance >= 0)
        .values(
            balance_cents=new_balance,
            balance_updated_at=bindparam("now"),
            **(values(new_balance) if values else {}),
        ),
    )


def _check_amount(kind: LedgerKind, amount_cents: int) -> None:
    if amount_cents == 0:
        raise ValidationFailed.single("amount_cents", "must not be zero")
    if abs(amount_cents) > MAX_AMOUNT_CENTS:
        raise ValidationFailed.single(
            "amount_cents", f"must not be more than {MAX_AMOUNT_CENTS} cents"
        )
    sign = LEDGER_KIND_SIGN[kind]
    if sign and (amount_cents > 0) != (sign > 0):
        direction = "positive" if sign > 0 else "negative"
        raise ValidationFailed.single("amount_cents", f"a {kind.value} entry must be {direction}")


def entries(
    session: Session, account_id: int, *, limit: int = 100, before_id: int | None = None
) -> list[LedgerEntry]:
    """An account's entries, newest first, `limit` at a time (page with `before_id`)."""
    statement = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before_id is not None:
        statement = statement.where(LedgerEntry.id < before_id)  # type: ignore[operator]
    statement = statement.order_by(LedgerEntry.id.desc()).limit(limit)  # type: ignore[union-attr]
    return list(session.exec(statement))


# Running balances are recomputed in the database: one pass over the ledger however large it is.
_DRIFT_SQL = text(
    """
    WITH running AS (
        SELECT id, account_id, balance_after_cents,
               SUM(amount_cents) OVER (PARTITION BY account_id ORDER BY id) AS running_cents
        FROM ledger_entry
    ),
    bad_entries AS (
        SELECT account_id, id FROM running WHERE running_cents <> balance_after_cents
    ),
    sums AS (
        SELECT account_id, SUM(amount_cents) AS total FROM ledger_entry GROUP BY account_id
    )
    SELECT a.id, a.balance_cents, COALESCE(s.total, 0) AS ledger_sum, b.id AS bad_entry_id
    FROM account a
    LEFT JOIN sums s ON s.account_id = a.id
    LEFT JOIN bad_entries b ON b.account_id = a.id
    WHERE a.balance_cents <> COALESCE(s.total, 0) OR b.id IS NOT NULL
    ORDER BY a.id, b.id
    """
)


def verify(session: Session) -> list[Drift]:
    """Every account whose cached balance is not the sum of its entries, or whose entries'
    `balance_after_cents` do not match their running sum. Empty means the ledger is sound."""
    drifts: dict[int, Drift] = {}
    for account_id, cached, ledger_sum, bad_entry_id in session.connection().execute(_DRIFT_SQL):
        previous = drifts.get(account_id)
        bad_ids = previous.bad_entry_ids if previous else ()
        if bad_entry_id is not None:
            bad_ids = (*bad_ids, int(bad_entry_id))
        drifts[account_id] = Drift(int(account_id), int(cached), int(ledger_sum), bad_ids)
    return list(drifts.values())
