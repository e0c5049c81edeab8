"""Passcodes: an account's passcode (its scrypt hash only), wrong tries and lock; when its phone
became its own (`phone_since`, backfilled with the account's creation time, the best the
database knows); the passcode rules at each level (null: never, or inherit); and on an offer,
the passcode request a YES left open.

Revision ID: 0012_passcode
Revises: 0011_card_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012_passcode"
down_revision = "0011_card_expiry"
branch_labels = None
depends_on = None


# 0010's expression index on `account`, as it was written there: SQLite's copy-and-move of the
# table when a column is dropped cannot carry an expression index over, so the downgrade drops
# it first and makes it again after.
RUNWAY_SCANNABLE = (
    "textpay_enabled AND NOT autopay_enabled AND NOT opted_out AND status = 'active' "
    "AND usage_pace_cents IS NOT NULL"
)
RUNWAY_HOURS = "balance_cents * usage_pace_hours / usage_pace_cents"


def _rules() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("passcode_over_cents", sa.BigInteger(), nullable=True),
        sa.Column("passcode_new_phone_days", sa.Integer(), nullable=True),
    ]


def upgrade() -> None:
    for table in ("global_settings", "facility"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _rules():
                batch_op.add_column(column)
    with op.batch_alter_table("account", schema=None) as batch_op:
        # A constant default (SQLite adds no column whose default is not one): every existing
        # row is given its creation time below; a row bulk-loaded without it reads as a phone
        # held for long (asks for no passcode by itself). The application always sets it.
        batch_op.add_column(
            sa.Column(
                "phone_since",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default="1970-01-01 00:00:00.000000",
            )
        )
        batch_op.add_column(
            sa.Column("passcode_hash", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("passcode_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("passcode_failed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("passcode_locked_until", sa.DateTime(timezone=True), nullable=True)
        )
        for column in _rules():
            batch_op.add_column(column)
    op.execute("UPDATE account SET phone_since = created_at")
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("passcode_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("passcode_amount_cents", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.drop_column("passcode_amount_cents")
        batch_op.drop_column("passcode_requested_at")
    op.drop_index("ix_account_runway_scan", table_name="account")
    with op.batch_alter_table("account", schema=None) as batch_op:
        for name in (
            "passcode_new_phone_days",
            "passcode_over_cents",
            "passcode_locked_until",
            "passcode_failed_at",
            "passcode_failures",
            "passcode_hash",
            "phone_since",
        ):
            batch_op.drop_column(name)
    op.create_index(
        "ix_account_runway_scan",
        "account",
        [sa.text(f"({RUNWAY_HOURS})")],
        postgresql_where=sa.text(RUNWAY_SCANNABLE),
        sqlite_where=sa.text(RUNWAY_SCANNABLE),
    )
    for table in ("facility", "global_settings"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("passcode_new_phone_days")
            batch_op.drop_column("passcode_over_cents")
