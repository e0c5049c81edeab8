"""Card expiry: the texts that warn of a card about to expire, or tell that AutoPay skipped an
expired one, recorded once per card, kind and episode; and an index to find the cards expiring
around a month.

Revision ID: 0011_card_expiry
Revises: 0010_runway
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011_card_expiry"
down_revision = "0010_runway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_expiry_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("card_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("last4", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('30_days', '7_days', 'autopay_skipped')", name="ck_card_expiry_notice_kind"
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "account_id", "card_key", "kind", "episode", name="ux_card_expiry_notice_once"
        ),
    )
    with op.batch_alter_table("payment_method", schema=None) as batch_op:
        batch_op.create_index("ix_payment_method_expiry", ["exp_year", "exp_month"])


def downgrade() -> None:
    with op.batch_alter_table("payment_method", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_method_expiry")
    op.drop_table("card_expiry_notice")
