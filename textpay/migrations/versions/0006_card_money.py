"""Real card money: the card's processor customer, card refunds (a `card_refund` ledger kind),
chargebacks, processor events applied once, and the sandbox's refunds.

Revision ID: 0006_card_money
Revises: 0005_scan_runs_and_truncate
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006_card_money"
down_revision = "0005_scan_runs_and_truncate"
branch_labels = None
depends_on = None

_KINDS = "'deposit', 'usage', 'credit', 'refund', 'fee', 'adjustment'"


def upgrade() -> None:
    with op.batch_alter_table("payment_method", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("customer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
    with op.batch_alter_table("payment_attempt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("card_customer", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
    _ledger_kinds(f"{_KINDS}, 'card_refund'")

    op.create_table(
        "sandbox_refund",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("charge_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("failure_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("refund_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("refund_id"),
    )
    with op.batch_alter_table("sandbox_refund", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_refund_charge_id"), ["charge_id"])

    op.create_table(
        "card_refund",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("refund_id", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("failure_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="ck_card_refund_status"
        ),
        sa.CheckConstraint("amount_cents > 0", name="ck_card_refund_amount"),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["attempt_id"], ["payment_attempt.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_key"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("card_refund", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_refund_account_id"), ["account_id"])
        batch_op.create_index(batch_op.f("ix_card_refund_attempt_id"), ["attempt_id"])
        batch_op.create_index(
            "ix_card_refund_unsettled",
            ["created_at"],
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )

    op.create_table(
        "dispute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column(
            "gateway_dispute_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["attempt_id"], ["payment_attempt.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway_dispute_id"),
    )
    with op.batch_alter_table("dispute", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dispute_account_id"), ["account_id"])

    op.create_table(
        "gateway_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("gateway_event")
    with op.batch_alter_table("dispute", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dispute_account_id"))
    op.drop_table("dispute")
    with op.batch_alter_table("card_refund", schema=None) as batch_op:
        batch_op.drop_index("ix_card_refund_unsettled")
        batch_op.drop_index(batch_op.f("ix_card_refund_attempt_id"))
        batch_op.drop_index(batch_op.f("ix_card_refund_account_id"))
    op.drop_table("card_refund")
    with op.batch_alter_table("sandbox_refund", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_refund_charge_id"))
    op.drop_table("sandbox_refund")
    # Downgrading a ledger that holds card refunds must fail rather than lose them: the old
    # constraint refuses the rows, and the ledger refuses to delete them.
    _ledger_kinds(_KINDS)
    with op.batch_alter_table("payment_attempt", schema=None) as batch_op:
        batch_op.drop_column("card_customer")
    with op.batch_alter_table("payment_method", schema=None) as batch_op:
        batch_op.drop_column("customer")


def _ledger_kinds(kinds: str) -> None:
    """Replace the ledger's kind constraint. PostgreSQL alters it in place; SQLite rebuilds the
    table, so its append-only triggers are dropped around the rebuild and made again."""
    condition = f"kind IN ({kinds})"
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_ledger_entry_kind", "ledger_entry", type_="check")
        op.create_check_constraint("ck_ledger_entry_kind", "ledger_entry", condition)
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"DROP TRIGGER IF EXISTS ledger_entry_no_{verb.lower()}")
    with op.batch_alter_table("ledger_entry", schema=None, recreate="always") as batch_op:
        batch_op.drop_constraint("ck_ledger_entry_kind", type_="check")
        batch_op.create_check_constraint("ck_ledger_entry_kind", condition)
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entry_no_{verb.lower()} BEFORE {verb} ON ledger_entry "
            "BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only'); END"
        )
