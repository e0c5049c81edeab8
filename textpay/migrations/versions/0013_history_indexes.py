"""Indexes that keep a text's cost flat as history grows: an account's deposits by time (the
daily limit's sum, read by every YES and top-up) and a number's inbound texts by time (the
flood limit's count, read by every text). Without them both read every ledger entry of the
account and every text of the number: two years of calls made a YES's facts query three
times slower.

On PostgreSQL, `CREATE INDEX` holds writes to its table while it builds (seconds on millions
of texts): run the release phase when texts are few, or build the two indexes beforehand with
`CREATE INDEX CONCURRENTLY` under the same names and predicates (this migration then finds
them and skips them; one whose concurrent build failed, left invalid, it builds again).

Revision ID: 0013_history_indexes
Revises: 0012_passcode
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_history_indexes"
down_revision = "0012_passcode"
branch_labels = None
depends_on = None

DEPOSIT_ENTRY = "kind = 'deposit'"
INBOUND_MESSAGE = "direction = 'inbound'"


def _drop_if_invalid(name: str, table: str) -> None:
    """A `CREATE INDEX CONCURRENTLY` that failed (cancelled, timed out) leaves an invalid index
    under its name, which PostgreSQL keeps up to date but never reads: `if_not_exists` would
    keep it for good, so it is dropped and built again."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    invalid = bind.execute(
        sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
            " AND NOT i.indisvalid"
        ),
        {"name": name},
    ).first()
    if invalid is not None:
        op.drop_index(name, table_name=table)


def upgrade() -> None:
    _drop_if_invalid("ix_ledger_entry_deposit", "ledger_entry")
    _drop_if_invalid("ix_message_inbound", "message")
    op.create_index(
        "ix_ledger_entry_deposit",
        "ledger_entry",
        ["account_id", "created_at"],
        postgresql_where=sa.text(DEPOSIT_ENTRY),
        sqlite_where=sa.text(DEPOSIT_ENTRY),
        if_not_exists=True,
    )
    op.create_index(
        "ix_message_inbound",
        "message",
        ["phone", "created_at"],
        postgresql_where=sa.text(INBOUND_MESSAGE),
        sqlite_where=sa.text(INBOUND_MESSAGE),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_message_inbound", table_name="message")
    op.drop_index("ix_ledger_entry_deposit", table_name="ledger_entry")
