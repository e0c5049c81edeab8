"""TEXTPAY_LOG_FORMAT=json: one JSON object per line, with the request id, and the scrubber
(textpay/logsafe.py) applied to every field: no phone or card number, no token, in any."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys

from textpay import logformat, logsafe

TOKEN = "sk_live_51HfakeSecretForLogs"
LEAKS = ("2125550147", "4111", "1111 1111", TOKEN)


def test_a_line_is_one_json_object_with_its_fields() -> None:
    record = logging.LogRecord("textpay.engine", logging.WARNING, __file__, 1,
                               "sms %s: %d characters", ("SMabc", 12), None)  # fmt: skip
    logformat.set_request_id("lb-42")
    try:
        line = logformat.JsonFormatter().format(record)
    finally:
        logformat.set_request_id(None)
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "request_id"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "textpay.engine"
    assert entry["message"] == "sms SMabc: 12 characters"
    assert entry["request_id"] == "lb-42"
    assert str(entry["time"]).endswith("+00:00")


def test_no_field_of_a_json_line_holds_a_number_a_card_or_a_token() -> None:
    """Even a record the factory never scrubbed (made before `install`, or by a library's own
    factory), and whatever its fields hold."""
    logger = logging.getLogger("textpay.test.raw")
    record = logger.makeRecord(
        "client +1 (212) 555-0147",
        logging.ERROR,
        __file__,
        1,
        "charged 4111 1111 1111 1111 for %s\nforged line with Bearer %s",
        ("+12125550147", TOKEN),
        None,
    )
    try:
        raise RuntimeError(f"card 4111111111111111 for 212-555-0147 key {TOKEN}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    logsafe.register_secrets(TOKEN)
    logformat.set_request_id("+12125550147")  # an id can never be one (see below), still
    try:
        line = logformat.JsonFormatter().format(record)
    finally:
        logformat.set_request_id(None)
    assert "\n" not in line
    entry = json.loads(line)
    text = json.dumps(entry)
    for leak in LEAKS:
        assert leak not in text, (leak, entry)
    assert "***47" in str(entry["message"])
    assert "\\x0aforged" in str(entry["message"])  # the line break is escaped, not a new line
    assert "RuntimeError" in str(entry["exception"])


def test_records_made_through_logging_are_scrubbed_in_json() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logformat.JsonFormatter())
    log = logging.getLogger("textpay.test.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    installed = logsafe.installed()
    logsafe.install()
    logsafe.register_secrets(TOKEN)
    try:
        logformat.set_request_id("req-1")
        log.info("card 4111-1111-1111-1111 for %s", "(212) 555-0147")
        log.error("token %s", TOKEN)
        logformat.set_request_id(None)
        log.info("between requests")
    finally:
        log.removeHandler(handler)
        logformat.set_request_id(None)
        if not installed:
            logsafe.uninstall()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["request_id"] for e in entries] == ["req-1", "req-1", None]
    assert entries[1]["message"] == "token [secret]"
    for leak in LEAKS:
        assert leak not in stream.getvalue()


def test_request_ids_that_are_not_plain_tokens_are_replaced() -> None:
    assert logformat.request_id_from("abc-123.x:y_z") == "abc-123.x:y_z"
    for hostile in ("+12125550147", "12125550147", "4111111111111111", "a b", "é", "x" * 65,
                    TOKEN, "", None):  # fmt: skip
        logsafe.register_secrets(TOKEN)
        made = logformat.request_id_from(hostile)
        assert made != hostile
        assert len(made) == 24
        assert logsafe.scrub(made) == made


def test_gunicorn_s_log_config_routes_its_lines_and_the_app_s_through_json() -> None:
    config = logformat.gunicorn_logconfig("json")
    assert logformat.gunicorn_logconfig("text") == {}
    stream = io.StringIO()
    config["handlers"]["json"]["stream"] = stream
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        logging.getLogger("gunicorn.access").info('127.0.0.1 "GET /admin/accounts/%s" 200',
                                                  "+12125550147")  # fmt: skip
        logging.getLogger("webhooks.twilio").info("sms from ***47")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name in ("gunicorn.access", "gunicorn.error"):
            logging.getLogger(name).handlers.clear()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["logger"] for e in entries] == ["gunicorn.access", "webhooks.twilio"]
    assert "2125550147" not in stream.getvalue()
