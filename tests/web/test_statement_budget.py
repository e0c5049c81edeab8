"""How many SQL statements a text costs: the webhook's hot path, held to its budget.

A BAL (and any text that moves no money) runs at most 3 statements and a YES at most 10 across
its phases (record and accept, charge, settle and reply), on both databases. Counted with
SQLAlchemy's `before_cursor_execute`, so a later change cannot quietly add a query.

Not counted: transaction control (`BEGIN IMMEDIATE`, which the SQLite engine sends to the driver
itself between two `PRAGMA busy_timeout`, unseen here, and psycopg sends implicitly, unseen, on
PostgreSQL; `SAVEPOINT`/`RELEASE`), and the sandbox
gateway's own bookkeeping, which stands in for the card processor (on Stripe the charge is an
HTTPS call and no SQL at all); its statements are counted separately and held to 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import CacheStats

from tests.conftest import AdminClient
from tests.web.conftest import MOM, app_engine, deposits
from tests.web.twilio_client import TwilioClient
from textpay import settings_cache
from textpay.db import unit_of_work
from textpay.models import Account, Facility, GlobalSettings, Message, PaymentMethod, Prompt
from textpay.timeutil import utcnow

BAL_BUDGET = 3
YES_BUDGET = 10
GATEWAY_BUDGET = 2
_TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")


@dataclass
class Statements:
    ours: list[str] = field(default_factory=list)
    gateway: list[str] = field(default_factory=list)
    # Statements SQLAlchemy compiled for this execution instead of taking them from its cache.
    compiled: list[str] = field(default_factory=list)

    def listing(self) -> str:
        return "\n".join(s.split("\n")[0][:120] for s in self.ours)


@contextmanager
def counted(engine: Engine) -> Iterator[Statements]:
    seen = Statements()

    def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
               _many: bool) -> None:  # fmt: skip
        words = statement.lstrip().upper()
        if words.startswith(_TRANSACTION_CONTROL):
            return
        (seen.gateway if "SANDBOX_CHARGE" in words else seen.ours).append(statement)
        if getattr(context, "cache_hit", CacheStats.CACHE_HIT) is not CacheStats.CACHE_HIT:
            seen.compiled.append(statement.split("\n", maxsplit=1)[0][:120])

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.mark.parametrize("words", ["BAL", "SALDO", "HELP", "what is this"])
def test_a_text_that_moves_no_money_runs_at_most_three_statements(
    app: Flask, twilio: TwilioClient, two_accounts: dict[str, Any], words: str
) -> None:
    twilio.text(MOM, "BAL")  # the process's copy of the settings is loaded by a first text
    with counted(app_engine(app)) as seen:
        reply = twilio.text(MOM, words)
    assert reply  # answered, and
    assert len(seen.ours) <= BAL_BUDGET, seen.listing()
    assert not seen.gateway


@pytest.mark.parametrize("words", ["BAL", "HELP", "what is this"])
def test_a_text_that_moves_no_money_builds_no_orm_object(
    app: Flask, twilio: TwilioClient, two_accounts: dict[str, Any], words: str
) -> None:
    """The facts of a text are plain rows (`facts.TextAccount` and its kin): loading the
    phone's accounts, offers and cards as ORM objects cost more than the query itself."""
    twilio.text(MOM, "BAL")  # the process's copy of the settings is loaded by a first text
    loaded: list[str] = []

    def on_load(target: Any, _context: Any) -> None:
        loaded.append(type(target).__name__)

    models = (Account, Prompt, PaymentMethod, Message, GlobalSettings, Facility)
    for model in models:
        event.listen(model, "load", on_load)
    try:
        reply = twilio.text(MOM, words)
    finally:
        for model in models:
            event.remove(model, "load", on_load)
    assert reply
    assert loaded == []


def test_a_yes_runs_at_most_ten_statements_across_its_phases(
    app: Flask, engine: Engine, twilio: TwilioClient, two_accounts: dict[str, Any]
) -> None:
    twilio.text(MOM, "BAL")
    with counted(app_engine(app)) as seen:
        reply = twilio.text(MOM, "YES 4821")
    # What the subscriber and the ledger notice: one deposit, the receipt with the new balance,
    # the episode over (the balance is back above the threshold), the offer funded.
    assert "added $25.00" in reply
    assert "New balance $28.10" in reply
    assert deposits(engine) == 1
    with unit_of_work(engine) as session:
        account = session.get(Account, two_accounts["first"]["id"])
        offer = session.get(Prompt, two_accounts["first"]["prompt_id"])
        assert account is not None
        assert offer is not None
        assert (account.balance_cents, account.episode_prompts) == (2810, 0)
        assert offer.status == "funded"
    assert len(seen.ours) <= YES_BUDGET, seen.listing()
    assert len(seen.gateway) <= GATEWAY_BUDGET


def test_a_text_s_statements_are_compiled_once_per_process(
    app: Flask, engine: Engine, twilio: TwilioClient, two_accounts: dict[str, Any]
) -> None:
    """The second BAL and the second YES of a process run only statements SQLAlchemy compiled
    before and kept in its cache: one it cannot cache is compiled again for every text (the
    sandbox's `ON CONFLICT DO NOTHING` insert was, and its compiling cost twice its running)."""
    twilio.text(MOM, "BAL")
    twilio.text(MOM, "YES 4821")
    with counted(app_engine(app)) as seen:
        assert "$28.10" in twilio.text(MOM, "BAL")
        reply = twilio.text(MOM, "YES 7730")
    assert "added $25.00" in reply
    assert deposits(engine) == 2
    assert seen.ours  # it saw the statements it judges
    assert seen.gateway
    assert seen.compiled == []


def test_a_deposit_that_leaves_the_balance_low_keeps_the_episode(
    app: Flask, engine: Engine, twilio: TwilioClient, two_accounts: dict[str, Any],
    admin: AdminClient,
) -> None:  # fmt: skip
    """The re-arm folded into the deposit's statement ends the episode only at the threshold."""
    assert admin.patch(f"/admin/accounts/{two_accounts['first']['id']}",
                       json={"threshold_cents": 5000}).status_code == 200  # fmt: skip
    twilio.text(MOM, "YES 4821")
    with unit_of_work(engine) as session:
        account = session.get(Account, two_accounts["first"]["id"])
        assert account is not None
        assert (account.balance_cents, account.episode_prompts) == (2810, 1)


def test_a_settings_change_through_the_admin_api_is_seen_by_the_next_text(
    admin: AdminClient, twilio: TwilioClient, two_accounts: dict[str, Any]
) -> None:
    assert "Up to 3 msgs/day" in twilio.text(MOM, "HELP")
    assert admin.patch("/admin/settings", json={"daily_message_cap": 5}).status_code == 200
    assert "Up to 5 msgs/day" in twilio.text(MOM, "HELP")


def test_another_process_s_settings_change_is_seen_within_the_cache_lifetime(
    engine: Engine, twilio: TwilioClient, two_accounts: dict[str, Any]
) -> None:
    """A change this process did not make (another worker's, written here straight to the
    database) is seen once the copy is `TTL_SECONDS` old, never later."""
    with freeze_time(utcnow(), tick=False) as clock:
        before = twilio.text(MOM, "HELP")
        with unit_of_work(engine) as session:
            session.execute(update(GlobalSettings).values(daily_message_cap=7))
        assert twilio.text(MOM, "HELP") == before  # still this process's copy
        clock.tick(timedelta(seconds=settings_cache.TTL_SECONDS + 0.1))
        after = twilio.text(MOM, "HELP")
    assert "Up to 3 msgs/day" in before
    assert "Up to 7 msgs/day" in after
