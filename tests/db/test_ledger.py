"""The ledger on a real database: idempotent postings, append-only entries, drift detection."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from textpay import ledger
from textpay.db import unit_of_work
from textpay.errors import IdempotencyConflict, InsufficientBalance, NotFound, ValidationFailed
from textpay.models import Account, LedgerKind
from webhooks.cli import cli


def new_account(engine: Engine, number: str = "A1") -> int:
    with unit_of_work(engine) as session:
        account = Account(account_number=number, phone="+12125550147")
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def post(engine: Engine, account_id: int, kind: LedgerKind, cents: int, ref: str) -> ledger.Posting:
    with unit_of_work(engine) as session:
        return ledger.post(
            session, account_id=account_id, kind=kind, amount_cents=cents, reference=ref
        )


def test_posting_moves_the_cached_balance_in_the_same_transaction(engine: Engine) -> None:
    account_id = new_account(engine)
    posting = post(engine, account_id, LedgerKind.DEPOSIT, 2500, "deposit:1")
    assert not posting.replayed
    assert posting.entry.balance_after_cents == 2500
    post(engine, account_id, LedgerKind.USAGE, -190, "usage:1")
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert account.balance_cents == 2310
        assert ledger.verify(session) == []


def test_a_failed_transaction_leaves_neither_entry_nor_balance(engine: Engine) -> None:
    account_id = new_account(engine)

    def post_then_fail() -> None:
        with unit_of_work(engine) as session:
            ledger.post(
                session,
                account_id=account_id,
                kind=LedgerKind.CREDIT,
                amount_cents=900,
                reference="credit:x",
            )
            raise RuntimeError("the edge failed after posting")

    with pytest.raises(RuntimeError):
        post_then_fail()
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert account.balance_cents == 0
        assert ledger.entries(session, account_id) == []


def test_replay_returns_the_original_and_conflicts_are_refused(engine: Engine) -> None:
    account_id = new_account(engine)
    first = post(engine, account_id, LedgerKind.CREDIT, 500, "credit:k")
    again = post(engine, account_id, LedgerKind.CREDIT, 500, "credit:k")
    assert again.replayed
    assert again.entry.id == first.entry.id
    with pytest.raises(IdempotencyConflict):
        post(engine, account_id, LedgerKind.CREDIT, 501, "credit:k")
    with pytest.raises(IdempotencyConflict):
        post(engine, account_id, LedgerKind.REFUND, 500, "credit:k")


def test_signs_limits_and_unknown_accounts(engine: Engine) -> None:
    account_id = new_account(engine)
    with pytest.raises(ValidationFailed):
        post(engine, account_id, LedgerKind.USAGE, 100, "usage:positive")
    with pytest.raises(ValidationFailed):
        post(engine, account_id, LedgerKind.DEPOSIT, -100, "deposit:negative")
    with pytest.raises(ValidationFailed):
        post(engine, account_id, LedgerKind.ADJUSTMENT, 0, "adjustment:zero")
    with pytest.raises(InsufficientBalance):
        post(engine, account_id, LedgerKind.USAGE, -1, "usage:overdraw")
    with pytest.raises(NotFound):
        post(engine, account_id + 100, LedgerKind.CREDIT, 1, "credit:nobody")


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger_entry SET amount_cents = 1", "DELETE FROM ledger_entry"],
)
def test_the_database_refuses_to_edit_or_delete_entries(engine: Engine, statement: str) -> None:
    account_id = new_account(engine)
    post(engine, account_id, LedgerKind.CREDIT, 700, "credit:1")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with unit_of_work(engine) as session:
        assert [e.amount_cents for e in ledger.entries(session, account_id)] == [700]


@pytest.mark.postgres_only
def test_postgresql_refuses_to_truncate_the_ledger(engine: Engine) -> None:
    """SQLite has no TRUNCATE (its `DELETE FROM` is refused above); PostgreSQL's TRUNCATE skips
    row triggers, so a statement trigger refuses it."""
    account_id = new_account(engine)
    post(engine, account_id, LedgerKind.CREDIT, 700, "credit:1")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("TRUNCATE ledger_entry CASCADE"))
    with unit_of_work(engine) as session:
        assert [e.amount_cents for e in ledger.entries(session, account_id)] == [700]


def test_verify_finds_a_tampered_balance_and_the_cli_exits_1(
    engine: Engine, database_url: str
) -> None:
    account_id = new_account(engine)
    healthy_id = new_account(engine, "A2")
    post(engine, account_id, LedgerKind.CREDIT, 1000, "credit:1")
    post(engine, healthy_id, LedgerKind.CREDIT, 300, "credit:2")
    runner = CliRunner()
    clean = runner.invoke(cli, ["verify-ledger"], env={"DATABASE_URL": database_url})
    assert clean.exit_code == 0

    with engine.begin() as connection:
        connection.execute(
            text("UPDATE account SET balance_cents = 5000 WHERE id = :id"), {"id": account_id}
        )
    with unit_of_work(engine) as session:
        drifts = ledger.verify(session)
    assert [(d.account_id, d.cached_balance_cents, d.ledger_sum_cents) for d in drifts] == [
        (account_id, 5000, 1000)
    ]
    result = runner.invoke(cli, ["verify-ledger"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1
    assert f"DRIFT account {account_id}: cached 5000 cents, ledger sum 1000 cents" in result.output


def test_verify_finds_an_entry_whose_running_balance_is_wrong(engine: Engine) -> None:
    account_id = new_account(engine)
    post(engine, account_id, LedgerKind.CREDIT, 1000, "credit:1")
    # An entry written behind the ledger's back, with a balance_after that does not add up,
    # and a cache "fixed" to match the sum so that only the running balance gives it away.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledger_entry (account_id, kind, amount_cents, balance_after_cents,"
                " reference, memo, created_at) VALUES (:a, 'credit', 500, 900, 'rogue', '',"
                " CURRENT_TIMESTAMP)"
            ),
            {"a": account_id},
        )
        connection.execute(
            text("UPDATE account SET balance_cents = 1500 WHERE id = :id"), {"id": account_id}
        )
    with unit_of_work(engine) as session:
        [drift] = ledger.verify(session)
    assert drift.account_id == account_id
    assert drift.cached_balance_cents == drift.ledger_sum_cents == 1500
    assert len(drift.bad_entry_ids) == 1
