"""What the on-call engineer reads from the web process: request ids, request latency,
`GET /metrics` and `GET /readyz` (`/healthz` is webhooks/health.py).

- Every request gets an id: the caller's `X-Request-Id` when it is a sane token, else a new
  one. It is returned as `X-Request-Id`, carried by every log line written while the request
  is answered (`textpay.logformat.REQUEST_ID`, cleared by gunicorn's `post_request` after its
  access line), and stored on the inbound text a Twilio webhook records.
- Every request's time is observed in `textpay_http_request_seconds` by route (the URL rule,
  `/card/<token>`, never the path itself) and method. No SQL: the webhook's statement budget is
  unchanged.
- `GET /metrics`: Prometheus' text format, all processes summed in multiprocess mode, with the
  outbox's depth and the clock's heartbeat age read from the database as the scrape happens
  (two small indexed reads). Behind `Authorization: Bearer <TEXTPAY_METRICS_TOKEN>`; without
  that setting there is no such endpoint (404). The alternative, a scrape port that only the
  monitoring network reaches, is a second gunicorn bind (`--bind 10.0.0.5:9464`) with a proxy
  rule that refuses `/metrics` on the public one: the token is still required there.
- `GET /readyz`: 200 when the database answers, 503 while it does not, for a load balancer to
  take the process out of rotation (`/healthz` is liveness plus the clock's state).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from sqlalchemy import case, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from textpay import heartbeat, logformat, metrics
from textpay.models import OPEN_OUTBOUND_MESSAGE, Message
from textpay.timeutil import utcnow
from webhooks.problems import Problem
from webhooks.services import services

bp = Blueprint("operations", __name__)

REQUEST_ID_HEADER = "X-Request-Id"
_ENVIRON_KEY = "textpay.request_id"


class RequestIds:
    """WSGI middleware: give the request its id before anything else sees it (Flask, its error
    handlers, werkzeug's request line), and return it as a header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request_id = logformat.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[_ENVIRON_KEY] = request_id
        logformat.set_request_id(request_id)

        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, *rest)

        return self.app(environ, start)


def request_id() -> str | None:
    value = request.environ.get(_ENVIRON_KEY)
    return value if isinstance(value, str) else None


def register(app: Flask) -> None:
    app.wsgi_app = RequestIds(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _start_timer() -> None:
        g.textpay_started = time.perf_counter()

    @app.teardown_request
    def _observe(_error: BaseException | None) -> None:
        started = g.get("textpay_started")
        if started is None:
            return
        rule = request.url_rule
        metrics.HTTP_REQUEST_SECONDS.labels(
            route=rule.rule if rule is not None else "unmatched",
            method=metrics.method_label(request.method),
        ).observe(time.perf_counter() - started)

    app.register_blueprint(bp)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        with services().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return jsonify(status="unavailable", database=type(error).__name__), 503
    return jsonify(status="ready", database="ok"), 200


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    _authorize_scrape()
    return Response(
        metrics.exposition(metrics.ScrapeTimeCollector(_read_database)),
        mimetype=None,
        content_type=metrics.CONTENT_TYPE,
    )


def _authorize_scrape() -> None:
    expected = services().settings.metrics_token
    if not expected:
        raise Problem("not-found", "No such resource.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Problem(
            "unauthorized",
            "Scraping needs Authorization: Bearer <TEXTPAY_METRICS_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="textpay-metrics"'},
        )


def _read_database() -> tuple[dict[str, int], float | None]:
    """The outbox's depth by state, in one grouped count over the partial index of open
    outbound texts, and the heartbeat's age (a primary-key read)."""
    now = utcnow()
    state = case(
        (col(Message.status) != "pending", col(Message.status)),
        (col(Message.send_after) > now, "deferred"),
        else_="queued",
    )
    with Session(services().engine) as session:
        rows: Iterable[Any] = session.execute(
            select(state, func.count())
            .where(text(OPEN_OUTBOUND_MESSAGE))  # as the index says it: the planner matches it
            .group_by(state)
        ).all()
        health = heartbeat.health(session, now=now)
    return {str(name): int(count) for name, count in rows}, health.age_seconds
