"""The console's scans page (`/console/scans`, viewer): the recent low-balance scans with their
counts and errors, newest first; an agent may queue one (as `POST /admin/scan` does: the clock
runs it within seconds, never the web)."""

from __future__ import annotations

from flask import redirect, render_template, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import scan_runs
from textpay.models import OperatorRole
from webhooks.console import bp, current_operator, requires
from webhooks.transactions import in_transaction

SHOWN = 50


@bp.get("/scans")
@requires(OperatorRole.VIEWER)
def scans_page() -> str:
    runs = in_transaction(lambda session: scan_runs.recent(session, limit=SHOWN))
    return render_template("console/scans.html", title="Scans", runs=runs)


@bp.post("/scans")
@requires(OperatorRole.AGENT)
def queue_scan() -> WerkzeugResponse:
    signed_in = current_operator()
    assert signed_in is not None
    in_transaction(lambda session: scan_runs.queue(session, requested_by=signed_in.actor))
    return redirect(url_for("console.scans_page", queued=1), code=303)
