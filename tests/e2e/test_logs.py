"""No log line holds a subscriber's number, a card number, the words of a text or a token, and
every log line is one line: the whole product runs a story (enrolment, offers, a payment, a card
number and a phone number typed into texts, STOP and START, a database error whose statement
carries a number and the words, hostile URLs), and then every line every process wrote (web
access and error logs with the app's own, the clock's, the Twilio stand-in's) is searched."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.e2e.stack import ADMIN_TOKEN, AUTH_TOKEN, Stack, http, wait_for
from tests.e2e.test_story import ABUELA, MOM_AND_DAD, low_account
from textpay.db import make_engine

pytestmark = pytest.mark.e2e

CARD = "4111 1111 1111 1111"
# A word in the texts we send, and never in anything TextPay writes back: if it is in a log,
# a body is.
WORD = "quokka"
DUPLICATE = f"DUPLICATE {WORD}"
# Separators people, URLs and log formats put between digits.
_BETWEEN = r"(?:[^0-9A-Za-z]|%[0-9A-Fa-f]{2}){0,3}"


def spelled(digits: str) -> str:
    """A pattern for `digits` however they are written: `(212) 555-0147`, `%2B1212...`."""
    return _BETWEEN.join(digits)


LEAKS = {
    "an E.164 number": re.compile(r"(?:\+|%2[bB])\d{7,15}"),
    "a story number": re.compile("|".join(spelled(n) for n in ("2125550147", "3055550123"))),
    "the card number": re.compile(spelled(CARD.replace(" ", ""))),
    "a card-like run of digits": re.compile(r"(?<!\w)\d(?:[ -]?\d){12,18}(?!\w)"),
    "a subscriber's words": re.compile(WORD, re.IGNORECASE),
    "the words of a text TextPay sent": re.compile("Reply YES to add|Responda SI|New balance"),
    "a token": re.compile(f"{re.escape(ADMIN_TOKEN)}|{re.escape(AUTH_TOKEN)}"),
    "a control character": re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"),
    # What a %0a in a URL writes on a line of its own, gunicorn's quotes escaped.
    "a forged line": re.compile(r'^127\.0\.0\.1 \\"\w+ /FORGED'),
}

HOSTILE_PATHS = [
    # A forged access-log line, and one forged with a carriage return too.
    "/healthz%0a127.0.0.1%20%22GET%20/FORGED%22%20200%200%201ms",
    "/twilio/sms%0d%0a127.0.0.1%20%22POST%20/FORGED%22%20200",
    # Terminal escapes: clear the screen, print in red.
    "/%1b%5b2J%1b%5b31mRED%1b%5b0m",
    # Numbers and secrets in paths.
    "/admin/accounts/%2B12125550147",
    "/admin/accounts/(212)%20555-0147",
    "/card/4111111111111111",
    f"/admin/{ADMIN_TOKEN}",
    f"/twilio/{AUTH_TOKEN}",
]


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    running = Stack(database_url).up()
    yield running
    running.down()


def provoke_a_unique_violation(stack: Stack, database_url: str) -> None:
    """A second inbound text with these words from this number breaks a unique index made for
    the occasion: the INSERT's parameters hold the number and the words, and PostgreSQL's error
    repeats the number (`DETAIL: Key (phone)=(+1...) already exists`). TextPay retries once,
    fails again, answers 500 and logs the traceback."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(f"CREATE UNIQUE INDEX e2e_once ON message (phone) WHERE body = '{DUPLICATE}'")
        )
    engine.dispose()
    assert stack.text(MOM_AND_DAD, DUPLICATE) != ""
    status, _ = http("POST", stack.standin + "/_inbound",
                     form={"From": MOM_AND_DAD, "Body": DUPLICATE})  # fmt: skip
    assert status == 500


def every_line(logs: Path) -> dict[str, list[str]]:
    found = {  # bytes decoded as they are: a stray carriage return is not a line break here
        path.name: path.read_bytes().decode("utf-8", errors="replace").split("\n")
        for path in logs.iterdir()
    }
    assert sorted(found) == ["e2e-clock.log", "e2e-standin.log", "e2e-web.log"]
    return found


def leaks_in(lines: dict[str, list[str]]) -> list[tuple[str, int, str, str]]:
    return [
        (name, number, what, line)
        for name, file_lines in lines.items()
        for number, line in enumerate(file_lines, start=1)
        for what, pattern in LEAKS.items()
        if pattern.search(line)
    ]


def test_no_log_line_holds_a_number_a_card_a_body_or_a_token(
    stack: Stack, database_url: str
) -> None:
    low_account(stack, "4821", "(212) 555-0147", "Mom")
    low_account(stack, "7730", "212.555.0147", "Dad")
    low_account(stack, "5566", "(305) 555-0123", "Abuela", language="es")
    wait_for(  # sent and recorded: the offers may be accepted
        lambda: (
            sum(
                len(stack.admin("GET", f"/admin/messages?status={status}")["messages"])
                for status in ("sent", "delivered")
            )
            == 3
        ),
        what="the offers",
    )
    # Operators look numbers up: in query strings, which the access log leaves out.
    stack.admin("GET", "/admin/accounts?phone=%2B12125550147")
    stack.admin("GET", "/admin/messages?phone=(212)%20555-0147")

    # Subscribers' texts: a payment, a card number, a phone number, STOP and back.
    assert "added $25.00" in stack.text(MOM_AND_DAD, "YES 4821")
    assert "card" in stack.text(MOM_AND_DAD, f"my card is {CARD} {WORD}").lower()
    stack.text(ABUELA, f"llámame al 305-555-0123 {WORD}")
    stack.text(MOM_AND_DAD, f"BAL {WORD}")
    assert "unsubscribed" in stack.text(MOM_AND_DAD, "STOP")
    assert "subscribed" in stack.text(MOM_AND_DAD, "START")
    provoke_a_unique_violation(stack, database_url)

    for path in HOSTILE_PATHS:
        status, _ = http("GET", stack.web + path)
        assert status in (403, 404, 405), (path, status)
    # The stand-in's own log: a lookup at "Twilio" names the number in its query.
    lookup = (f"{stack.standin}/2010-04-01/Accounts/AC{'e' * 32}/Messages.json"
              "?To=%2B12125550147&DateSent%3E=2026-01-01T00:00:00Z")  # fmt: skip
    assert http("GET", lookup)[0] == 200
    wait_for(lambda: "scan:" in stack.log("clock"), what="the clock's report of a scan")
    stack.down()  # every process has written and closed its log

    lines = every_line(stack.logs)
    assert leaks_in(lines) == []
    # The test saw what it came for: the traceback of the database error, the hostile paths
    # (escaped, on the line of their own request), the stand-in's lookup, the clock at work.
    web = lines["e2e-web.log"]
    assert any("IntegrityError" in line for line in web), "\n".join(web[-40:])
    forged = [line for line in web if "FORGED" in line]
    assert len(forged) == 2
    assert all(line.startswith('127.0.0.1 "GET /') and "\\x0a127.0.0.1" in line for line in forged)
    assert any("\\x1b[2J\\x1b[31mRED" in line for line in web)
    assert any("/admin/accounts/***47" in line for line in web)
    assert any("Messages.json" in line for line in lines["e2e-standin.log"])
    assert any("scan:" in line for line in lines["e2e-clock.log"])
