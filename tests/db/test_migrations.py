"""The migrations build exactly the schema the models describe, and can be undone."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from textpay.db import MIGRATIONS, make_engine
from webhooks.cli import cli


def test_models_and_migrations_agree(engine: Engine) -> None:
    """The test databases are built by the migrations; autogenerate must find nothing to add."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_migrations_upgrade_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roundtrip.db")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
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
