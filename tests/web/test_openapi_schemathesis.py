"""schemathesis against the admin API's own OpenAPI document, on SQLite and on PostgreSQL: no
500, and no response that breaks the schema the API publishes.

The document is read once (it does not depend on the database); every operation is then called
against an app on each database, seeded with an account to find. The examples are derandomized
(the same ones in every run: CI must not pass by luck) and bounded, 25 per operation and database.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ADMIN_TOKEN, AUTH, _empty_postgres
from textpay.config import Settings
from textpay.db import create_schema, make_engine
from webhooks import create_app

EXAMPLES_PER_OPERATION = 25


def seeded_app(url: str) -> Flask:
    """An app on `url` with one account to find."""
    app = create_app(Settings(_env_file=None, database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
    app.test_client().post("/admin/accounts", headers=AUTH,
                           json={"account_number": "A1", "phone": "2125550147",
                                 "payment_method": {"token": "tok_visa"}})  # fmt: skip
    return app


def sqlite_url() -> str:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='textpay-schemathesis-')}/api.db"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """One app and database per database kind for the whole module."""
    if request.param == "sqlite":
        url = sqlite_url()
    else:
        url = str(request.getfixturevalue("postgres_url"))  # skipped when PostgreSQL is not set
        _empty_postgres(url)
    app = seeded_app(url)
    yield app
    app.extensions["textpay"].engine.dispose()


schema = schemathesis.openapi.from_wsgi("/admin/openapi.json", seeded_app(sqlite_url()),
                                        headers=AUTH)  # fmt: skip


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_admin_api_keeps_its_published_promises(case: Any, api_app: Flask) -> None:
    case.call_and_validate(
        app=api_app, headers=AUTH, checks=[not_a_server_error, response_schema_conformance]
    )
