"""Admin routes for the scans operators ask for: `POST /admin/scan` queues one (`202`, with
`Location: /admin/scans/{id}`), a clock process runs it within seconds, and `GET
/admin/scans/{id}` and `GET /admin/scans` say how it went. A web worker never runs a scan
(docs/architecture.md, Flows)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, url_for

from textpay import scan_runs
from textpay.models import OperatorRole, ScanRun
from webhooks.admin import bp, requires
from webhooks.admin.requests import actor, int_arg
from webhooks.admin.serializers import iso
from webhooks.transactions import in_transaction

LIST_DEFAULT = 20
LIST_MAX = 100


def scan_json(run: ScanRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "prompted": run.prompted,
        "autopay_charged": run.autopay_charged,
        "held": run.held,
        "skipped": run.skipped,
        "errors": run.errors,
        "requested_by": run.requested_by,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


@bp.post("/scan")
@requires(OperatorRole.AGENT)
def queue_scan() -> tuple[Response, int, dict[str, str]]:
    """Queue a low-balance scan (with AutoPay) for the clock; answers at once."""
    who = actor()
    queued = in_transaction(lambda session: scan_json(scan_runs.queue(session, requested_by=who)))
    return jsonify(queued), 202, {"Location": url_for("admin.show_scan", scan_id=queued["id"])}


@bp.get("/scans/<id:scan_id>")
def show_scan(scan_id: int) -> Response:
    return jsonify(in_transaction(lambda session: scan_json(scan_runs.get(session, scan_id))))


@bp.get("/scans")
def list_scans() -> Response:
    limit = int_arg("limit", default=LIST_DEFAULT, high=LIST_MAX) or LIST_DEFAULT
    before = int_arg("before", default=None)
    found = in_transaction(
        lambda session: [
            scan_json(run) for run in scan_runs.recent(session, limit=limit, before_id=before)
        ]
    )
    return jsonify(scans=found, next_before=found[-1]["id"] if len(found) == limit else None)
