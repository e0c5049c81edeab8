"""A database error's text, which a logged traceback writes out, never carries the statement's
parameters: they hold subscribers' numbers and the words of their texts (`hide_parameters`)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from textpay.db import is_unique_violation, unit_of_work
from textpay.models import Message
from textpay.timeutil import utcnow


def inbound(sid: str) -> Message:
    now = utcnow()
    return Message(direction="inbound", phone="+12125550147", body="my words, quokka",
                   status="received", twilio_sid=sid, created_at=now, updated_at=now)  # fmt: skip


def test_a_unique_violation_names_no_parameter(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        session.add(inbound("SM" + "a" * 32))
    with pytest.raises(IntegrityError) as failure, unit_of_work(engine) as session:
        session.add(inbound("SM" + "a" * 32))
    text = str(failure.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in text
    assert "quokka" not in text
    assert "+12125550147" not in text
    assert is_unique_violation(failure.value)  # what the retry needs is still there
