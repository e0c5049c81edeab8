"""One settlement path, consent per number, offers tied to their texts.

- `phone_consent`: whether a number may be texted, keyed by E.164 (consent belongs to the
  number); filled from the accounts' opt-out flags.
- `lease`: a named lock row, so that scanners on SQLite take turns as they do on PostgreSQL.
- `payment_attempt.card_token` (the card charged, fixed at phase 1) and `autopay_slot` (AutoPay's
  once-per-episode key, now that gateway idempotency keys are random).
- `payment_attempt.notified_at`: the outcome is told once, and retried if telling failed.
- `prompt.acceptable_after` (no YES before the offer's text has gone out), `prompt.label` and
  `prompt.card_token` (how its text named the account and which card), and `message.prompt_id`
  (the offer an outbox text carries).
- `facility.timezone`, for accounts whose number names no zone.
- `account.episode_autopay_charges` (one AutoPay charge per low episode), which the re-arm
  sweep's partial index now also covers.

Revision ID: 0004_money_and_consent
Revises: 0003_phone_place
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_money_and_consent"
down_revision = "0003_phone_place"
branch_labels = None
depends_on = None

OLD_IN_EPISODE = "episode_prompts > 0 OR autopay_failures > 0"
UNTOLD = "status <> 'pending' AND notified_at IS NULL"
NEW_IN_EPISODE = "episode_prompts > 0 OR autopay_failures > 0 OR episode_autopay_charges > 0"


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "phone_consent",
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("episode_autopay_charges", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.drop_index("ix_account_in_episode")
        batch_op.create_index(
            "ix_account_in_episode",
            ["balance_cents"],
            unique=False,
            postgresql_where=sa.text(NEW_IN_EPISODE),
            sqlite_where=sa.text(NEW_IN_EPISODE),
        )
    with op.batch_alter_table("facility", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_message_prompt_id", "prompt", ["prompt_id"], ["id"])
    with op.batch_alter_table("payment_attempt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("autopay_slot", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "card_token",
                sqlmodel.sql.sqltypes.AutoString(length=255),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_payment_attempt_autopay_slot", ["autopay_slot"])
        batch_op.create_index(
            "ix_payment_attempt_untold",
            ["settled_at"],
            unique=False,
            postgresql_where=sa.text(UNTOLD),
            sqlite_where=sa.text(UNTOLD),
        )
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("acceptable_after", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column("card_token", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
    _backfill()


def _backfill() -> None:
    """Numbers that said STOP keep saying it; open offers already sent stay acceptable; an
    attempt still pending keeps the card it was made with."""
    # A number's consent is its latest opt-out or opt-in (a STOP sent before enrolment is only in
    # the events), else the accounts' flags: one opted-out account opts the number out.
    op.execute(
        "INSERT INTO phone_consent (phone, opted_out, changed_at) "
        "SELECT e.phone, e.kind = 'opt_out', e.created_at FROM consent_event e "
        "WHERE e.id = (SELECT MAX(l.id) FROM consent_event l WHERE l.phone = e.phone "
        "AND l.kind IN ('opt_out', 'opt_in'))"
    )
    op.execute(
        "INSERT INTO phone_consent (phone, opted_out, changed_at) "
        "SELECT phone, true, MAX(COALESCE(opted_out_at, updated_at)) FROM account "
        "WHERE opted_out AND phone NOT IN (SELECT phone FROM phone_consent) GROUP BY phone"
    )
    # Every account on a number takes the number's consent (today some did not).
    op.execute(
        "UPDATE account SET opted_out = true, opted_out_at = (SELECT changed_at FROM "
        "phone_consent p WHERE p.phone = account.phone) WHERE NOT opted_out AND phone IN "
        "(SELECT phone FROM phone_consent WHERE opted_out)"
    )
    op.execute(
        "UPDATE account SET opted_out = false, opted_out_at = NULL WHERE opted_out AND phone "
        "IN (SELECT phone FROM phone_consent WHERE NOT opted_out)"
    )
    # Offers already sent (or made as a reply) stay acceptable. An offer whose text still waits in
    # the outbox is tied to that text and becomes acceptable only when it goes: the scan made
    # each offer and its text in one transaction, at one moment.
    op.execute("UPDATE prompt SET acceptable_after = created_at")
    op.execute(
        "UPDATE message SET prompt_id = (SELECT MAX(p.id) FROM prompt p WHERE p.account_id = "
        "message.account_id AND p.status = 'pending' AND p.created_at <= message.created_at) "
        "WHERE direction = 'outbound' AND kind IN ('prompt', 'reminder') "
        "AND status IN ('pending', 'dispatching')"
    )
    op.execute(
        "UPDATE prompt SET acceptable_after = NULL WHERE status = 'pending' AND id IN "
        "(SELECT prompt_id FROM message WHERE prompt_id IS NOT NULL "
        "AND status IN ('pending', 'dispatching'))"
    )
    op.execute("UPDATE payment_attempt SET notified_at = settled_at WHERE status <> 'pending'")
    op.execute(
        "UPDATE payment_attempt SET card_token = (SELECT token FROM payment_method "
        "WHERE payment_method.account_id = payment_attempt.account_id) "
        "WHERE EXISTS (SELECT 1 FROM payment_method "
        "WHERE payment_method.account_id = payment_attempt.account_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.drop_column("card_token")
        batch_op.drop_column("label")
        batch_op.drop_column("acceptable_after")
    with op.batch_alter_table("payment_attempt", schema=None) as batch_op:
        batch_op.drop_constraint("uq_payment_attempt_autopay_slot", type_="unique")
        batch_op.drop_index("ix_payment_attempt_untold")
        batch_op.drop_column("notified_at")
        batch_op.drop_column("card_token")
        batch_op.drop_column("autopay_slot")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_constraint("fk_message_prompt_id", type_="foreignkey")
        batch_op.drop_column("prompt_id")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_in_episode")
        batch_op.create_index(
            "ix_account_in_episode",
            ["balance_cents"],
            unique=False,
            postgresql_where=sa.text(OLD_IN_EPISODE),
            sqlite_where=sa.text(OLD_IN_EPISODE),
        )
        batch_op.drop_column("episode_autopay_charges")
    with op.batch_alter_table("facility", schema=None) as batch_op:
        batch_op.drop_column("timezone")
    op.drop_table("phone_consent")
    op.drop_table("lease")
