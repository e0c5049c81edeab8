"""The console's Account page (`/console/accounts/<id>`): an account's whole story on one screen
(`textpay.account_story`), and what an agent may do about it.

Reading needs a viewer. Each action is a small form (POST, with the CSRF field) that needs an
agent and goes through the domain function the admin API uses, so the same validation, audit
trail (`actor` = the signed-in operator) and idempotency apply:

- `credit`: a goodwill credit in dollars (`12.50`), with a reason (`balances.issue_credit`). The
  form carries an idempotency key made when it was drawn: submitting it twice credits once.
- `card-refund`: part or all of a deposit's unspent money back to its card
  (`card_refunds.begin`, the gateway called outside any transaction, then `settle`), with a key
  made the same way.
- `settings`: threshold and preset (in dollars; blank = inherit), language, time zone
  (`accounts.update_account`).
- `switch`: TextPay off or on, AutoPay off (`accounts.update_account`).
- `card-link`: text the card link again, as CARD would (`card_links.resend`).

A refused action shows the page again with the reason next to its form (422); a done one
redirects back with `?notice=<what>` (one of `NOTICES`, never text from the request).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlmodel import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import account_story, card_links, card_refunds, passcodes, tokens
from textpay.accounts import Enrolment, get_account, update_account
from textpay.balances import issue_credit
from textpay.errors import NotFound, TextPayError, ValidationFailed
from textpay.models import ID_MAX, CardRefundStatus, LedgerKind, OperatorRole
from textpay.money import format_cents, parse_amount
from textpay.payments import RefundResult
from textpay.schemas import AccountUpdate, CardRefundIn, CreditIn
from textpay.timeutil import utcnow
from webhooks.console import bp, current_operator, requires
from webhooks.services import request_engine_config, services
from webhooks.transactions import in_transaction

# What a done action says at the top of the page (the redirect names one of these).
NOTICES = {
    "credited": "The credit was posted.",
    "credit-replayed": "That credit was already posted (the form was sent twice): nothing more "
    "was credited.",
    "refunded": "The refund went back to the card.",
    "refund-pending": "The refund is with the card processor; the money is held off the "
    "balance until it answers (the reconciler finishes it).",
    "refund-replayed": "That refund was already made (the form was sent twice).",
    "settings": "The account's settings were saved.",
    "unchanged": "Nothing was changed: the account already had those settings.",
    "textpay-off": "TextPay is off for this account: no offers, and texts cannot pay it.",
    "textpay-on": "TextPay is on for this account.",
    "autopay-off": "AutoPay is off for this account.",
    "card-link": "A text with a fresh card link is queued for the account's number.",
}
SWITCHES = {
    "textpay-off": {"textpay_enabled": False},
    "textpay-on": {"textpay_enabled": True},
    "autopay-off": {"autopay_enabled": False},
}
_FORM_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_LONGEST_FIELD = 500


class Refused(Exception):
    """An action the page refuses, with the reason to show next to its form."""

    def __init__(self, form: str, message: str) -> None:
        super().__init__(message)
        self.form = form
        self.message = message


@bp.get("/accounts/<id:account_id>")
@requires(OperatorRole.VIEWER)
def account(account_id: int) -> tuple[str, int]:
    before = request.args.get("before", "")
    ledger_before = int(before) if before.isdigit() and 0 < int(before) <= ID_MAX else None
    return _page(account_id, ledger_before=ledger_before)


@bp.post("/accounts/<id:account_id>/credit")
@requires(OperatorRole.AGENT)
def credit(account_id: int) -> tuple[str, int] | WerkzeugResponse:
    def act() -> str:
        key = _form_key("credit")
        data = _valid("credit", CreditIn, amount_cents=_cents("credit", "amount"),
                      reason=_field("reason"))  # fmt: skip
        who = _actor()
        posting = in_transaction(lambda db: issue_credit(
            db, account_id=account_id, amount_cents=data.amount_cents, reason=data.reason,
            idempotency_key=f"console:{key}", kind=LedgerKind.CREDIT, actor=who))  # fmt: skip
        return "credit-replayed" if posting.replayed else "credited"

    return _acting(account_id, "credit", act)


@bp.post("/accounts/<id:account_id>/card-refund")
@requires(OperatorRole.AGENT)
def card_refund(account_id: int) -> tuple[str, int] | WerkzeugResponse:
    def act() -> str:
        key = _form_key("refund")
        deposit = _field("deposit_id")
        data = _valid("refund", CardRefundIn,
                      deposit_id=int(deposit) if deposit.isdigit() and len(deposit) < 11 else 0,
                      amount_cents=_cents("refund", "amount"),
                      reason=_field("reason"))  # fmt: skip
        who = _actor()
        found = services()
        now = utcnow()
        begun = in_transaction(lambda db: card_refunds.begin(
            db, account_id=account_id, deposit_id=data.deposit_id,
            amount_cents=data.amount_cents, reason=data.reason,
            request_key=f"console:{key}", actor=who, now=now))  # fmt: skip
        if begun.replayed:
            return "refund-replayed"
        result: RefundResult | None = None
        if begun.order is not None:
            result = card_refunds.call_gateway(
                found.gateway, begun.order, timeout_seconds=found.settings.gateway_timeout_seconds
            )

        def finish(db: Session) -> card_refunds.RefundFacts:
            if result is not None:
                card_refunds.settle(db, begun.card_refund_id, result, now=utcnow(),
                                    config=found.engine_config)  # fmt: skip
            return card_refunds.describe(db, begun.card_refund_id)

        shown = in_transaction(finish)
        if shown.refund.status == CardRefundStatus.FAILED.value:
            raise Refused("refund", (
                f"The card processor refused to refund {format_cents(shown.refund.amount_cents)}"
                f" to card ...{shown.card_last4} ({shown.refund.failure_reason}). Nothing went "
                "back to the card; the amount is back on the balance."))  # fmt: skip
        if shown.refund.status == CardRefundStatus.PENDING.value:
            return "refund-pending"
        return "refunded"

    return _acting(account_id, "refund", act)


@bp.post("/accounts/<id:account_id>/settings")
@requires(OperatorRole.AGENT)
def settings(account_id: int) -> tuple[str, int] | WerkzeugResponse:
    def act() -> str:
        changes: dict[str, Any] = {
            "threshold_cents": _cents("settings", "threshold", blank_ok=True, zero_ok=True),
            "preset_amount_cents": _cents("settings", "preset", blank_ok=True),
            "language": _field("language"),
            "timezone": _field("timezone") or None,
        }
        if "runway" in request.form:  # a form without the box leaves it as it is
            changes["runway_days"] = _days("settings", "runway")
        return _update(account_id, "settings", changes, done="settings")

    return _acting(account_id, "settings", act)


@bp.post("/accounts/<id:account_id>/switch")
@requires(OperatorRole.AGENT)
def switch(account_id: int) -> tuple[str, int] | WerkzeugResponse:
    def act() -> str:
        which = _field("to")
        if which not in SWITCHES:
            raise Refused("switch", "Choose TextPay off, TextPay on or AutoPay off.")
        return _update(account_id, "switch", SWITCHES[which], done=which)

    return _acting(account_id, "switch", act)


@bp.post("/accounts/<id:account_id>/card-link")
@requires(OperatorRole.AGENT)
def card_link(account_id: int) -> tuple[str, int] | WerkzeugResponse:
    def act() -> str:
        who = _actor()
        config = request_engine_config()
        in_transaction(lambda db: card_links.resend(
            db, get_account(db, account_id), now=utcnow(), config=config, actor=who))  # fmt: skip
        return "card-link"

    return _acting(account_id, "card-link", act)


def _page(
    account_id: int,
    *,
    ledger_before: int | None = None,
    refused: Refused | None = None,
    status: int = 200,
) -> tuple[str, int]:
    now = utcnow()
    try:
        story = in_transaction(
            lambda db: account_story.tell(db, account_id, now=now, ledger_before=ledger_before)
        )
    except NotFound:
        return render_template("console/message.html", title="No such account",
                               line=f"There is no account {account_id}."), 404  # fmt: skip
    notice = NOTICES.get(request.args.get("notice", "")) if refused is None else None
    return render_template(
        "console/account.html",
        title=f"Account {story.account.account_number}",
        story=story,
        notice=notice,
        refused=refused,
        form=request.form if refused is not None else {},
        form_key=tokens.new(16),  # a fresh key per drawn form: a double submit acts once
        when=when,
        money=format_cents,
        # Whether the passcode locks payments now (a lock past its day reads as none).
        passcode_locked_until=passcodes.locked_until(story.account, now=now),
        dollars=dollars,
        switches=SWITCHES,
        plain=plain,
    ), status


def _acting(account_id: int, form: str, act: Any) -> tuple[str, int] | WerkzeugResponse:
    """Run an action: redirect back with its notice, or show the page with why it was refused."""
    try:
        done = act()
    except Refused as refused:
        return _page(account_id, refused=refused, status=422)
    except NotFound:
        return _page(account_id)  # the 404 page
    except ValidationFailed as failure:
        reasons = "; ".join(f"{_plain(e.field)} {e.message}" for e in failure.errors)
        return _page(account_id, refused=Refused(form, reasons or failure.detail), status=422)
    except TextPayError as error:  # a conflict: too much to refund, a key reused, ...
        return _page(account_id, refused=Refused(form, error.detail), status=422)
    return redirect(url_for("console.account", account_id=account_id, notice=done,
                            _anchor=form), code=303)  # fmt: skip


def _update(account_id: int, form: str, changes: dict[str, Any], *, done: str) -> str:
    data = _valid(form, AccountUpdate, **changes)
    found = services()
    context = Enrolment(actor=_actor(), gateway=found.gateway,
                        default_region=found.settings.default_region)  # fmt: skip

    def work(db: Session) -> bool:
        before = _fingerprint(get_account(db, account_id))
        return _fingerprint(update_account(db, account_id, data, context)) != before

    return done if in_transaction(work) else "unchanged"


def _fingerprint(row: Any) -> tuple[Any, ...]:
    return (row.textpay_enabled, row.autopay_enabled, row.threshold_cents,
            row.preset_amount_cents, row.language, row.timezone, row.runway_days)  # fmt: skip


def _valid(form: str, schema: Any, **values: Any) -> Any:
    """`values` as the admin API's schema reads them (the same field rules)."""
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = _plain(str(first["loc"][0])) if first["loc"] else "input"
        raise Refused(form, f"{field} {first['msg'].removeprefix('Value error, ')}") from None


def _field(name: str) -> str:
    return request.form.get(name, "").strip()[:_LONGEST_FIELD]


def _form_key(form: str) -> str:
    key = _field("key")
    if not _FORM_KEY.match(key):
        raise Refused(form, "This form was out of date. Reload the page and try again.")
    return key


def _cents(form: str, name: str, *, blank_ok: bool = False, zero_ok: bool = False) -> int | None:
    """A dollar amount as typed (`12.50`, `$1,000`) in cents; None for a blank allowed one."""
    typed = _field(name)
    if not typed and blank_ok:
        return None
    cents = parse_amount(typed)
    if cents is None or (cents == 0 and not zero_ok):
        raise Refused(form, f"Write the {_plain(name)} in dollars, such as 12.50 (not {typed!r}).")
    return cents


def _days(form: str, name: str) -> int | None:
    """Whole days as typed; None for a blank box (inherit)."""
    typed = _field(name)
    if not typed:
        return None
    if not typed.isascii() or not typed.isdigit() or len(typed) > 6:
        raise Refused(form, f"Write the {_plain(name)} in whole days, such as 5 (not {typed!r}).")
    return int(typed)


def _plain(field: str) -> str:
    return {"amount_cents": "amount", "threshold_cents": "threshold", "runway_days": "runway",
            "preset_amount_cents": "preset amount", "deposit_id": "deposit"}.get(
                field, field.replace("_", " "))  # fmt: skip


def _actor() -> str:
    signed_in = current_operator()
    assert signed_in is not None  # `requires` let the request in
    return signed_in.actor


def when(moment: datetime | None) -> str:
    """A time as the page shows it: UTC, to the second."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "—"


def plain(value: Any) -> str:
    """An audit trail's value as a person reads it (a nested record as `name=value, ...`)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "—"
    return "—" if value is None else str(value)


def dollars(cents: int | None) -> str:
    """Cents as a form field holds them (`1250` → `12.50`); blank for None."""
    return "" if cents is None else f"{cents // 100}.{cents % 100:02d}"
