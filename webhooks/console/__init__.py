"""The operator console under `/console`: server-rendered pages for the people who run TextPay,
and the sign-in every page stands on.

Sign-in (`GET/POST /console/sign-in`, `POST /console/sign-out`): email and password
(`textpay.operators.sign_in`: five wrong passwords lock an operator's sign-in for 15 minutes;
one message for every failure, so it never tells whether an email exists). The session is
Flask's cookie, signed with TEXTPAY_SECRET_KEY: `HttpOnly`, `SameSite=Lax`, `Secure` outside
development, path `/console`, valid for 12 hours, and it holds only the operator's id and the
CSRF value. A disabled operator is signed out at their next request; signing out ends every
session of the operator's (the cookie carries the session generation it signed in under, which
sign-out raises), so a copy of the cookie stops working too.

The contract for console pages (Find, Account, Overview, Settings, Scans, Consent):

- Register routes on `bp` (this module's blueprint), or on a blueprint of a page's own under
  `/console/...` (the rules below hold for every path under `/console`). Render templates that
  extend `console/base.html` (its nav: `NAV`; the signed-in operator's name and role;
  sign-out) and fill `{% block content %}`; set `title`.
- Guard every view with `@requires(OperatorRole.X)`: an anonymous browser is sent (303) to
  sign-in and back afterwards; a signed-in operator below the role gets a 403 page. Pages that
  read need `VIEWER`; an action that changes an account or moves money needs `AGENT`;
  settings and facilities need `ADMIN` (the same roles as the admin API,
  `webhooks/admin/__init__.py`).
- `current_operator()` is the signed-in operator (`textpay.operators.SignedIn`: `id`, `email`,
  `name`, `role`, `actor` for the audit trail) or None. Record changes with
  `actor=current_operator().actor`.
- Every form posts `<input type="hidden" name="csrf" value="{{ csrf_token() }}">`: any POST
  under `/console` without the session's value is refused (400) before its view runs.
- In templates, `operator` is the signed-in operator and `can(OperatorRole.AGENT)` (or
  `can("agent")`) says whether to show a write button at all: a viewer never sees one, and
  is refused (403) if it posts anyway.
- Every `/console` response (errors too) carries a strict Content-Security-Policy: everything
  from this origin only, no inline script or style and no `eval` (a charting library is served
  from `/static/`, and data reaches it in `data-` attributes or JSON fetched from `/console`),
  never framed, `Cache-Control: no-store` (pages show subscribers' numbers and money).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import operators, tokens
from textpay.config import Settings
from textpay.models import OperatorRole
from textpay.operators import SignedIn
from textpay.timeutil import utcnow
from webhooks.transactions import in_transaction

bp = Blueprint("console", __name__, url_prefix="/console")
log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])

PATH = "/console"
SESSION_COOKIE = "textpay_console"
SESSION_LIFETIME = timedelta(hours=12)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# The console's pages, in the nav of every page (each page's view lives at its path).
NAV = (
    ("/console/find", "Find"),
    ("/console/overview", "Overview"),
    ("/console/settings", "Settings"),
    ("/console/scans", "Scans"),
    ("/console/consent", "Consent"),
)
SIGN_IN_FAILED = (
    "That email and password did not work. After 5 wrong tries, sign-in waits 15 minutes."
)
_LONGEST_INPUT = 1024  # no email or password is longer; a longer one is simply wrong


def register(app: Flask, settings: Settings) -> None:
    app.config.update(
        SECRET_KEY=settings.session_secret,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_PATH=PATH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.session_interface = ConsoleSessions()
    app.register_blueprint(bp)
    # App-wide, for every path under /console: a page's view may live in a blueprint of its own.
    app.before_request(_check_csrf)
    app.context_processor(_template_helpers)

    @app.after_request
    def _secure(response: Response) -> Response:
        if in_console():
            response.headers.update(SECURITY_HEADERS)
        return response


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the console's paths only. The cookie is scoped to
    /console, so nothing else ever has one; opening a session anyway built a signer on every
    Twilio webhook (a twentieth of a BAL's time). Elsewhere the session is Flask's null
    session, which refuses writes."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path == PATH or request.path.startswith(PATH + "/"):
            return super().open_session(app, request)
        return self.make_null_session(app)


def in_console() -> bool:
    return request.path == PATH or request.path.startswith(PATH + "/")


def current_operator() -> SignedIn | None:
    """The operator signed in to this browser, if any (looked up once per request; a disabled
    operator's session is dropped)."""
    if "console_operator" in g:
        return cast(SignedIn | None, g.console_operator)
    found: SignedIn | None = None
    operator_id = session.get("operator_id")
    generation = session.get("generation", 0)
    if isinstance(operator_id, int) and isinstance(generation, int):
        found = in_transaction(lambda db: operators.current(db, operator_id, generation))
        if found is None:
            session.clear()
    g.console_operator = found
    return found


def can(role: OperatorRole | str) -> bool:
    """Whether the signed-in operator has `role` (for templates: show a button or not)."""
    signed_in = current_operator()
    return signed_in is not None and signed_in.allows(OperatorRole(role))


def csrf_token() -> str:
    """This browser's CSRF value, for every form's hidden `csrf` field (made on first use)."""
    value = session.get("csrf")
    if not isinstance(value, str) or not value:
        value = tokens.new(24)
        session["csrf"] = value
    return value


def requires(role: OperatorRole) -> Callable[[View], View]:
    """Guard a console view: anonymous → 303 to sign-in; below `role` → 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            signed_in = current_operator()
            if signed_in is None:
                return redirect(url_for("console.sign_in", next=request.path), code=303)
            if not signed_in.allows(role):
                return render_template("console/forbidden.html", title="Not allowed",
                                       needed=role.value), 403  # fmt: skip
            return view(*args, **kwargs)

        return cast(View, guarded)

    return decorate


def _template_helpers() -> dict[str, Any]:
    if not in_console():
        return {}
    return {"operator": current_operator(), "can": can, "csrf_token": csrf_token, "nav": NAV}


def _check_csrf() -> tuple[str, int] | None:
    if request.method != "POST" or not in_console():
        return None
    if tokens.matches(session.get("csrf"), request.form.get("csrf")):
        return None
    return render_template("console/message.html", title="Nothing was changed",
                           line="This form was out of date. Go back, reload the page and "
                           "try again."), 400  # fmt: skip


@bp.get("/")
@requires(OperatorRole.VIEWER)
def index() -> str:
    return render_template("console/index.html", title="TextPay console")


@bp.get("/sign-in")
def sign_in() -> str | WerkzeugResponse:
    if current_operator() is not None:
        return redirect(_next_page(), code=303)
    return render_template("console/sign_in.html", title="Sign in", error=None, email="")


@bp.post("/sign-in")
def sign_in_post() -> tuple[str, int] | WerkzeugResponse:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    now = utcnow()
    found: SignedIn | None = None
    if _plausible(email) and password and len(password) <= _LONGEST_INPUT:
        found = in_transaction(
            lambda db: _signed_in(operators.sign_in(db, email, password, now=now))
        )
    if found is None:
        log.info("console: a sign-in failed")
        return render_template("console/sign_in.html", title="Sign in", error=SIGN_IN_FAILED,
                               email=email[:254] if _plausible(email) else ""), 200  # fmt: skip
    session.clear()  # a new session: nothing from before signing in carries over
    session["operator_id"] = found.id
    session["generation"] = found.session_generation
    session["csrf"] = tokens.new(24)
    g.console_operator = found
    log.info("console: operator %s signed in", found.id)
    return redirect(_next_page(), code=303)


@bp.post("/sign-out")
def sign_out() -> WerkzeugResponse:
    signed = current_operator()
    if signed is not None:  # every session of theirs ends, a copied cookie too
        in_transaction(lambda db: operators.sign_out(db, signed.id))
    session.clear()
    g.console_operator = None
    return redirect(url_for("console.sign_in"), code=303)


def _signed_in(operator: Any) -> SignedIn | None:
    return operators.signed_in(operator) if operator is not None else None


def _plausible(email: str) -> bool:
    """Worth asking the database about: no control characters (PostgreSQL refuses NUL)."""
    return 0 < len(email) <= _LONGEST_INPUT and email.isprintable()


def _next_page() -> str:
    """Where to go after signing in: the console page asked for, never another site."""
    wanted = request.values.get("next", "")
    # Printable ASCII only: a control character is a 500 in the Location header (CR, LF) or
    # dropped by the browser (tab), which would turn `/\t/` into `//`.
    plain = wanted.isascii() and wanted.isprintable()
    if plain and wanted.startswith(PATH + "/") and "//" not in wanted and "\\" not in wanted:
        return wanted
    return url_for("console.index")


# The pages: their routes register on `bp` (`settings` is imported by another name: `register`
# takes a `settings` argument).
from webhooks.console import account, consent, find, overview, scans  # noqa: E402, F401
from webhooks.console import settings as settings_page  # noqa: E402, F401
