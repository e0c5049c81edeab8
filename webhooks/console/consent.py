"""The console's consent records page (`/console/consent`, viewer): every opt-in and opt-out
(and AutoPay consent change) of a number, with its time, words and channel, newest first, a
page at a time, filtered by UTC days and by number (typed in any format), with a link to the
same range as CSV (`/console/consent.csv`, signed in; scripts use `GET
/admin/consent-events.csv` with a token): the evidence for a TCPA complaint."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import consent_records
from textpay.errors import FieldError, ValidationFailed
from textpay.models import ID_MAX, OperatorRole
from textpay.phones import to_e164
from webhooks.admin.consent import csv_response
from webhooks.console import bp, requires
from webhooks.services import services
from webhooks.transactions import in_transaction

PAGE = 50
_LONGEST = 64


@bp.get("/consent")
@requires(OperatorRole.VIEWER)
def consent_page() -> tuple[str, int]:
    first = request.args.get("from", "")[:_LONGEST]
    last = request.args.get("to", "")[:_LONGEST]
    number = request.args.get("phone", "")[:_LONGEST]
    raw_before = request.args.get("before", "")
    before = int(raw_before) if raw_before.isascii() and raw_before.isdigit() else None
    if before is not None and not 1 <= before <= ID_MAX:
        before = None
    errors: list[FieldError] = []
    days = consent_records.DayRange()
    phone = None
    try:
        days = consent_records.parse_range(first or None, last or None, names=("from", "to"))
    except ValidationFailed as failure:
        errors.extend(failure.errors)
    if number.strip():
        try:
            phone = to_e164(number, default_region=services().settings.default_region)
        except ValidationFailed as failure:
            errors.extend(failure.errors)
    events = []
    if not errors:
        events = in_transaction(
            lambda session: consent_records.page(
                session, days, phone=phone, limit=PAGE, before_id=before
            )
        )
    query: dict[str, Any] = {k: v for k, v in (("from", first), ("to", last)) if v}
    older = None
    if len(events) == PAGE and events[-1].id is not None:
        older = url_for("console.consent_page", **query, phone=number or None,
                        before=events[-1].id)  # fmt: skip
    return render_template(
        "console/consent.html",
        title="Consent records",
        events=events,
        errors={error.field: error.message for error in errors},
        first=first,
        last=last,
        number=number,
        phone=phone,
        csv_url=None if errors else url_for("console.consent_csv", **query),
        older=older,
        paged=before is not None,
    ), 422 if errors else 200


@bp.get("/consent.csv")
@requires(OperatorRole.VIEWER)
def consent_csv() -> Response | WerkzeugResponse:
    """The same CSV as the admin API's, for the signed-in operator (the page's download link:
    a browser has the session cookie, not an API token). Bad dates go back to the page, which
    names them."""
    try:
        days = consent_records.parse_range(
            request.args.get("from"), request.args.get("to"), names=("from", "to")
        )
    except ValidationFailed:
        kept: dict[str, Any] = {n: request.args.get(n, "")[:_LONGEST] for n in ("from", "to")}
        return redirect(url_for("console.consent_page", **kept), code=303)
    return csv_response(days)
