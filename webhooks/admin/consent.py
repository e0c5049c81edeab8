"""Admin route for the consent record as a CSV file: `GET /admin/consent-events.csv?from=&to=`
(UTC days, both included; either may be left out), the evidence an operator hands over when a
TCPA complaint arrives. One row per consent change, phone in E.164, words as recorded."""

from __future__ import annotations

from flask import Response, request, stream_with_context

from textpay import consent_records
from textpay.models import OperatorRole
from webhooks.admin import bp, requires
from webhooks.transactions import streamed


def csv_filename(days: consent_records.DayRange) -> str:
    first = days.first.isoformat() if days.first else "start"
    last = days.last.isoformat() if days.last else "now"
    return f"consent-events-{first}-to-{last}.csv"


@bp.get("/consent-events.csv")
@requires(OperatorRole.VIEWER)
def consent_events_csv() -> Response:
    # A bad date is a ValidationFailed: the 422 validation-error problem naming it.
    days = consent_records.parse_range(
        request.args.get("from"), request.args.get("to"), names=("from", "to")
    )
    return csv_response(days)


def csv_response(days: consent_records.DayRange) -> Response:
    """The consent record of `days` as a CSV download, streamed (the console serves it too)."""
    lines = streamed(lambda session: consent_records.csv_lines(session, days))
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(days)}"'},
    )
