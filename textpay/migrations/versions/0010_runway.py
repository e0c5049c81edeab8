"""Runway: the `runway_days` setting (global, facility, account), each account's usual pace of
calls as of its latest charge, the index the scan finds runway-low accounts by, and the index
a usage posting reads the account's recent charges by.

Revision ID: 0010_runway
Revises: 0009_clock_heartbeat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_runway"
down_revision = "0009_clock_heartbeat"
branch_labels = None
depends_on = None

# Repeated here as they were written (a migration never follows later edits of the models).
RUNWAY_SCANNABLE = (
    "textpay_enabled AND NOT autopay_enabled AND NOT opted_out AND status = 'active' "
    "AND usage_pace_cents IS NOT NULL"
)
RUNWAY_HOURS = "balance_cents * usage_pace_hours / usage_pace_cents"
USAGE_ENTRY = "kind = 'usage'"


def upgrade() -> None:
    with op.batch_alter_table("global_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runway_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("facility", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runway_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runway_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("usage_pace_cents", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("usage_pace_hours", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("usage_pace_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_account_runway_days", ["runway_days"], unique=False)
    op.create_index(
        "ix_account_runway_scan",
        "account",
        [sa.text(f"({RUNWAY_HOURS})")],
        postgresql_where=sa.text(RUNWAY_SCANNABLE),
        sqlite_where=sa.text(RUNWAY_SCANNABLE),
    )
    op.create_index(
        "ix_ledger_entry_usage",
        "ledger_entry",
        ["account_id", "created_at"],
        postgresql_where=sa.text(USAGE_ENTRY),
        sqlite_where=sa.text(USAGE_ENTRY),
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entry_usage", table_name="ledger_entry")
    op.drop_index("ix_account_runway_scan", table_name="account")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_runway_days")
        batch_op.drop_column("usage_pace_until")
        batch_op.drop_column("usage_pace_hours")
        batch_op.drop_column("usage_pace_cents")
        batch_op.drop_column("runway_days")
    with op.batch_alter_table("facility", schema=None) as batch_op:
        batch_op.drop_column("runway_days")
    with op.batch_alter_table("global_settings", schema=None) as batch_op:
        batch_op.drop_column("runway_days")
