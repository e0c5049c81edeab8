"""schemathesis against the admin API's own OpenAPI document: no 500, and no response that
breaks the schema the API publishes."""

from __future__ import annotations

import tempfile
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ADMIN_TOKEN, AUTH
from textpay.config import Settings
from textpay.db import create_schema, make_engine
from webhooks import create_app


def api_app() -> Flask:
    """One app and database for the whole run, seeded with an account to find."""
    url = f"sqlite:///{tempfile.mkdtemp(prefix='textpay-schemathesis-')}/api.db"
    create_schema(make_engine(url))
    app = create_app(Settings(_env_file=None, database_url=url, admin_token=ADMIN_TOKEN))  # type: ignore[call-arg]
    app.test_client().post("/admin/accounts", headers=AUTH,
                           json={"account_number": "A1", "phone": "2125550147",
                                 "payment_method": {"token": "tok_visa"}})  # fmt: skip
    return app


schema = schemathesis.openapi.from_wsgi("/admin/openapi.json", api_app(), headers=AUTH)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_keeps_its_published_promises(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])
