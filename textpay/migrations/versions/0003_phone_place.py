"""Store each account's phone state and zones, worked out once when the phone is set, so the
scan does not parse every low account's number.

Revision ID: 0003_phone_place
Revises: 0002_status_report
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from textpay.localtime import place_of

revision = "0003_phone_place"
down_revision = "0002_status_report"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phone_state", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "phone_zones",
                sqlmodel.sql.sqltypes.AutoString(length=200),
                nullable=False,
                server_default="",
            )
        )
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("phone_zones")
        batch_op.drop_column("phone_state")


def _backfill() -> None:
    """Existing accounts get their place now (an empty value would also work: it is worked out
    on the fly when missing)."""
    bind = op.get_bind()
    account = sa.table(
        "account", sa.column("id"), sa.column("phone"), sa.column("phone_state"),
        sa.column("phone_zones"),
    )  # fmt: skip
    for row in bind.execute(sa.select(account.c.id, account.c.phone)).all():
        state, zones = place_of(row.phone)
        bind.execute(
            account.update()
            .where(account.c.id == row.id)
            .values(phone_state=state, phone_zones=",".join(zones))
        )
