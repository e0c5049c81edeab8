"""Making operators and their API tokens for tests (as the CLI and the admin API do)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from tests.conftest import AUTH
from textpay import operators
from textpay.db import unit_of_work
from textpay.timeutil import utcnow


@dataclass(frozen=True)
class MadeOperator:
    id: int
    email: str
    password: str


def make_operator(engine: Engine, email: str, role: str, name: str = "") -> MadeOperator:
    with unit_of_work(engine) as session:
        operator, password = operators.create_operator(
            session, email, role=role, name=name, actor="test", now=utcnow()
        )
        assert operator.id is not None
        return MadeOperator(operator.id, operator.email, password)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BOOTSTRAP = AUTH
