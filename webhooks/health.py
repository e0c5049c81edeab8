"""`GET /healthz`: liveness with a database round trip, and whether a clock is alive.

200 while the database answers, whatever the clock's state: the web process itself is healthy,
and restarting it would not revive a clock. The clock's state (`ok`, `stale` after three missed
heartbeats, `never` when no clock ever ran on this database) and the seconds since its last
beat are in the body for monitors to alert on (`textpay.heartbeat`). The heartbeat is read in
the same round trip. 503 when the database does not answer (see also `/readyz`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from textpay import heartbeat
from textpay.timeutil import utcnow
from webhooks.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        with services().engine.connect() as connection:
            expires_at = connection.execute(select(heartbeat.last_beat_column())).scalar()
    except SQLAlchemyError as error:
        return jsonify(status="unavailable", database=type(error).__name__), 503
    clock = heartbeat.health_of(expires_at, now=utcnow())
    return jsonify(
        status="ok",
        database="ok",
        clock=clock.state,
        clock_age_seconds=clock.as_dict()["age_seconds"],
    ), 200
