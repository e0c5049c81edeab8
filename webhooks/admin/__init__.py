"""The admin JSON API under `/admin`: bearer-token authentication, roles, and the blueprint.

Operators and the calling platform use it to configure settings and facilities, enrol accounts,
post usage and credits, and read ledgers and the audit trail. The routes live in the modules
imported at the bottom, one per resource.

Two kinds of bearer token are accepted:

- `TEXTPAY_ADMIN_TOKEN`, the bootstrap owner: the admin role, and the audit trail names the
  declared `X-TextPay-Actor` (else `admin`). It makes the first operators.
- An operator's API token (`textpay.operators`): that operator's role, and the audit trail
  names the operator (`operator:<email>`); `X-TextPay-Actor` is ignored. A revoked token or a
  disabled operator's is a 401.

Each view needs a role: `requires(role)` says which; a view without one needs `viewer` to read
(GET) and `admin` for anything else, so a write nobody thought about is an admin's. A caller
below the role gets a 403 `forbidden` problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Blueprint, current_app, g, request

from textpay import tokens
from textpay.errors import FieldError
from textpay.models import OperatorRole
from textpay.operators import SignedIn, allows, authenticate_token, looks_like_token
from textpay.timeutil import utcnow
from webhooks.problems import Problem
from webhooks.services import services
from webhooks.transactions import in_transaction

bp = Blueprint("admin", __name__, url_prefix="/admin")

View = TypeVar("View", bound=Callable[..., object])
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """Who called: the bootstrap owner (`operator` None, the admin role) or an operator."""

    operator: SignedIn | None

    @property
    def role(self) -> OperatorRole:
        return self.operator.role if self.operator else OperatorRole.ADMIN


def requires(role: OperatorRole) -> Callable[[View], View]:
    """Mark an admin view as needing `role` (checked before the view runs)."""

    def mark(view: View) -> View:
        view.textpay_role = role  # type: ignore[attr-defined]
        return view

    return mark


def needed_role() -> OperatorRole | None:
    """The role this request's view needs (None: no view matched; the 404 or 405 follows)."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return None
    declared = getattr(view, "textpay_role", None)
    if isinstance(declared, OperatorRole):
        return declared
    return OperatorRole.VIEWER if request.method in _READS else OperatorRole.ADMIN


def caller() -> Caller:
    """The authenticated caller of this admin request."""
    found = g.get("admin_caller")
    assert isinstance(found, Caller), "caller() outside an authenticated admin request"
    return found


@bp.before_request
def _require_token() -> None:
    who = _authenticate()
    g.admin_caller = who
    needed = needed_role()
    if needed is not None and not allows(who.role, needed):
        raise Problem(
            "forbidden",
            f"This needs the {needed.value} role; this token's operator is {who.role.value}.",
        )
    for name, value in request.args.items(multi=True):
        if "\x00" in value:
            raise Problem(
                "validation-error",
                f"Query parameter {name} is invalid.",
                errors=[FieldError(name, "must not contain control characters")],
            )


def _authenticate() -> Caller:
    expected = services().settings.admin_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    bearer = scheme.lower() == "bearer"
    if bearer and looks_like_token(given):
        now = utcnow()
        found = in_transaction(lambda session: authenticate_token(session, given, now=now))
        if found is not None:
            return Caller(found)
    if not expected:
        raise Problem(
            "admin-api-disabled", "The admin API is off until TEXTPAY_ADMIN_TOKEN is set."
        )
    # Constant-time comparison, so response timing says nothing about how much of a guess matched.
    if bearer and tokens.matches(expected, given):
        return Caller(None)
    raise Problem(
        "unauthorized",
        "This endpoint needs Authorization: Bearer <TEXTPAY_ADMIN_TOKEN or an operator's token>.",
        headers={"WWW-Authenticate": 'Bearer realm="textpay-admin"'},
    )


from webhooks.admin import (  # noqa: E402, F401
    accounts,
    audit,
    card_refunds,
    consent,
    money,
    openapi,
    operators,
    outbox,
    scans,
    settings,
)
