"""The console's sign-in (issue 15): email and password, a signed session cookie with the
right flags, CSRF on every form, a lock-out after five wrong passwords that never tells whether
an email exists, disabled operators shut out, a strict CSP on every console response, and
`requires(role)`: anonymous browsers sent to sign in, operators below the role refused (403).
On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from werkzeug.test import TestResponse

from tests.conftest import AUTH, base_settings
from tests.web.operators_helpers import MadeOperator, make_operator
from textpay.models import OperatorRole
from textpay.timeutil import utcnow
from webhooks import create_app
from webhooks.console import SIGN_IN_FAILED, current_operator, requires

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/console/sign-in") -> str:
    page = client.get(path)
    found = _CSRF.search(page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> TestResponse:
    return client.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf": csrf_of(client)},
    )


@pytest.fixture
def ann(engine: Engine) -> MadeOperator:
    return make_operator(engine, "ann@example.org", "agent", name="Ann Agent")


def test_signing_in_lands_on_a_page_that_says_who_is_signed_in(
    client: FlaskClient, ann: MadeOperator
) -> None:
    anonymous = client.get("/console/")
    assert anonymous.status_code == 303
    assert anonymous.headers["Location"].endswith("/console/sign-in?next=/console/")
    signed = sign_in(client, "ANN@example.org", ann.password)
    assert signed.status_code == 303
    assert signed.headers["Location"].endswith("/console/")
    page = client.get("/console/").get_data(as_text=True)
    assert "Ann Agent" in page
    assert "agent" in page
    assert 'action="/console/sign-out"' in page


def test_sign_in_returns_to_the_console_page_asked_for_never_elsewhere(
    app: Flask, ann: MadeOperator
) -> None:
    for asked, landed in (("/console/find", "/console/find"),
                          ("https://evil.example/", "/console/"),
                          ("//evil.example/console/", "/console/")):  # fmt: skip
        client = app.test_client()
        answer = client.post("/console/sign-in", data={
            "email": ann.email, "password": ann.password, "next": asked,
            "csrf": csrf_of(client)})  # fmt: skip
        assert answer.headers["Location"] == landed


def test_the_session_cookie_is_httponly_lax_and_secure_outside_development(
    client: FlaskClient, ann: MadeOperator, database_url: str
) -> None:
    cookie = sign_in(client, ann.email, ann.password).headers["Set-Cookie"]
    assert cookie.startswith("textpay_console=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # development serves plain http://localhost

    production = base_settings(database_url).model_copy(update={
        "env": "production", "secret_key": "k" * 40, "twilio_account_sid": "AC1",
        "twilio_from_number": "+12125550100"})  # fmt: skip
    app = create_app(production)
    try:
        secure = sign_in(app.test_client(), ann.email, ann.password).headers["Set-Cookie"]
        assert "; Secure" in secure
        assert "HttpOnly" in secure
    finally:
        app.extensions["textpay"].engine.dispose()


def test_wrong_password_and_unknown_email_read_the_same(
    client: FlaskClient, ann: MadeOperator
) -> None:
    wrong = sign_in(client, ann.email, "not-it")
    unknown = sign_in(client, "nobody@example.org", "not-it")
    for answer in (wrong, unknown):
        assert answer.status_code == 200
        assert SIGN_IN_FAILED in answer.get_data(as_text=True)
    assert client.get("/console/").status_code == 303  # still signed out


def test_five_wrong_passwords_lock_sign_in_for_fifteen_minutes(
    client: FlaskClient, ann: MadeOperator
) -> None:
    start = utcnow()
    with freeze_time(start) as clock:
        for _ in range(5):
            assert SIGN_IN_FAILED in sign_in(client, ann.email, "guess").get_data(as_text=True)
        locked = sign_in(client, ann.email, ann.password)  # the right one, while locked
        assert locked.status_code == 200
        assert SIGN_IN_FAILED in locked.get_data(as_text=True)
        clock.tick(timedelta(minutes=14))
        assert sign_in(client, ann.email, ann.password).status_code == 200
        clock.tick(timedelta(minutes=1, seconds=1))
        assert sign_in(client, ann.email, ann.password).status_code == 303


def test_a_right_password_resets_the_count(client: FlaskClient, ann: MadeOperator) -> None:
    for _ in range(4):
        sign_in(client, ann.email, "guess")
    assert sign_in(client, ann.email, ann.password).status_code == 303
    client.post("/console/sign-out", data={"csrf": csrf_of(client, "/console/")})
    for _ in range(4):
        sign_in(client, ann.email, "guess")
    assert sign_in(client, ann.email, ann.password).status_code == 303


def test_a_disabled_operator_cannot_sign_in_and_is_signed_out(
    client: FlaskClient, engine: Engine, ann: MadeOperator
) -> None:
    assert sign_in(client, ann.email, ann.password).status_code == 303
    assert client.get("/console/").status_code == 200
    assert client.post(f"/admin/operators/{ann.id}/disable", headers=AUTH).status_code == 200
    assert client.get("/console/").status_code == 303  # the session no longer counts
    assert SIGN_IN_FAILED in sign_in(client, ann.email, ann.password).get_data(as_text=True)


def test_signing_out_ends_a_copy_of_the_session_cookie_too(
    app: Flask, client: FlaskClient, ann: MadeOperator
) -> None:
    """A cookie copied before sign-out (a shared computer, a stolen cookie) stops working at
    sign-out, while another of the operator's sessions signed in afterwards works."""
    assert sign_in(client, ann.email, ann.password).status_code == 303
    copy = app.test_client()
    cookie = client.get_cookie("textpay_console", path="/console")
    assert cookie is not None
    copy.set_cookie("textpay_console", cookie.value, path="/console")
    assert copy.get("/console/").status_code == 200  # the copy works while signed in
    assert client.post("/console/sign-out", data={"csrf": csrf_of(client, "/console/")}
                       ).status_code == 303  # fmt: skip
    assert copy.get("/console/").status_code == 303  # sent to sign-in
    later = app.test_client()
    assert sign_in(later, ann.email, ann.password).status_code == 303
    assert later.get("/console/").status_code == 200
    assert copy.get("/console/").status_code == 303


def test_a_form_without_its_csrf_value_is_refused(client: FlaskClient, ann: MadeOperator) -> None:
    refused = client.post("/console/sign-in", data={"email": ann.email, "password": ann.password})
    assert refused.status_code == 400
    assert client.get("/console/").status_code == 303
    assert sign_in(client, ann.email, ann.password).status_code == 303
    forged = client.post("/console/sign-out", data={"csrf": "guessed"})
    assert forged.status_code == 400
    assert client.get("/console/").status_code == 200  # still signed in
    assert client.post("/console/sign-out", data={"csrf": csrf_of(client, "/console/")}
                       ).status_code == 303  # fmt: skip
    assert client.get("/console/").status_code == 303


def test_every_console_response_carries_a_strict_content_security_policy(
    client: FlaskClient, ann: MadeOperator
) -> None:
    answers = [
        client.get("/console/sign-in"),
        client.get("/console/"),
        client.post("/console/sign-in", data={}),
        client.get("/console/no-such-page"),
    ]
    sign_in(client, ann.email, ann.password)
    answers.append(client.get("/console/"))
    for answer in answers:
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert answer.headers["Cache-Control"] == "no-store"
        assert "<script" not in answer.get_data(as_text=True)
        assert "style=" not in answer.get_data(as_text=True)


@pytest.fixture
def guarded_app(app: Flask) -> Flask:
    """The app with two console views of the kind later pages add: a read and an agent action,
    each guarded by `requires`, and a template that shows a write button only to those who
    `can` press it."""
    page = ("{% extends 'console/base.html' %}{% block content %}"
            "{% if can('agent') %}<button id=\"credit\">Credit</button>{% endif %}"
            "{% endblock %}")  # fmt: skip

    @requires(OperatorRole.VIEWER)
    def account() -> str:
        assert current_operator() is not None
        return render_template_string(page, title="Account")

    @requires(OperatorRole.AGENT)
    def credit() -> str:
        return "credited"

    app.add_url_rule("/console/test-account", view_func=account)
    app.add_url_rule("/console/test-credit", view_func=credit, methods=["POST"])
    return app


def test_a_viewer_sees_no_write_button_and_is_refused_if_it_posts(
    guarded_app: Flask, engine: Engine, ann: MadeOperator
) -> None:
    vera = make_operator(engine, "vera@example.org", "viewer", name="Vera Viewer")
    viewer, agent, anonymous = (guarded_app.test_client() for _ in range(3))
    assert sign_in(viewer, vera.email, vera.password).status_code == 303
    assert sign_in(agent, ann.email, ann.password).status_code == 303

    assert 'id="credit"' not in viewer.get("/console/test-account").get_data(as_text=True)
    assert 'id="credit"' in agent.get("/console/test-account").get_data(as_text=True)

    refused = viewer.post("/console/test-credit", data={"csrf": csrf_of(viewer, "/console/")})
    assert refused.status_code == 403
    assert "Content-Security-Policy" in refused.headers
    assert "agent role" in refused.get_data(as_text=True)
    done = agent.post("/console/test-credit", data={"csrf": csrf_of(agent, "/console/")})
    assert done.status_code == 200
    assert done.get_data(as_text=True) == "credited"
    sent_away = anonymous.get("/console/test-account")
    assert sent_away.status_code == 303
    assert "/console/sign-in" in sent_away.headers["Location"]
    no_csrf = agent.post("/console/test-credit")
    assert no_csrf.status_code == 400
