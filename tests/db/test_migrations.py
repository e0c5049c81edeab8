"""The migrations build exactly the schema the models describe, and can be undone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from textpay.db import MIGRATIONS, make_engine
from webhooks.cli import cli


def _alembic_config() -> Config:
    """Alembic's configuration for TextPay's migrations (each test gives it its connection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def test_models_and_migrations_agree(engine: Engine) -> None:
    """The test databases are built by the migrations; autogenerate must find nothing to add."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_migrations_upgrade_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roundtrip.db")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
        command.upgrade(config, "head")
        assert set(SQLModel.metadata.tables) <= set(inspect(connection).get_table_names())
    engine.dispose()


def test_init_db_upgrades_and_refuses_a_schema_it_did_not_make(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    runner = CliRunner()
    first = runner.invoke(cli, ["init-db"], env={"DATABASE_URL": url})
    assert first.exit_code == 0, first.output
    assert runner.invoke(cli, ["init-db"], env={"DATABASE_URL": url}).exit_code == 0

    legacy = make_engine(f"sqlite:///{tmp_path}/legacy.db")
    SQLModel.metadata.create_all(legacy)
    legacy.dispose()
    refused = runner.invoke(
        cli, ["init-db"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/legacy.db"}
    )
    assert refused.exit_code != 0
    assert "no migration history" in refused.output


def test_migration_0004_gives_every_account_its_numbers_consent(tmp_path: Path) -> None:
    """Before 0004 consent lived on accounts (and a STOP before enrolment only in the events):
    after it, each number has one answer and every account on the number agrees with it."""
    engine = make_engine(f"sqlite:///{tmp_path}/upgrade.db")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003_phone_place")
        for number, phone, opted_out in (
            ("A-1", "+12125550147", True),
            ("A-2", "+12125550147", False),  # the same number, left opted in by the old bug
            ("B-1", "+12125550111", False),
        ):
            connection.execute(
                text(
                    "INSERT INTO account (account_number, phone, phone_zones, nickname, language,"
                    " textpay_enabled, autopay_enabled, status, opted_out, balance_cents,"
                    " balance_updated_at, episode_seq, episode_prompts, autopay_failures,"
                    " created_at, updated_at) VALUES (:n, :p, '', '', 'en', 1, 0, 'active', :o,"
                    " 0, '2026-11-01', 0, 0, 0, '2026-11-01', '2026-11-01')"
                ),
                {"n": number, "p": phone, "o": opted_out},
            )
        connection.execute(
            text(
                "INSERT INTO consent_event (phone, kind, words, source, created_at) VALUES"
                " ('+12125550199', 'opt_out', 'STOP', 'sms', '2026-11-02')"
            )
        )
        command.upgrade(config, "head")
        consent = dict(connection.execute(text("SELECT phone, opted_out FROM phone_consent")).all())
        accounts = dict(
            connection.execute(text("SELECT account_number, opted_out FROM account")).all()
        )
    engine.dispose()
    assert consent == {"+12125550147": 1, "+12125550199": 1}
    assert accounts == {"A-1": 1, "A-2": 1, "B-1": 0}


def test_migration_0004_does_not_make_an_unsent_offer_acceptable(tmp_path: Path) -> None:
    """At 22:00 ET the scan made an offer and held its text until 08:00. The upgrade to 0004
    runs at night. The offer's text has not gone out, so no YES may accept it yet: but the
    backfill sets `acceptable_after = created_at` for every prompt, pending ones included."""
    engine = make_engine(f"sqlite:///{tmp_path}/upgrade.db")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003_phone_place")
        connection.execute(
            text(
                "INSERT INTO account (id, account_number, phone, phone_zones, nickname, language,"
                " textpay_enabled, autopay_enabled, status, opted_out, balance_cents,"
                " balance_updated_at, episode_seq, episode_prompts, autopay_failures,"
                " created_at, updated_at) VALUES (1, 'ACCT-4821', '+12125550147', '', '', 'en',"
                " 1, 0, 'active', 0, 310, '2026-11-27 03:00:00', 0, 1, 0, '2026-11-01',"
                " '2026-11-27 03:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO prompt (id, account_id, status, amount_cents, fee_cents,"
                " balance_at_offer_cents, expires_at, created_at, updated_at) VALUES (1, 1,"
                " 'pending', 2500, 0, 310, '2026-11-28 13:00:00', '2026-11-27 03:00:00',"
                " '2026-11-27 03:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO message (direction, phone, account_id, body, kind, status,"
                " send_after, engine_initiated, attempts, created_at, updated_at) VALUES"
                " ('outbound', '+12125550147', 1, 'TextPay: acct ...4821 ... Reply YES', 'prompt',"
                " 'pending', '2026-11-27 13:00:00', 1, 0, '2026-11-27 03:00:00',"
                " '2026-11-27 03:00:00')"
            )
        )
        command.upgrade(config, "head")
        acceptable_after = connection.execute(
            text("SELECT acceptable_after FROM prompt WHERE id = 1")
        ).scalar_one()
    engine.dispose()
    night = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 23:00 ET, the text still waits
    if acceptable_after is not None:
        when = datetime.fromisoformat(str(acceptable_after))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        assert when > night, (
            f"an offer whose text is still held in the outbox is acceptable from {when}"
        )


def _history_indexes(connection: Any) -> dict[str, str]:
    """The partial indexes 0013 makes, by name, with what they index and their predicate."""
    found: dict[str, str] = {}
    for table in ("ledger_entry", "message"):
        for index in inspect(connection).get_indexes(table):
            if index["name"] in ("ix_ledger_entry_deposit", "ix_message_inbound"):
                options = index.get("dialect_options", {})
                where = options.get("postgresql_where", options.get("sqlite_where", ""))
                predicate = str(where)
                found[str(index["name"])] = f"{index['column_names']} {predicate}"
    return found


def test_migration_0013_indexes_history_on_both_databases_and_undoes_it(engine: Engine) -> None:
    """From 0012 with texts and entries in the tables: the upgrade builds both partial indexes
    (or keeps ones built beforehand under the same names), the downgrade drops them, and the
    upgrade runs again."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012_passcode")
        assert _history_indexes(connection) == {}
        connection.execute(
            text(
                "INSERT INTO account (id, account_number, phone, phone_zones, nickname, language,"
                " textpay_enabled, autopay_enabled, status, opted_out, balance_cents,"
                " balance_updated_at, episode_seq, episode_prompts, autopay_failures,"
                " created_at, updated_at) VALUES (1, 'A-1', '+12125550147', '', '', 'en', true,"
                " false, 'active', false, 700, '2026-11-01', 0, 0, 0, '2026-11-01', '2026-11-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO ledger_entry (account_id, kind, amount_cents, balance_after_cents,"
                " reference, memo, created_at) VALUES (1, 'deposit', 700, 700, 'd:1', '',"
                " '2026-11-02')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO message (direction, phone, account_id, body, kind, status,"
                " engine_initiated, attempts, created_at, updated_at) VALUES ('inbound',"
                " '+12125550147', 1, 'BAL', 'reply', 'received', false, 0, '2026-11-02',"
                " '2026-11-02')"
            )
        )
        # Built beforehand (as with CREATE INDEX CONCURRENTLY): the upgrade keeps it.
        connection.execute(
            text(
                "CREATE INDEX ix_message_inbound ON message (phone, created_at)"
                " WHERE direction = 'inbound'"
            )
        )
        command.upgrade(config, "head")
        built = _history_indexes(connection)
        assert set(built) == {"ix_ledger_entry_deposit", "ix_message_inbound"}, built
        assert "deposit" in built["ix_ledger_entry_deposit"]
        assert "inbound" in built["ix_message_inbound"]
        command.downgrade(config, "0012_passcode")
        assert _history_indexes(connection) == {}
        command.upgrade(config, "head")
        assert set(_history_indexes(connection)) == {"ix_ledger_entry_deposit",
                                                     "ix_message_inbound"}  # fmt: skip
        assert connection.execute(text("SELECT count(*) FROM ledger_entry")).scalar_one() == 1
        assert connection.execute(text("SELECT count(*) FROM message")).scalar_one() == 1


@pytest.mark.postgres_only
def test_migration_0013_builds_again_an_index_a_failed_concurrent_build_left(
    engine: Engine,
) -> None:
    """0013 tells operators to build its indexes beforehand with `CREATE INDEX CONCURRENTLY`.
    When such a build fails (cancelled, timed out), PostgreSQL leaves an invalid index under
    the name, which it keeps up to date but never reads: the upgrade must build it again, not
    skip it because the name exists."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012_passcode")
        connection.execute(
            text(
                "CREATE INDEX ix_message_inbound ON message (phone, created_at)"
                " WHERE direction = 'inbound'"
            )
        )
        # What a failed CREATE INDEX CONCURRENTLY leaves behind.
        connection.execute(
            text(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'ix_message_inbound'::regclass"
            )
        )
        command.upgrade(config, "head")
        valid = connection.execute(
            text(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_message_inbound'::regclass"
            )
        ).scalar_one()
    assert valid is True
