"""The console's overview page (`/console/overview`, viewer): the last 30 UTC days of the
program (offers, YES, funded, declines by reason, expiries, AutoPay, opt-outs, texts by delivery
status) and the outbox now, as tables that need no script, and as charts drawn by Chart.js
(`/static/console-overview.js`) from `/console/overview.json`, the same numbers as JSON."""

from __future__ import annotations

from flask import Response, jsonify, render_template

from textpay import overview
from textpay.models import OperatorRole
from textpay.timeutil import utcnow
from webhooks.console import bp, requires
from webhooks.transactions import in_transaction

# What each daily series is called on the page, in the tables' order.
LABELS = {
    "offers_sent": "Offers sent",
    "offers_delivered": "Offers delivered",
    "reminders_sent": "Reminders sent",
    "answered_yes": "Answered YES",
    "funded": "Funded",
    "card_declined": "Card declined",
    "charge_failed": "Charge failed",
    "said_no": "Said NO",
    "expired": "Expired",
    "autopay_charged": "AutoPay charged",
    "autopay_declined": "AutoPay declined",
    "autopay_failed": "AutoPay failed",
    "opt_outs": "Opt-outs",
    "opt_ins": "Opt-ins",
}
OUTBOX_LABELS = {
    "queued": "Queued, due now",
    "sending": "Being sent",
    "retrying": "Waiting to retry",
    "held_by_quiet_hours": "Held by quiet hours",
    "held_by_cap": "Held by the daily cap",
    "waiting": "Waiting (other)",
    "unknown": "Unknown (sent, no answer)",
}


def _overview() -> overview.Overview:
    now = utcnow()
    return in_transaction(lambda session: overview.last_days(session, now=now))


@bp.get("/overview")
@requires(OperatorRole.VIEWER)
def overview_page() -> str:
    found = _overview()
    return render_template(
        "console/overview.html",
        title="Overview",
        found=found,
        labels=LABELS,
        outbox_labels=OUTBOX_LABELS,
        totals=found.totals(),
    )


@bp.get("/overview.json")
@requires(OperatorRole.VIEWER)
def overview_json() -> Response:
    return jsonify({**_overview().as_json(), "labels": LABELS})
