"""Fixtures for conversations: a Twilio client that signs, and accounts with offers waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.web.twilio_client import TwilioClient
from textpay import facts, prompts
from textpay.accounts import payment_method_of
from textpay.db import unit_of_work
from textpay.models import Account, LedgerEntry, Prompt, SandboxCharge
from textpay.policy import effective_for_account
from textpay.timeutil import utcnow

MOM = "+12125550147"


def app_engine(app: Flask) -> Engine:
    """The engine the app itself uses (the `engine` fixture is another one, on the same
    database): the one to listen to for what the app's requests send."""
    engine: Engine = app.extensions["textpay"].engine
    return engine


@pytest.fixture
def twilio(client: FlaskClient) -> TwilioClient:
    return TwilioClient(client)


@pytest.fixture
def offer(engine: Engine) -> Callable[[int], int]:
    """Make a pending top-up offer for an account whose text has gone out, as the low-balance
    scan and the dispatcher will."""

    def make(account_id: int) -> int:
        with unit_of_work(engine) as session:
            account = session.get(Account, account_id)
            assert account is not None
            effective = effective_for_account(session, account)
            card = payment_method_of(session, account_id)
            prompt = prompts.offer(
                session,
                account,
                effective,
                now=utcnow(),
                acceptable_after=utcnow(),
                label=facts.labels_on_phone(session, account.phone)[account.account_number],
                card_token=card.token if card else None,
            )
            assert prompt.id is not None
            return prompt.id

    return make


@pytest.fixture
def low_account(admin: AdminClient, offer: Callable[[int], int]) -> dict[str, Any]:
    """Mom's account ...4821 at $3.10 with a $25.00 offer waiting."""
    account = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")
    admin.credit(account["id"], 310, "seed-4821")
    account["prompt_id"] = offer(account["id"])
    return account


def count(engine: Engine, model: Any, *conditions: Any) -> int:
    with unit_of_work(engine) as session:
        statement = select(func.count()).select_from(model)
        for condition in conditions:
            statement = statement.where(condition)
        return int(session.exec(statement).one())


def deposits(engine: Engine) -> int:
    return count(engine, LedgerEntry, LedgerEntry.kind == "deposit")


def charges(engine: Engine) -> int:
    return count(engine, SandboxCharge)


def prompt_status(engine: Engine, prompt_id: int) -> str:
    with unit_of_work(engine) as session:
        prompt = session.get(Prompt, prompt_id)
        assert prompt is not None
        return prompt.status


@pytest.fixture
def two_accounts(admin: AdminClient, offer: Callable[[int], int], engine: Engine) -> dict[str, Any]:
    """Mom's phone carries two accounts, each low and in a low-balance episode (the scan has
    offered), each with a live offer: the texts read every account, card and offer."""
    first = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")
    second = admin.enrol(account_number="ACCT-7730", phone="(212) 555-0147", nickname="Dad")
    for account, key in ((first, "seed-4821"), (second, "seed-7730")):
        assert admin.credit(account["id"], 310, key).status_code == 201
        account["prompt_id"] = offer(account["id"])
    with unit_of_work(engine) as session:
        session.execute(update(Account).values(episode_prompts=1))
    return {"first": first, "second": second}
