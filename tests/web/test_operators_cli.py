"""`textpay operators add | list | disable` (issue 15): the one-time password is printed once and
works, never logged; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from textpay import operators
from textpay.db import unit_of_work
from textpay.timeutil import utcnow
from webhooks.cli import cli


def run(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["operators", *args], env={"DATABASE_URL": database_url})
    return result.exit_code, result.output


def test_add_list_disable(
    database_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, output = run(database_url, "add", "Ann@Example.org", "--role", "admin", "--name", "Ann")
    assert code == 0, output
    password = output.split("one-time password: ")[1].strip()
    assert len(password) >= 16
    assert password not in caplog.text
    with unit_of_work(engine) as session:
        found = operators.sign_in(session, "ann@example.org", password, now=utcnow())
        assert found is not None
        assert found.role == "admin"
        assert found.name == "Ann"
        assert password not in found.password_hash

    assert run(database_url, "add", "ann@example.org", "--role", "viewer")[0] != 0
    assert run(database_url, "add", "not-an-email", "--role", "viewer")[0] != 0
    assert run(database_url, "add", "bo@example.org", "--role", "boss")[0] != 0
    code, listed = run(database_url, "list")
    assert code == 0
    assert listed.split("\t")[1:4] == ["ann@example.org", "admin", "active"]

    code, output = run(database_url, "disable", "ANN@example.org")
    assert code == 0, output
    assert "\tdisabled\t" in run(database_url, "list")[1]
    with unit_of_work(engine) as session:
        assert operators.sign_in(session, "ann@example.org", password, now=utcnow()) is None
    assert run(database_url, "disable", "nobody@example.org")[0] != 0
