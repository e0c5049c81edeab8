"""Alembic's environment for TextPay: the target is the SQLModel metadata of `textpay.models`.

Run through `textpay init-db` (which upgrades to head), or with Alembic's own CLI via
`alembic.ini` at the repository root.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

from textpay import models  # noqa: F401  (registers the tables)
from textpay.timeutil import UTCDateTime

config = context.config
target_metadata = SQLModel.metadata


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our column type as what it is in the database, so migrations do not import it."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
        render_item=render_item,
    )


connection = config.attributes.get("connection")
if connection is not None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as fresh:
        configure(fresh)
        with context.begin_transaction():
            context.run_migrations()
