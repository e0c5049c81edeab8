"""`GET /healthz`: liveness with a database round trip, for load balancers and `textpay serve`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webhooks.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        with services().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return jsonify(status="unavailable", database=type(error).__name__), 503
    return jsonify(status="ok", database="ok"), 200
