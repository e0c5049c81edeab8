"""Operations: the web request that recorded an inbound text (`message.request_id`), and an
index that keeps counting the outbox (`/metrics`) cheap. The clock's heartbeat needs no
schema: it is a row in `lease`.

Revision ID: 0009_clock_heartbeat
Revises: 0008_operators
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_clock_heartbeat"
down_revision = "0008_operators"
branch_labels = None
depends_on = None

OPEN_OUTBOUND = "direction = 'outbound' AND status IN ('pending', 'dispatching', 'unknown')"


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    op.create_index(
        "ix_message_open_outbound",
        "message",
        ["status"],
        postgresql_where=sa.text(OPEN_OUTBOUND),
        sqlite_where=sa.text(OPEN_OUTBOUND),
    )


def downgrade() -> None:
    op.drop_index("ix_message_open_outbound", table_name="message")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("request_id")
