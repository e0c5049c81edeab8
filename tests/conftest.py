"""Shared fixtures: one database per test, on SQLite always and on PostgreSQL when configured.

Every test that asks for `database_url` (directly or through `engine`, `app`, `admin`) runs twice:
on a fresh SQLite file, and on the PostgreSQL database named by `TEXTPAY_TEST_DATABASE_URL`
(emptied before each test). Outside CI the PostgreSQL half is skipped when the variable is unset;
in CI (`CI=true`) a missing variable is an error, so the PostgreSQL run can never silently vanish.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from werkzeug.test import TestResponse

from tests.standin.stripe import StripeStandIn
from textpay.config import Settings, normalize_database_url
from textpay.db import create_schema, make_engine
from webhooks import create_app

PG_URL = os.environ.get("TEXTPAY_TEST_DATABASE_URL", "").strip()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ADMIN_TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError(
            "CI=true but TEXTPAY_TEST_DATABASE_URL is not set: the PostgreSQL half of the suite "
            "would be skipped"
        )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test database, with TextPay's schema created afresh once per run."""
    if not PG_URL:
        pytest.skip("TEXTPAY_TEST_DATABASE_URL is not set (PostgreSQL half skipped)")
    url = normalize_database_url(PG_URL)
    engine = make_engine(url)
    with engine.begin() as connection:  # a clean slate, then the migrations, once per run
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    create_schema(engine)
    engine.dispose()
    return url


def _empty_postgres(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        # The ledger refuses TRUNCATE (an append-only trigger); a test's clean slate is the one
        # place it is wanted, so triggers are off for this transaction only.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    create_schema(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("a PostgreSQL-only test (row locks, advisory locks or the server itself)")
        url = f"sqlite:///{tmp_path}/textpay.db"
        create_schema_engine = make_engine(url)
        create_schema(create_schema_engine)
        create_schema_engine.dispose()
        return url
    url = str(request.getfixturevalue("postgres_url"))
    _empty_postgres(url)
    return url


def base_settings(database_url: str) -> Settings:
    """The settings every test starts from (the sandbox gateway)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        twilio_auth_token="test-twilio-auth-token",
        sandbox_slow_seconds=0.5,
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return base_settings(database_url)


@pytest.fixture
def stripe_standin() -> Iterator[StripeStandIn]:
    """The Stripe stand-in (`tests/standin/stripe.py`) on a free port, in a thread. No webhook
    URL: a test that wants events delivered sets `webhook_url` itself."""
    server = StripeStandIn(slow_seconds=5.0).start()
    yield server
    server.stop()


@pytest.fixture
def stripe_settings(database_url: str, stripe_standin: StripeStandIn) -> Settings:
    """The test settings with Stripe's gateway, talking to the stand-in. A test module charges
    through Stripe by overriding `settings` with this (then `app`, `admin`, `engine` follow):

        @pytest.fixture
        def settings(stripe_settings: Settings) -> Settings:
            return stripe_settings
    """
    return base_settings(database_url).model_copy(
        update={
            "payments_backend": "stripe",
            "stripe_api_key": "sk_test_x",
            "stripe_api_url": stripe_standin.url,
            "stripe_webhook_secret": stripe_standin.webhook_secret,
            "stripe_statement_descriptor_suffix": "CALLS",
        }
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["textpay"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class AdminClient:
    """The admin API as an operator's script sees it: every request carries the bearer token."""

    client: FlaskClient

    def request(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def enrol(self, **fields: Any) -> dict[str, Any]:
        """Create an account (sensible defaults for what the test does not care about)."""
        body = {
            "account_number": "ACCT-4821",
            "phone": "(212) 555-0147",
            "nickname": "Mom",
            "payment_method": {"token": "tok_visa", "exp_month": 12, "exp_year": 2030},
            **fields,
        }
        response = self.post("/admin/accounts", json=body)
        assert response.status_code == 201, response.get_json()
        created: dict[str, Any] = response.get_json()
        return created

    def credit(self, account_id: int, amount_cents: int, key: str) -> TestResponse:
        return self.post(
            f"/admin/accounts/{account_id}/credits",
            json={"amount_cents": amount_cents, "reason": "test credit"},
            headers={"Idempotency-Key": key},
        )

    def usage(self, account_id: int, amount_cents: int, reference: str) -> TestResponse:
        return self.post(
            f"/admin/accounts/{account_id}/usage",
            json={"amount_cents": amount_cents, "reference": reference},
        )


@pytest.fixture
def admin(client: FlaskClient) -> AdminClient:
    return AdminClient(client)
