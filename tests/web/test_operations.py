"""What the on-call engineer reads: `/metrics` (behind its token, its counters moving with what
happens), `/healthz` with the clock's heartbeat, `/readyz`, and the request id that ties a
text to its log lines. Both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.conftest import base_settings
from tests.web.conftest import MOM, deposits
from tests.web.twilio_client import OUR_NUMBER, TwilioClient
from textpay import heartbeat, messages, metrics
from textpay.config import Settings
from textpay.db import unit_of_work
from textpay.models import Message
from textpay.timeutil import utcnow
from webhooks import create_app

METRICS_TOKEN = "test-metrics-token-0123456789"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return base_settings(database_url).model_copy(update={"metrics_token": METRICS_TOKEN})


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, by name and labels."""
    response = client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_their_token_and_are_not_there_without_one(
    client: FlaskClient, database_url: str
) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    assert "Bearer" in wrong.headers["WWW-Authenticate"]
    admin = client.get("/metrics", headers={"Authorization": "Bearer test-admin-token"})
    assert admin.status_code == 401  # the admin token is not the scrape token
    assert client.get("/metrics", headers=SCRAPE).status_code == 200

    unset = create_app(base_settings(database_url))
    try:
        assert unset.test_client().get("/metrics", headers=SCRAPE).status_code == 404
    finally:
        unset.extensions["textpay"].engine.dispose()


def test_a_yes_moves_the_counters(
    client: FlaskClient, twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    before = scrape(client)
    assert "added $25.00" in twilio.text(MOM, "YES")
    twilio.text(MOM, "BAL")
    after = scrape(client)
    assert deposits(engine) == 1

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("textpay_deposits_cents_total") == 2500
    assert moved("textpay_deposits_total") == 1
    assert moved("textpay_charges_total", backend="sandbox", outcome="succeeded") == 1
    assert moved("textpay_inbound_texts_total", intent="confirm") == 1
    assert moved("textpay_inbound_texts_total", intent="balance") == 1
    route = {"route": "/twilio/sms", "method": "POST"}
    assert moved("textpay_http_request_seconds_count", **route) == 2
    assert moved("textpay_http_request_seconds_bucket", le="+Inf", **route) == 2
    assert moved("textpay_http_request_seconds_sum", **route) > 0


def test_a_replayed_webhook_is_counted_as_a_replay(
    client: FlaskClient, twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    before = scrape(client)
    twilio.text(MOM, "BAL", sid="SM" + "a" * 32)
    twilio.text(MOM, "BAL", sid="SM" + "a" * 32)
    after = scrape(client)
    for intent, times in (("balance", 1), ("replay", 1)):
        name = "textpay_inbound_texts_total"
        assert value(after, name, intent=intent) - value(before, name, intent=intent) == times


def test_delivery_statuses_are_counted_by_status_and_error_code(
    client: FlaskClient, twilio: TwilioClient
) -> None:
    before = scrape(client)
    assert twilio.status("SM" + "b" * 32, "undelivered", "30003").status_code == 204
    assert twilio.status("SM" + "c" * 32, "delivered").status_code == 204
    after = scrape(client)
    name = "textpay_sms_status_total"
    for labels in ({"status": "undelivered", "error_code": "30003"},
                   {"status": "delivered", "error_code": ""}):  # fmt: skip
        assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_the_outbox_depth_is_read_at_scrape_time(client: FlaskClient, engine: Engine) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        for later in (None, None, now + timedelta(hours=8)):
            messages.queue_outbound(session, phone=MOM, account_id=None, body="hi",
                                    kind="notice", now=now, send_after=later)  # fmt: skip
    samples = scrape(client)
    depth = {state: value(samples, "textpay_outbox_messages", state=state)
             for state in metrics.OUTBOX_STATES}  # fmt: skip
    assert depth == {"queued": 2, "deferred": 1, "dispatching": 0, "unknown": 0}


def test_healthz_reports_the_clock_never_ok_then_stale(client: FlaskClient, engine: Engine) -> None:
    def health() -> dict[str, Any]:
        response = client.get("/healthz")
        assert response.status_code == 200  # whatever the clock's state
        body: dict[str, Any] = response.get_json()
        return body

    assert health() == {"status": "ok", "database": "ok", "clock": "never",
                        "clock_age_seconds": None}  # fmt: skip
    assert ("textpay_clock_heartbeat_age_seconds", ()) not in scrape(client)
    with freeze_time(utcnow(), tick=False) as clock:
        with unit_of_work(engine) as session:
            heartbeat.beat(session, now=utcnow())
        clock.tick(timedelta(seconds=20))
        assert health()["clock"] == "ok"
        assert health()["clock_age_seconds"] == 20.0
        assert value(scrape(client), "textpay_clock_heartbeat_age_seconds") == 20.0
        clock.tick(heartbeat.STALE_AFTER)  # three beats missed
        assert (health()["clock"], health()["clock_age_seconds"]) == ("stale", 65.0)
        with unit_of_work(engine) as session:  # a clock (another one) beats again
            heartbeat.beat(session, now=utcnow(), holder="other-host:7")
        assert (health()["clock"], health()["clock_age_seconds"]) == ("ok", 0.0)


def test_readyz_answers_while_the_database_does() -> None:
    """503 from an engine that reaches no database, 200 otherwise (below)."""
    app = create_app(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        )
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_readyz_is_200_with_a_database(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready",
                                                                 "database": "ok"})  # fmt: skip


def stored_request_id(engine: Engine, sid: str) -> str | None:
    with Session(engine) as session:
        return session.exec(select(Message.request_id).where(Message.twilio_sid == sid)).one()


def test_a_request_id_is_returned_and_stored_on_the_inbound_text(
    app: Flask, twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    params = {"MessageSid": "SM" + "d" * 32, "AccountSid": "AC" + "0" * 32, "From": MOM,
              "To": OUR_NUMBER, "Body": "BAL", "NumMedia": "0"}  # fmt: skip
    given = twilio.post("/twilio/sms", params, headers={"X-Request-Id": "lb-7f3a.c2:9"})
    assert given.headers["X-Request-Id"] == "lb-7f3a.c2:9"
    assert stored_request_id(engine, "SM" + "d" * 32) == "lb-7f3a.c2:9"

    made = twilio.sms(MOM, "BAL", sid="SM" + "e" * 32)
    generated = made.headers["X-Request-Id"]
    assert len(generated) == 24
    assert stored_request_id(engine, "SM" + "e" * 32) == generated
    assert app.test_client().get("/healthz").headers["X-Request-Id"] != generated


@pytest.mark.parametrize(
    "offered",
    ["+12125550147", "4111111111111111", "a b", "x" * 65, "id\x1b[2Jforged", "../etc", ""],
)
def test_a_request_id_that_is_not_a_plain_token_is_replaced(
    client: FlaskClient, offered: str
) -> None:
    """A phone or card number, spaces, control characters, anything long: not an id."""
    answered = client.get("/healthz", headers={"X-Request-Id": offered}).headers["X-Request-Id"]
    assert answered != offered
    assert len(answered) == 24
