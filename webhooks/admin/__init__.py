"""The admin JSON API under `/admin`: bearer-token authentication and the blueprint.

Operators and the calling platform use it to configure settings and facilities, enrol accounts,
post usage and credits, and read ledgers and the audit trail. The routes live in the modules
imported at the bottom, one per resource.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, request

from textpay.errors import FieldError
from webhooks.problems import Problem
from webhooks.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _require_token() -> None:
    _authenticate()
    for name, value in request.args.items(multi=True):
        if "\x00" in value:
            raise Problem(
                "validation-error",
                f"Query parameter {name} is invalid.",
                errors=[FieldError(name, "must not contain control characters")],
            )


def _authenticate() -> None:
    expected = services().settings.admin_token
    if not expected:
        raise Problem(
            "admin-api-disabled", "The admin API is off until TEXTPAY_ADMIN_TOKEN is set."
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time comparison, so response timing says nothing about how much of a guess matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Problem(
            "unauthorized",
            "This endpoint needs Authorization: Bearer <TEXTPAY_ADMIN_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="textpay-admin"'},
        )


from webhooks.admin import (  # noqa: E402, F401
    accounts,
    audit,
    card_refunds,
    money,
    openapi,
    outbox,
    scans,
    settings,
)
