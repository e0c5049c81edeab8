"""How log lines are written: plain text (the default) or, with `TEXTPAY_LOG_FORMAT=json`, one
JSON object per line (`time`, `level`, `logger`, `message`, `request_id`, and `exception` when
there is one), for log shippers that index fields.

The web request being answered is named by a request id (`REQUEST_ID`, set by the web edge for
each request and cleared after gunicorn's access line); every line written meanwhile carries
it. Every field is passed through `textpay.logsafe.scrub` once more here, whether or not the
record factory already did: a JSON line never holds a phone or card number, a token or a raw
control character (`json.dumps` escapes what is left), in any field.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from textpay import logsafe

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("textpay_request_id", default=None)
# A caller's X-Request-Id is taken as it is only when it looks like an id: short, plain, and
# nothing the scrubber would hide (a phone number is not an id).
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def new_request_id() -> str:
    while True:
        candidate = secrets.token_hex(12)
        if logsafe.scrub(candidate) == candidate:  # 8 leading digits would read as a number
            return candidate


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a sane token, else a new one."""
    if header and _SANE_ID.fullmatch(header) and logsafe.scrub(header) == header:
        return header
    return new_request_id()


def set_request_id(value: str | None) -> None:
    REQUEST_ID.set(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, every field scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": logsafe.scrub(record.name),
            "message": logsafe.scrub(message),
            "request_id": _scrubbed(REQUEST_ID.get()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = logsafe.scrub(record.exc_text, multiline=True)
        if record.stack_info:
            entry["stack"] = logsafe.scrub(record.stack_info, multiline=True)
        return json.dumps(entry, ensure_ascii=True)


def _scrubbed(value: str | None) -> str | None:
    return None if value is None else logsafe.scrub(value)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: LogFormat, *, level: int = logging.INFO) -> None:
    """The root logger writes to stderr in `log_format` (the clock, `textpay serve`). Replaces
    handlers set before, so that it may be called again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)


def gunicorn_logconfig(log_format: LogFormat) -> dict[str, Any]:
    """gunicorn's `logconfig_dict` for `log_format`: empty (gunicorn's own) for text; for JSON,
    gunicorn's error and access lines and the app's own go through one JSON handler on stdout."""
    if log_format != "json":
        return {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "formatters": {"json": {"()": "textpay.logformat.JsonFormatter"}},
    }
