"""The net under every log line (textpay/logsafe.py): numbers, cards and secrets masked, control
characters escaped, and the numbers a log line is made of left alone."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from textpay import logsafe


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("+12125550147", "***47"),
        ("Key (phone)=(+12125550147) already exists.", "Key (phone)=(***47) already exists."),
        ("/admin/accounts/%2B12125550147", "/admin/accounts/***47"),
        ("?To=%2b12125550147&", "?To=***47&"),
        ("+1 (212) 555-0147", "***47"),
        ("+44 20 7946 0958", "***58"),
        ("(212) 555-0147", "***47"),
        ("(212)%20555-0147", "***47"),
        ("212.555.0147", "***47"),
        ("212 555 0147", "***47"),
        ("12125550147", "***47"),
        ("4242 4242 4242 4242", "***42"),
        ("4111-1111-1111-1111", "***11"),
        ("3782 822463 10005", "***05"),
        ("/cards/4111111111111111", "/cards/***11"),
        ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "***٤٢"),  # Arabic-Indic digits
    ],
)
def test_numbers_keep_only_their_last_two_digits(raw: str, logged: str) -> None:
    assert logsafe.scrub(raw) == logged


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1 "POST /admin/accounts" 201 1221 19ms',
        "Listening at: http://127.0.0.1:53906 (11806)",
        "Booting worker with pid: 4194304",
        "next run at 2026-11-26 23:00:40 UTC",
        "from 192.168.100.200",
        "SM00000000000000000000000000000001 and AC0123456789abcdef0123456789abcdef",
        "twilio 9.13.0, ids 1234 and 555-0147",
        "scan: {'prompted': 3, 'held': 0, 'errors': 0}",
    ],
)
def test_the_numbers_of_an_ordinary_log_line_are_left_alone(line: str) -> None:
    assert logsafe.scrub(line) == line


def test_registered_secrets_and_credentials_are_hidden() -> None:
    logsafe.register_secrets("s3cret-admin-token", "short", None)
    assert logsafe.scrub("GET /admin/s3cret-admin-token") == "GET /admin/[secret]"
    assert logsafe.scrub("Authorization: Bearer any-thing") == "Authorization: Bearer [secret]"
    assert logsafe.scrub("basic%20QUM6dG9r") == "basic [secret]"
    assert logsafe.scrub("short") == "short"  # too short to hide without hiding words


def test_control_characters_are_escaped_so_a_line_stays_one_line() -> None:
    forged = '/healthz\n127.0.0.1 "GET /FORGED" 200\r\x1b[2J\x1b[31mred\x85\u2028'
    assert logsafe.scrub(forged) == (
        '/healthz\\x0a127.0.0.1 "GET /FORGED" 200\\x0d\\x1b[2J\\x1b[31mred\\x85\\u2028'
    )
    assert logsafe.scrub("line 1\nline\t2\x1b", multiline=True) == "line 1\nline\\x092\\x1b"


@pytest.fixture
def scrubbed() -> Iterator[io.StringIO]:
    """A logger writing to a string, with the scrubber installed for this test only."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    logsafe.install()
    logsafe.install()  # twice changes nothing
    try:
        yield stream
    finally:
        logsafe.uninstall()
        logger.removeHandler(handler)
        logger.propagate = True
    assert not logsafe.installed()


def test_every_record_is_scrubbed_once_installed(scrubbed: io.StringIO) -> None:
    log = logging.getLogger("tests.logsafe")
    try:
        raise ValueError("Key (phone)=(+12125550147) already exists\nfor 4242 4242 4242 4242")
    except ValueError:
        log.exception("unhandled error on %s %s", "GET", "/x\n127.0.0.1 forged")
    log.warning({"phone": "+13055550123"})  # not a format string: still scrubbed
    written = scrubbed.getvalue()
    assert "5550147" not in written
    assert "4242 4242" not in written
    assert "5550123" not in written
    assert "unhandled error on GET /x\\x0a127.0.0.1 forged\n" in written
    assert "Traceback (most recent call last):\n" in written  # a traceback keeps its lines
    assert "ValueError: Key (phone)=(***47) already exists\nfor ***42" in written
    assert "{'phone': '***23'}" in written


def test_warnings_go_through_the_scrubber_once_installed(scrubbed: io.StringIO) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("py.warnings").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("odd number +12125550147", UserWarning, stacklevel=1)
    finally:
        logging.getLogger("py.warnings").removeHandler(handler)
    assert "***47" in stream.getvalue()
    assert "5550147" not in stream.getvalue()


def test_nothing_changes_until_installed() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("+12125550147",), None)
    assert record.getMessage() == "to +12125550147"


@pytest.mark.parametrize(
    "raw",
    [
        '127.0.0.1 "GET /card/Zk3vQ_2-abcdefghijklmnopqrstuvwxyzABCDEFGHI" 200 1532 3ms',
        '127.0.0.1 "POST /card/Zk3vQ_2-abcdefghijklmnopqrstuvwxyzABCDEFGHI" 410 612 2ms',
        '127.0.0.1 - - "GET /card/short%00odd HTTP/1.1" 404 -',
        "Card link: https://pay.example.com/card/Zk3vQ_2-abcdefghijklmnopqrstuvwxyzABCDEFGHI x",
    ],
)
def test_a_card_links_token_never_reaches_a_log_line(raw: str) -> None:
    """The card link's token is a bearer credential until used: gunicorn's access log (the
    path, `%(U)s`) and werkzeug's request line write `/card/[link]` instead."""
    logged = logsafe.scrub(raw)
    assert "/card/[link]" in logged
    assert "Zk3vQ" not in logged
    assert "short" not in logged
    assert logsafe.scrub(logged) == logged
