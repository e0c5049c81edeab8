"""Scans an operator queues (`scan_run`, run by a clock, never by a web worker), and the
ledger's append-only trigger covers TRUNCATE on PostgreSQL.

Revision ID: 0005_scan_runs_and_truncate
Revises: 0004_money_and_consent
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005_scan_runs_and_truncate"
down_revision = "0004_money_and_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("prompted", sa.Integer(), nullable=False),
        sa.Column("autopay_charged", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_scan_run_status"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        batch_op.create_index("ix_scan_run_status", ["status", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Row triggers never see a TRUNCATE; a statement trigger does.
        op.execute(
            "CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_truncate ON ledger_entry")
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        batch_op.drop_index("ix_scan_run_status")
    op.drop_table("scan_run")
