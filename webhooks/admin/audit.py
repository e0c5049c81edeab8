"""Admin route for the audit trail of operator changes."""

from __future__ import annotations

from flask import Response, jsonify, request

from textpay import audit
from webhooks.admin import bp
from webhooks.admin.requests import id_arg, int_arg
from webhooks.admin.serializers import audit_json
from webhooks.transactions import in_transaction


@bp.get("/audit")
def trail() -> Response:
    limit = int_arg("limit", default=100, high=1000) or 100
    before = id_arg("before")
    entity_type = request.args.get("entity_type") or None
    entity_id = request.args.get("entity_id") or None
    found = in_transaction(
        lambda session: [
            audit_json(entry)
            for entry in audit.history(
                session,
                entity_type=entity_type,
                entity_id=entity_id,
                limit=limit,
                before_id=before,
            )
        ]
    )
    return jsonify(entries=found, next_before=found[-1]["id"] if len(found) == limit else None)
