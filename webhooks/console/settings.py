"""The console's settings page (`/console/settings`): the global defaults and each facility's
overrides as forms. Everyone signed in reads them; only an admin sees the forms' buttons and may
post (a viewer or agent who posts anyway gets the 403 page).

A form has two buttons. **Preview** runs the change in a transaction that is rolled back and
shows how many accounts a scan run now would act on before and after it
(`textpay.lowbalance.eligible_now`: offers, reminders and AutoPay charges); nothing is written,
not even the audit entry. **Save** makes the change. Both go through
`textpay.operator_settings` (the admin API's own checks, the refusal of a sending window that
leaves some state or zone no sending time included), and a refused change is shown again with
each error next to its field. A save is audited under the signed-in operator
(`operator:<email>`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flask import redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlmodel import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import lowbalance
from textpay.errors import FieldError, NotFound, ValidationFailed
from textpay.lowbalance import Action
from textpay.models import NULLABLE_SETTINGS, SETTING_FIELDS, OperatorRole
from textpay.operator_settings import (
    FacilityIn,
    get_facility,
    list_facilities,
    put_facility,
    update_global_settings,
)
from textpay.policy import get_global_settings
from textpay.schemas import SettingsPatch
from textpay.timeutil import utcnow
from webhooks.console import bp, current_operator, requires
from webhooks.problems import field_errors
from webhooks.transactions import in_transaction, rolled_back

LABELS = {
    "low_balance_threshold_cents": "Low-balance threshold (cents)",
    "preset_amount_cents": "Offer amount (cents)",
    "min_deposit_cents": "Smallest deposit (cents)",
    "max_deposit_cents": "Largest deposit (cents)",
    "daily_deposit_limit_cents": "Deposits per day, at most (cents)",
    "deposit_fee_cents": "Deposit fee (cents)",
    "prompt_ttl_minutes": "Offer lasts (minutes)",
    "prompt_cooldown_hours": "Reminder after (hours)",
    "quiet_hours_start": "Sending window opens (HH:MM)",
    "quiet_hours_end": "Sending window closes (HH:MM)",
    "daily_message_cap": "Texts per number per day, at most",
    "runway_days": "Also offer when calls left fall below (days; empty: off)",
    "passcode_over_cents": "Passcode for deposits over (cents; empty: never)",
    "passcode_new_phone_days": "Passcode for a phone newer than (days; empty: never)",
}
TEXT_FIELDS = frozenset({"quiet_hours_start", "quiet_hours_end"})
_DIGITS = re.compile(r"[0-9]{1,12}")
_LONGEST = 200


@dataclass
class Preview:
    """What a scan run now would do before and after the change."""

    before: Counter[Action]
    after: Counter[Action]

    @property
    def offers_before(self) -> int:
        return self.before[Action.PROMPT] + self.before[Action.REMINDER]

    @property
    def offers_after(self) -> int:
        return self.after[Action.PROMPT] + self.after[Action.REMINDER]

    @property
    def newly_eligible(self) -> int:
        return self.offers_after - self.offers_before


@dataclass
class FormState:
    """A form shown again after a preview or a refusal: what was typed, and what was wrong."""

    target: str  # "global" or a facility's code
    values: dict[str, str]
    errors: dict[str, list[str]]
    preview: Preview | None = None
    saved: bool = False


def _parse(
    form: dict[str, str], *, facility: bool, present: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], list[FieldError]]:
    """The form's values for the settings model: numbers as integers; an empty box is "inherit"
    for a facility and "no change" for the global defaults, except that a global setting whose
    null is a value (`runway_days`: off; the passcode rules: never), shown empty when null, is
    null when its box is sent empty (`present`: the boxes the form sent; one not sent is no
    change)."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name in SETTING_FIELDS:
        raw = form.get(name, "").strip()[:_LONGEST]
        if raw == "":
            if facility or (name in NULLABLE_SETTINGS and name in present):
                values[name] = None
            continue
        if name in TEXT_FIELDS:
            values[name] = raw
        elif _DIGITS.fullmatch(raw):
            values[name] = int(raw)
        else:
            errors.append(FieldError(name, "must be a whole number"))
    if facility:
        values["name"] = form.get("name", "").strip()[:_LONGEST]
        zone = form.get("timezone", "").strip()[:_LONGEST]
        values["timezone"] = zone or None
    return values, errors


def _by_field(errors: list[FieldError]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for error in errors:
        found.setdefault(error.field.split(".")[0], []).append(error.message)
    return found


def _change(target: str, values: dict[str, Any], actor: str) -> Any:
    """The change as a unit of work (run for real, or rolled back for a preview)."""
    if target == "global":
        patch = SettingsPatch.model_validate(values)
        return lambda session: update_global_settings(session, patch, actor=actor)
    data = FacilityIn.model_validate(values)
    return lambda session: put_facility(session, target, data, actor=actor)


def _preview(target: str, change: Any) -> Preview:
    now = utcnow()

    def work(session: Session) -> Preview:
        if target != "global":
            get_facility(session, target)  # the page edits existing facilities only
        before = lowbalance.eligible_now(session, now=now)
        change(session)
        session.flush()
        return Preview(before, lowbalance.eligible_now(session, now=now))

    return rolled_back(work)


def _page(state: FormState | None = None, status: int = 200) -> tuple[str, int]:
    def read(session: Session) -> dict[str, Any]:
        return {"global_row": get_global_settings(session),
                "facilities": list_facilities(session)}  # fmt: skip

    rows = in_transaction(read)
    return render_template(
        "console/settings.html",
        title="Settings",
        labels=LABELS,
        fields=SETTING_FIELDS,
        state=state,
        **rows,
    ), status


@bp.get("/settings")
@requires(OperatorRole.VIEWER)
def settings_page() -> tuple[str, int]:
    saved = request.args.get("saved")
    if saved:
        return _page(FormState(target=saved[:40], values={}, errors={}, saved=True))
    return _page()


@bp.post("/settings")
@requires(OperatorRole.ADMIN)
def settings_post() -> tuple[str, int] | WerkzeugResponse:
    signed_in = current_operator()
    assert signed_in is not None
    target = request.form.get("target", "global")[:40]
    form = {name: request.form.get(name, "") for name in (*SETTING_FIELDS, "name", "timezone")}
    shown = {name: value[:_LONGEST] for name, value in form.items()}
    values, errors = _parse(form, facility=target != "global", present=frozenset(request.form))
    state = FormState(target=target, values=shown, errors={})
    if errors:
        state.errors = _by_field(errors)
        return _page(state, 422)
    try:
        change = _change(target, values, signed_in.actor)
        if request.form.get("action") == "preview":
            state.preview = _preview(target, change)
            return _page(state)
        if target != "global":
            in_transaction(lambda session: get_facility(session, target))
        in_transaction(change)
    except ValidationError as error:
        state.errors = _by_field(field_errors(error))
        return _page(state, 422)
    except ValidationFailed as failure:
        state.errors = _by_field(failure.errors) or {"form": [str(failure)]}
        return _page(state, 422)
    except NotFound as missing:
        state.errors = {"form": [str(missing)]}
        return _page(state, 404)
    return redirect(url_for("console.settings_page", saved=target), code=303)
