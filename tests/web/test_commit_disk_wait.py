"""Which texts' commits wait for the disk on PostgreSQL: every one that changes something.

A text that only asks (BAL, HELP, words TextPay does not know) writes nothing but its own record,
and that record commits without waiting for the disk (`db.commit_without_disk_wait`): a crash of
the database server within a moment of it could lose that line of the message log and nothing
else. Everything else (money, consent, offers, card links, passcode tries, settings) waits, as
does every transaction after it on the same pooled connection.

Each COMMIT is caught as it is sent (SQLAlchemy's `commit` event) and the connection asked what
PostgreSQL will do with it (`SHOW synchronous_commit`), with the statements that wrote in that
transaction. SQLite commits every transaction of its write-ahead log this way already
(`synchronous=NORMAL`), so these run on PostgreSQL only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.web.conftest import MOM, app_engine, deposits
from tests.web.twilio_client import TwilioClient
from textpay.db import is_postgresql
from textpay.timeutil import utcnow

KEYWORDS = Path(__file__).resolve().parents[2] / "fixtures" / "keywords.csv"
_WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


@dataclass(frozen=True)
class Commit:
    waits_for_disk: bool
    writes: tuple[str, ...]  # each writing statement's first words
    connection: int  # which pooled DBAPI connection


def _first_words(statement: str) -> str:
    return " ".join(statement.split()[:3])


@contextmanager
def commits(engine: Engine) -> Iterator[list[Commit]]:
    """Every COMMIT the engine sends meanwhile, in order, with what PostgreSQL will do with it."""
    seen: list[Commit] = []

    def before(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.lstrip().upper()
        if words.startswith(_WRITES) or (
            words.startswith("WITH") and any(w in words for w in _WRITES)
        ):
            conn.info.setdefault("writes", []).append(_first_words(statement))

    def on_commit(conn: Any) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        setting = dbapi_connection.execute("SHOW synchronous_commit").fetchone()[0]
        writes = tuple(conn.info.pop("writes", []))
        seen.append(Commit(setting != "off", writes, id(dbapi_connection)))

    def on_rollback(conn: Any) -> None:
        conn.info.pop("writes", None)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "rollback", on_rollback)


@pytest.fixture
def app(app: Flask) -> Flask:
    if not is_postgresql(app_engine(app)):
        pytest.skip("SQLite's write-ahead log (synchronous=NORMAL) never waits for the disk")
    return app


@pytest.fixture
def two_low_accounts(admin: AdminClient, offer: Any) -> None:
    """Mom's phone carries two accounts at $3.10, each with a $25.00 offer waiting."""
    for number, key in (("ACCT-4821", "seed-4821"), ("ACCT-7730", "seed-7730")):
        account = admin.enrol(account_number=number, phone="(212) 555-0147", nickname=number)
        assert admin.credit(account["id"], 310, key).status_code == 201
        offer(account["id"])


def _only_its_record(commit: Commit) -> bool:
    return commit.writes == ("INSERT INTO message",)


@pytest.mark.parametrize("words", ["BAL", "SALDO", "HELP", "what is this", ""])
def test_a_text_that_only_asks_commits_its_record_without_waiting(
    app: Flask, twilio: TwilioClient, two_low_accounts: None, words: str
) -> None:
    with commits(app_engine(app)) as seen:
        reply = twilio.text(MOM, words)
    assert reply
    assert [c for c in seen if c.writes] == [
        Commit(False, ("INSERT INTO message",), seen[0].connection)
    ]


@pytest.mark.parametrize(
    "words",
    [
        "YES 4821",  # accept, charge and settle: money
        "NO",  # an offer declined
        "STOP",  # consent
        "CARD 4821",  # a card link, which works only if its row survives
        "ESPANOL",  # the phone's language
        "AUTOPAY ON 4821",  # enrolment
        "ADD 20 4821",  # a fresh offer for another amount
    ],
)
def test_a_text_that_changes_anything_waits_for_the_disk(
    app: Flask, engine: Engine, twilio: TwilioClient, two_low_accounts: None, words: str
) -> None:
    with commits(app_engine(app)) as seen:
        twilio.text(MOM, words)
    written = [c for c in seen if c.writes]
    assert written, "the text changed nothing"
    assert any(len(c.writes) > 1 or not _only_its_record(c) for c in written)
    assert all(c.waits_for_disk for c in written), written


def test_the_next_transaction_on_the_same_connection_waits_again(
    app: Flask, engine: Engine, twilio: TwilioClient, two_low_accounts: None
) -> None:
    """The setting ends with the BAL's transaction: the YES after it, served by the same pooled
    connection, commits its money waiting for the disk."""
    with commits(app_engine(app)) as seen:
        twilio.text(MOM, "BAL")
        reply = twilio.text(MOM, "YES 4821")
    assert "added $25.00" in reply
    assert deposits(engine) == 1
    bal, *yes = [c for c in seen if c.writes]
    assert not bal.waits_for_disk
    assert len(yes) == 3  # accept, the sandbox's charge, settle
    assert bal.connection in {c.connection for c in yes}  # the same connection served the YES
    assert all(c.waits_for_disk for c in yes), yes


def test_no_text_of_the_keyword_table_skips_the_wait_for_more_than_its_record(
    app: Flask, twilio: TwilioClient, two_low_accounts: None
) -> None:
    """Every phrase the keyword table knows, in its order, from a phone with two accounts and
    offers (which YES, NO, STOP, START, TOP UP and the rest then change): a commit that does not
    wait wrote the text's record and nothing else. A write added to a turn without telling
    `engine.receive` breaks this."""
    with KEYWORDS.open(newline="", encoding="utf-8") as table:
        phrases = [row["text"] for row in csv.DictReader(table)]
    with freeze_time(utcnow()) as clock, commits(app_engine(app)) as seen:
        for phrase in phrases:
            clock.tick(timedelta(seconds=4))  # under the flood limit of 20 a minute
            twilio.sms(MOM, phrase)
    relaxed = [c for c in seen if c.writes and not c.waits_for_disk]
    waited = [c for c in seen if c.writes and c.waits_for_disk]
    # The table both asks and changes things.
    assert relaxed
    assert waited
    assert all(_only_its_record(c) for c in relaxed), [
        c for c in relaxed if not _only_its_record(c)
    ]


def test_a_yes_past_the_flood_limit_is_recorded_without_waiting_and_charges_nothing(
    app: Flask, engine: Engine, twilio: TwilioClient, two_low_accounts: None
) -> None:
    """Past the limit of 20 texts a minute a text is recorded and not answered: a YES there
    moves no money, so its record need not wait either."""
    with freeze_time(utcnow()):
        for _ in range(20):
            assert twilio.text(MOM, "BAL")
        with commits(app_engine(app)) as seen:
            assert twilio.text(MOM, "YES 4821") == ""
    assert deposits(engine) == 0
    assert [c for c in seen if c.writes] == [
        Commit(False, ("INSERT INTO message",), seen[0].connection)
    ]
