"""Keeping subscribers' numbers, card numbers and secrets out of every log line, and log lines
one line each.

Our own log calls already name numbers masked (`phones.masked_phone`) and never bodies; this is
the net under everything else: a database error's text (PostgreSQL's `DETAIL: Key (phone)=(...)`),
a URL path in gunicorn's access log, a library's warning. `install` puts a log record factory in
place for the whole process, so every record, whoever logs it and whichever handler writes it,
is scrubbed when it is made:

- secrets registered with `register_secrets` (the admin token, Twilio's auth token), and the
  credentials of `Authorization` headers, become `[secret]`;
- a card link's token (`/card/<token>` in gunicorn's access log, werkzeug's request line)
  becomes `/card/[link]`: the link works once, but until then it is a bearer credential;
- anything shaped like a phone or card number keeps only its last two digits
  (`+12125550147` → `***47`): seven or more digits after a `+` (or `%2B`), however separated; a
  North American number however punctuated; 12 or more digits with single spaces or hyphens;
  eight or more digits with no spaces. Digits in any script; ISO dates, IPv4 addresses and the
  numbers of a log line (`201 1221 19ms`) are left alone;
- control characters are escaped (`\\x0a`, `\\x1b`): a `%0a` in a URL cannot forge a log line,
  nor a `%1b` drive the terminal of whoever reads the log. A traceback keeps its line breaks.

Entry points install it (gunicorn.conf.py, the clock, `textpay serve`); the domain code keeps
masking what it logs itself.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

HIDDEN = "[secret]"
# Phone and card numbers as people, URLs and databases write them, starting where no word, dot
# or `%` goes before (not the digits inside a SID, a version or a URL escape):
_NUMBER = re.compile(
    r"(?<![\w.%])(?:"
    # with a `+` (or its URL encoding): `+12125550147`, `+1 (212) 555-0147`, `%2B1212...`
    r"(?:\+|%2[bB])\(?\d(?:(?:[ ./()-]|%20){0,2}\d){6,}"
    # else, unless an ISO date or an IPv4 address:
    r"|(?!\d{4}-\d\d-\d\d(?!\d))(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))(?:"
    # a North American number: `(212) 555-0147`, `212 555 0147`
    r"\(?\d{3}\)?(?:[ .-]|%20)?\d{3}(?:[ .-]|%20)\d{4}(?!\d)"
    # a card number: 12 or more digits, single spaces or hyphens between (as textpay.redaction)
    r"|\d(?:[ -]?\d){11,}"
    # eight or more digits, no spaces: `12125550147`, `212.555.0147`
    r"|\d(?:[./()-]?\d){7,}"
    r"))"
)
_DIGIT = re.compile(r"\d")
# A card link's token (`/card/<token>`, `textpay.card_links`): whatever follows `/card/` up to
# the end of the path, so that a mistyped or hostile token is hidden too.
_CARD_LINK = re.compile(r"/card/(?!\[link\])[^\s\"'?#/<>]+")
CARD_LINK_MASK = "/card/[link]"
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s\"',;]+")
# C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Shorter values (a development token such as `dev-token`) would blot out ordinary words.
_SHORTEST_SECRET = 8

_secrets: set[str] = set()
_lock = threading.Lock()
# The record factory `install` wrapped (empty when not installed).
_wrapped: list[Callable[..., logging.LogRecord]] = []


def printable(value: str, limit: int = 80) -> str:
    """An outside party's id (a processor's event or refund id) for a log line: printable, and
    short, whatever it holds."""
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def register_secrets(*values: str | None) -> None:
    """Values never to be written to a log (tokens, keys), from now on, in this process."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _SHORTEST_SECRET)


def mask_card_links(text: str) -> str:
    """`text` with the token of every card link path written `[link]` (`/card/[link]`)."""
    return _CARD_LINK.sub(CARD_LINK_MASK, text)


def _mask_number(found: re.Match[str]) -> str:
    digits = _DIGIT.findall(found.group())
    return "***" + "".join(digits[-2:])


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def scrub(text: str, *, multiline: bool = False) -> str:
    """`text` fit for a log: no secret, no phone or card number, no control character
    (`multiline`: line breaks kept, for tracebacks)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, HIDDEN)
    text = _CREDENTIALS.sub(lambda m: f"{m.group(1)} {HIDDEN}", text)
    text = mask_card_links(text)
    text = _NUMBER.sub(_mask_number, text)
    return (_CONTROL_BUT_NEWLINE if multiline else _CONTROL).sub(_escape, text)


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace the record's message, traceback and stack with scrubbed text (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: log what there is rather than lose the record
        message = f"{record.msg} (arguments could not be formatted)"
    record.msg = scrub(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text, multiline=True)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info, multiline=True)
    return record


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    return scrub_record(_wrapped[0](*args, **kwargs))


def install() -> None:
    """Scrub every log record this process makes from now on (idempotent). Python's warnings
    are routed through logging too, so that they are scrubbed as well."""
    with _lock:
        if _wrapped:
            return
        _wrapped.append(logging.getLogRecordFactory())
        logging.setLogRecordFactory(_make_record)
    logging.captureWarnings(True)


def uninstall() -> None:
    """Undo `install` (for tests)."""
    with _lock:
        if not _wrapped:
            return
        logging.setLogRecordFactory(_wrapped.pop())
    logging.captureWarnings(False)


def installed() -> bool:
    return bool(_wrapped)
