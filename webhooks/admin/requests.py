"""Reading admin requests: JSON bodies into typed inputs, query parameters, the acting operator."""

from __future__ import annotations

import re
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from textpay.errors import FieldError
from textpay.models import ID_MAX
from textpay.redaction import has_card_number
from textpay.schemas import CARD_NUMBER_REFUSED
from webhooks.admin import caller
from webhooks.problems import Problem, field_errors

Model = TypeVar("Model", bound=BaseModel)

ACTOR_HEADER = "X-TextPay-Actor"
# ASCII digits only (`str.isdigit` also takes `²`, which `int` refuses), and few enough of them.
_DIGITS = re.compile(r"[0-9]{1,20}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def body(model: type[Model]) -> Model:
    """The request's JSON body as `model`, or a problem naming every bad field."""
    if request.mimetype != "application/json":
        raise Problem("unsupported-media-type", "Send the body as application/json.")
    try:
        return model.model_validate_json(request.get_data())
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise Problem("invalid-json", "The body is not valid JSON.") from None
        if any(item["type"] == "model_type" for item in error.errors()):
            raise Problem("invalid-json", "The body must be a JSON object.") from None
        raise Problem(
            "validation-error", "The request has invalid fields.", errors=field_errors(error)
        ) from None


def int_arg(name: str, *, default: int | None, low: int = 1, high: int = ID_MAX) -> int | None:
    """A whole-number query parameter from `low` to `high`, written in ASCII digits; absent or
    empty, `default`. Anything else (`²`, `①`, other scripts' digits, `-1`, `1e3`, a thousand
    digits, out of range) is a 422 problem naming the parameter, never a guess."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    # Bounded before int(): Python refuses to convert strings of over 4,300 digits.
    value = int(raw) if _DIGITS.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise Problem(
            "validation-error",
            f"Query parameter {name} is invalid.",
            errors=[FieldError(name, f"must be a whole number from {low} to {high}")],
        )
    return value


def id_arg(name: str) -> int | None:
    """A row id as a query parameter (a page's `after` or `before` cursor): 1 to `ID_MAX`, the
    range of the id columns, so an id no row can have is refused (422) before the query."""
    return int_arg(name, default=None, high=ID_MAX)


def actor() -> str:
    """Who is acting, for the audit trail. With an operator's token, that operator
    (`operator:<email>`: proven, so `X-TextPay-Actor` is ignored). With TEXTPAY_ADMIN_TOKEN, the
    `X-TextPay-Actor` header, else `admin`: that token is shared, so this is a declared name,
    not proof of identity; it tells colleagues who made a change.
    """
    signed_in = caller().operator
    if signed_in is not None:
        return signed_in.actor
    name = request.headers.get(ACTOR_HEADER, "").strip()
    if _CONTROL.search(name):  # PostgreSQL refuses NUL in text; no name needs the others
        raise Problem(
            "validation-error",
            f"Header {ACTOR_HEADER} is invalid.",
            errors=[FieldError(ACTOR_HEADER, "must not contain control characters")],
        )
    if has_card_number(name):  # the name is stored in the audit trail
        raise Problem(
            "validation-error",
            f"Header {ACTOR_HEADER} is invalid.",
            errors=[FieldError(ACTOR_HEADER, CARD_NUMBER_REFUSED)],
        )
    return name[:100] if name else "admin"
