"""The console's Find page (`GET /console/find?q=...`): the support desk's search box.

A phone number in any spelling, an account number, or a confirmation code `TP-XXXXXX`
(`textpay.account_story.find`). One account found → its Account page; several (a phone with
several accounts) → a list; none → a message saying what was looked for. Any signed-in
operator (viewer and up).
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import account_story
from textpay.models import OperatorRole
from textpay.money import format_cents
from webhooks.console import bp, requires
from webhooks.services import services
from webhooks.transactions import in_transaction

_LONGEST_QUERY = 100  # no phone, account number or code is longer


@bp.get("/find")
@requires(OperatorRole.VIEWER)
def find() -> str | WerkzeugResponse:
    typed = request.args.get("q", "").strip()[:_LONGEST_QUERY]
    if not typed or not typed.isprintable():
        return render_template("console/find.html", title="Find an account", q="", found=None,
                               money=format_cents)  # fmt: skip
    region = services().settings.default_region
    found = in_transaction(lambda db: account_story.find(db, typed, default_region=region))
    if len(found) == 1:
        return redirect(url_for("console.account", account_id=found[0].id), code=303)
    return render_template("console/find.html", title="Find an account", q=typed, found=found,
                           money=format_cents)  # fmt: skip
