"""Card links: the short-lived links a subscriber opens to put a card on file (hashes only).

Revision ID: 0007_card_links
Revises: 0006_card_money
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_card_links"
down_revision = "0006_card_money"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("csrf", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "checkout_session_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("card_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_link_account_id"), ["account_id"])


def downgrade() -> None:
    with op.batch_alter_table("card_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_link_account_id"))
    op.drop_table("card_link")
