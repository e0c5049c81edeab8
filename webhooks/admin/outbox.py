"""Admin route for texts: the message log (both directions, with delivery statuses;
`status=unknown` lists sends an operator must check)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlmodel import Session, col, select

from textpay.models import Message
from textpay.phones import to_e164
from webhooks.admin import bp
from webhooks.admin.requests import id_arg, int_arg
from webhooks.admin.serializers import message_json
from webhooks.services import services
from webhooks.transactions import in_transaction


@bp.get("/messages")
def message_log() -> Response:
    limit = int_arg("limit", default=100, high=1000) or 100
    before = id_arg("before")
    phone = request.args.get("phone")
    status = request.args.get("status") or None
    number = to_e164(phone, default_region=services().settings.default_region) if phone else None

    def work(session: Session) -> list[dict[str, Any]]:
        statement = select(Message)
        if number is not None:
            statement = statement.where(Message.phone == number)
        if status is not None:
            statement = statement.where(Message.status == status)
        if before is not None:
            statement = statement.where(col(Message.id) < before)
        rows = session.exec(statement.order_by(col(Message.id).desc()).limit(limit))
        return [message_json(row) for row in rows]

    found = in_transaction(work)
    return jsonify(messages=found, next_before=found[-1]["id"] if len(found) == limit else None)
