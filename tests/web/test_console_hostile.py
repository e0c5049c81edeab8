"""The console, the admin API's roles and the operations endpoints attacked (issue 15's review):
every write route tried by every role and by nobody, sessions and CSRF forged or replayed,
sign-in's `next` bent towards another site, subscriber- and operator-typed text carrying HTML
and template syntax onto every console page, the consent CSV fed newlines and quotes,
`/metrics` labels fed unbounded values. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.conftest import AUTH, AdminClient, base_settings
from tests.web.conftest import MOM
from tests.web.operators_helpers import MadeOperator, bearer, make_operator
from tests.web.test_console_sign_in import csrf_of, sign_in
from tests.web.twilio_client import OUR_NUMBER, TwilioClient
from textpay.config import Settings
from textpay.models import Account, Message, OperatorRole
from webhooks import create_app
from webhooks.console import SIGN_IN_FAILED

METRICS_TOKEN = "test-metrics-token-0123456789"
_KEY = re.compile(r'name="key" value="([^"]+)"')

# What each write route needs. Every POST under /console and every non-GET /admin route is
# listed: a route added without a line here fails `test_every_write_route_is_in_the_table`.
CONSOLE_WRITES = {
    "console.sign_in_post": None,  # anyone (it is how one signs in)
    "console.sign_out": None,
    "console.credit": OperatorRole.AGENT,
    "console.card_refund": OperatorRole.AGENT,
    "console.settings": OperatorRole.AGENT,
    "console.switch": OperatorRole.AGENT,
    "console.card_link": OperatorRole.AGENT,
    "console.queue_scan": OperatorRole.AGENT,
    "console.settings_post": OperatorRole.ADMIN,
}
ADMIN_WRITES = {
    "admin.create": OperatorRole.AGENT,
    "admin.change": OperatorRole.AGENT,
    "admin.put_passcode": OperatorRole.AGENT,
    "admin.delete_passcode": OperatorRole.AGENT,
    "admin.card_refund": OperatorRole.AGENT,
    "admin.credit": OperatorRole.AGENT,
    "admin.usage": OperatorRole.AGENT,
    "admin.queue_scan": OperatorRole.AGENT,
    "admin.create_operator": OperatorRole.ADMIN,
    "admin.disable_operator": OperatorRole.ADMIN,
    "admin.change_settings": OperatorRole.ADMIN,
    "admin.replace_facility": OperatorRole.ADMIN,
    "admin.mint_token": OperatorRole.VIEWER,  # one's own tokens
    "admin.revoke_token": OperatorRole.VIEWER,
}
ROLES = (OperatorRole.VIEWER, OperatorRole.AGENT, OperatorRole.ADMIN)
RANK = {role: i for i, role in enumerate(ROLES)}


def writes(app: Flask, prefix: str, fill: str = "1") -> list[tuple[str, str, str]]:
    """(endpoint, method, path with `fill` for its ids) of every write route under `prefix`."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = re.sub(r"<[^>]+>", fill, rule.rule)
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path))
    return found


def test_every_write_route_is_in_the_table(app: Flask) -> None:
    assert {e for e, _, _ in writes(app, "/console/")} == set(CONSOLE_WRITES)
    assert {e for e, _, _ in writes(app, "/admin/")} == set(ADMIN_WRITES)


@pytest.fixture
def team(engine: Engine) -> dict[OperatorRole, MadeOperator]:
    return {role: make_operator(engine, f"{role.value}@example.org", role.value) for role in ROLES}


def signed_in(app: Flask, made: MadeOperator) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, made.email, made.password).status_code == 303
    return client


def test_each_console_write_refuses_anonymous_and_roles_below_it(
    app: Flask, admin: AdminClient, team: dict[OperatorRole, MadeOperator]
) -> None:
    admin.enrol()  # account 1
    anonymous = app.test_client()
    for endpoint, method, path in writes(app, "/console/"):
        needed = CONSOLE_WRITES[endpoint]
        if needed is None:
            continue
        answer = anonymous.open(path, method=method, data={"csrf": csrf_of(anonymous)})
        assert answer.status_code == 303, (endpoint, answer.status_code)
        assert "/console/sign-in" in answer.headers["Location"]
        for role in ROLES:
            client = signed_in(app, team[role])
            answer = client.open(path, method=method, data={"csrf": csrf_of(client, "/console/")})
            refused = answer.status_code == 403
            assert refused == (RANK[role] < RANK[needed]), (endpoint, role, answer.status_code)
            if refused:
                assert "Content-Security-Policy" in answer.headers


@pytest.fixture
def tokens_by_role(client: FlaskClient, team: dict[OperatorRole, MadeOperator]) -> dict[Any, str]:
    found: dict[Any, str] = {}
    for role, made in team.items():
        minted = client.post(
            "/admin/tokens", headers=AUTH, json={"operator_id": made.id, "name": "t"}
        )
        assert minted.status_code == 201
        found[role] = minted.get_json()["token"]
    return found


def test_each_admin_write_refuses_anonymous_and_roles_below_it(
    app: Flask, client: FlaskClient, admin: AdminClient, tokens_by_role: dict[Any, str]
) -> None:
    # No such account, operator or token: a role allowed reaches the view and its 404, so that
    # nothing here disables or revokes the callers themselves.
    for endpoint, method, path in writes(app, "/admin/", fill="999"):
        needed = ADMIN_WRITES[endpoint]
        for headers in ({}, {"Authorization": "Bearer tpo_forged"}, {"X-TextPay-Actor": "x"}):
            answer = client.open(path, method=method, json={}, headers=headers)
            assert answer.status_code == 401, (endpoint, headers, answer.status_code)
        for role in ROLES:
            answer = client.open(path, method=method, json={}, headers=bearer(tokens_by_role[role]))
            refused = answer.status_code == 403
            assert refused == (RANK[role] < RANK[needed]), (endpoint, role, answer.status_code)


def test_an_agent_cannot_disable_an_admin_nor_mint_or_revoke_for_another(
    client: FlaskClient, team: dict[OperatorRole, MadeOperator], tokens_by_role: dict[Any, str]
) -> None:
    agent = bearer(tokens_by_role[OperatorRole.AGENT])
    boss = team[OperatorRole.ADMIN]
    assert client.post(f"/admin/operators/{boss.id}/disable", headers=agent).status_code == 403
    assert (
        client.post(
            "/admin/tokens", headers=agent, json={"operator_id": boss.id, "name": "mine now"}
        ).status_code
        == 403
    )
    # An admin's token mints for its own operator only, too.
    admin = bearer(tokens_by_role[OperatorRole.ADMIN])
    assert (
        client.post(
            "/admin/tokens",
            headers=admin,
            json={"operator_id": team[OperatorRole.AGENT].id, "name": "x"},
        ).status_code
        == 403
    )
    listed = client.get(f"/admin/tokens?operator_id={boss.id}", headers=agent)
    assert listed.status_code == 403
    boss_tokens = client.get(f"/admin/tokens?operator_id={boss.id}", headers=AUTH).get_json()
    token_id = boss_tokens["tokens"][0]["id"]
    assert client.delete(f"/admin/tokens/{token_id}", headers=agent).status_code == 404
    assert client.get("/admin/settings", headers=admin).status_code == 200  # still works


def test_a_disabled_operators_cookie_and_token_stop_at_once(
    app: Flask,
    client: FlaskClient,
    admin: AdminClient,
    team: dict[OperatorRole, MadeOperator],
    tokens_by_role: dict[Any, str],
) -> None:
    account = admin.enrol()
    agent = team[OperatorRole.AGENT]
    browser = signed_in(app, agent)
    csrf = csrf_of(browser, "/console/")
    assert client.post(f"/admin/operators/{agent.id}/disable", headers=AUTH).status_code == 200
    credit = browser.post(
        f"/console/accounts/{account['id']}/credit",
        data={"csrf": csrf, "key": "k" * 20, "amount": "5", "reason": "x"},
    )
    assert credit.status_code in (303, 400)
    assert "notice" not in credit.headers.get("Location", "")
    assert browser.get("/console/").status_code == 303
    used = client.post(
        f"/admin/accounts/{account['id']}/credits",
        headers={**bearer(tokens_by_role[OperatorRole.AGENT]), "Idempotency-Key": "k1"},
        json={"amount_cents": 500, "reason": "x"},
    )
    assert used.status_code == 401


# Sessions and CSRF


def test_another_sessions_csrf_value_is_refused(
    app: Flask, admin: AdminClient, team: dict[OperatorRole, MadeOperator]
) -> None:
    account = admin.enrol()
    mine = signed_in(app, team[OperatorRole.AGENT])
    theirs = signed_in(app, team[OperatorRole.ADMIN])
    stolen = csrf_of(theirs, "/console/")
    answer = mine.post(
        f"/console/accounts/{account['id']}/switch", data={"csrf": stolen, "to": "textpay-off"}
    )
    assert answer.status_code == 400
    anonymous = app.test_client()
    assert (
        anonymous.post(
            "/console/sign-in",
            data={
                "email": team[OperatorRole.AGENT].email,
                "password": team[OperatorRole.AGENT].password,
                "csrf": stolen,
            },
        ).status_code
        == 400
    )


def test_signing_in_replaces_a_planted_session(
    app: Flask, team: dict[OperatorRole, MadeOperator]
) -> None:
    """Session fixation: whatever the browser held before (an attacker's CSRF value planted in
    it), signing in gives a new CSRF value and the planted one no longer works."""
    browser = app.test_client()
    planted = csrf_of(browser)
    made = team[OperatorRole.ADMIN]
    assert (
        browser.post(
            "/console/sign-in",
            data={"email": made.email, "password": made.password, "csrf": planted},
        ).status_code
        == 303
    )
    fresh = csrf_of(browser, "/console/")
    assert fresh != planted
    assert browser.post("/console/sign-out", data={"csrf": planted}).status_code == 400


def test_production_cookie_flags(database_url: str, engine: Engine) -> None:
    made = make_operator(engine, "p@example.org", "viewer")
    production = base_settings(database_url).model_copy(
        update={
            "env": "production",
            "secret_key": "k" * 40,
            "twilio_account_sid": "AC1",
            "twilio_from_number": "+12125550100",
        }
    )
    production.check_production()
    app = create_app(production)
    try:
        client = app.test_client()
        anonymous = client.get("/console/sign-in").headers["Set-Cookie"]
        for cookie in (anonymous, sign_in(client, made.email, made.password).headers["Set-Cookie"]):
            assert "; Secure" in cookie
            assert "; HttpOnly" in cookie
            assert "SameSite=Lax" in cookie
            assert "Path=/console" in cookie
    finally:
        app.extensions["textpay"].engine.dispose()


@pytest.mark.parametrize(
    "asked",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "/console/\\evil.example",
        "/console//evil.example",
        "javascript:alert(1)",
        "/console/find\r\nSet-Cookie: x=1",
        "/console/find\nLocation: https://evil.example",
        "\t//evil.example",
        "/console/\t/evil.example",
        "/console/../\\evil.example",
        "/console/%0d%0aSet-Cookie:x=1",
    ],
)
def test_sign_in_never_sends_a_browser_to_another_site(
    app: Flask, team: dict[OperatorRole, MadeOperator], asked: str
) -> None:
    made = team[OperatorRole.VIEWER]
    client = app.test_client()
    answer = client.post(
        "/console/sign-in",
        data={
            "email": made.email,
            "password": made.password,
            "next": asked,
            "csrf": csrf_of(client),
        },
    )
    assert answer.status_code == 303
    landed = answer.headers["Location"]
    assert landed.startswith("/console/")
    for bad in ("\\", "//", "\t", "\n", "\r"):
        assert bad not in landed
    assert "Set-Cookie: x" not in str(answer.headers)
    again = client.get("/console/sign-in", query_string={"next": asked})  # signed in already
    assert again.status_code == 303
    assert again.headers["Location"].startswith("/console/")
    assert "//" not in again.headers["Location"]


@pytest.mark.parametrize(
    "spelled", ["ANN@EXAMPLE.ORG", " ann@example.org ", "Ann@Example.Org\t", "ann@example.org\n"]
)
def test_the_lock_out_counts_every_spelling_of_one_email(
    client: FlaskClient, engine: Engine, spelled: str
) -> None:
    ann = make_operator(engine, "ann@example.org", "agent")
    for i in range(5):
        guess = spelled if i % 2 else "ann@example.org"
        assert SIGN_IN_FAILED in sign_in(client, guess, "wrong").get_data(as_text=True)
    answer = sign_in(client, spelled, ann.password)
    assert answer.status_code == 200
    assert SIGN_IN_FAILED in answer.get_data(as_text=True)


def test_every_failure_reads_the_same(client: FlaskClient, engine: Engine) -> None:
    ann = make_operator(engine, "ann@example.org", "agent")
    gone = make_operator(engine, "gone@example.org", "agent")
    client.post(f"/admin/operators/{gone.id}/disable", headers=AUTH)
    for _ in range(5):
        sign_in(client, "locked@example.org", "x")
    make_operator(engine, "locked@example.org", "agent")
    for _ in range(5):
        sign_in(client, "locked@example.org", "x")

    def failure(email: str, password: str) -> str:
        answer = sign_in(client, email, password)
        assert answer.status_code == 200
        text = answer.get_data(as_text=True)
        text = re.sub(r'name="csrf" value="[^"]+"', "", text)
        return text.replace(email.strip()[:254], "EMAIL")

    answers = {
        failure("nobody@example.org", "x"),
        failure(ann.email, "x"),
        failure(gone.email, gone.password),
        failure("locked@example.org", "x"),
    }
    assert len(answers) == 1


# XSS: what subscribers and operators typed, on every console page

PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "</textarea><b>x</b>",
    "{{7*7}}",
)
HOSTILE = " ".join(PAYLOADS)


def assert_inert(html: str, where: str) -> None:
    for raw in ("<script>alert(1)", "<img src=x", "</textarea><b>", "<b>x</b>"):
        assert raw not in html, (where, raw)
    assert "<script" not in html.replace('<script src="/static/', ""), where


def test_hostile_text_is_inert_on_every_console_page(
    app: Flask,
    admin: AdminClient,
    twilio: TwilioClient,
    engine: Engine,
    team: dict[OperatorRole, MadeOperator],
) -> None:
    account = admin.enrol(phone=MOM, nickname='<b>x</b>{{7*7}}"><img src=x>')
    admin.credit(account["id"], 500, "seed")
    twilio.sms(MOM, HOSTILE)
    twilio.sms(MOM, "STOP " + HOSTILE)
    twilio.sms(MOM, "START " + HOSTILE)
    assert (
        admin.post(
            f"/admin/accounts/{account['id']}/credits",
            headers={"Idempotency-Key": "xss"},
            json={"amount_cents": 100, "reason": HOSTILE},
        ).status_code
        == 201
    )
    facility = admin.put("/admin/facilities/F1", json={"name": HOSTILE})
    assert facility.status_code in (200, 201), facility.get_json()
    with Session(engine) as session:
        bodies = [
            m.body for m in session.exec(select(Message).where(Message.direction == "inbound"))
        ]
    assert any("<script>" in b for b in bodies)  # stored as sent

    client = signed_in(app, team[OperatorRole.ADMIN])
    csrf = csrf_of(client, "/console/")
    pages = {
        "account": client.get(f"/console/accounts/{account['id']}"),
        "find": client.get("/console/find", query_string={"q": HOSTILE}),
        "find-number": client.get("/console/find", query_string={"q": "2125550147"}),
        "overview": client.get("/console/overview"),
        "settings": client.get("/console/settings"),
        "settings-saved": client.get("/console/settings", query_string={"saved": HOSTILE}),
        "settings-preview": client.post(
            "/console/settings",
            data={
                "csrf": csrf,
                "target": "F1",
                "name": HOSTILE,
                "timezone": HOSTILE,
                "quiet_hours_start": HOSTILE,
                "action": "preview",
            },
        ),
        "settings-global": client.post(
            "/console/settings",
            data={"csrf": csrf, "target": HOSTILE, "daily_message_cap": HOSTILE},
        ),
        "scans": client.get("/console/scans"),
        "consent": client.get("/console/consent"),
        "consent-bad": client.get(
            "/console/consent", query_string={"from": HOSTILE, "phone": HOSTILE}
        ),
        "credit-refused": client.post(
            f"/console/accounts/{account['id']}/credit",
            data={"csrf": csrf, "key": "k" * 20, "amount": HOSTILE, "reason": HOSTILE},
        ),
        "settings-refused": client.post(
            f"/console/accounts/{account['id']}/settings",
            data={"csrf": csrf, "timezone": HOSTILE, "language": HOSTILE},
        ),
        "not-found": client.get("/console/" + HOSTILE),
        "sign-in": app.test_client().post(
            "/console/sign-in", data={"csrf": "x", "email": HOSTILE, "password": "x"}
        ),
    }
    anonymous = app.test_client()
    pages["sign-in-failed"] = anonymous.post(
        "/console/sign-in", data={"csrf": csrf_of(anonymous), "email": HOSTILE, "password": "x"}
    )
    pages["sign-in-next"] = anonymous.get("/console/sign-in", query_string={"next": HOSTILE})
    for name, answer in pages.items():
        html = answer.get_data(as_text=True)
        assert answer.status_code < 500, (name, html)
        if answer.mimetype != "text/html":  # the 404 problem echoes the path, as JSON
            assert answer.mimetype.endswith("json"), name
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            continue
        assert_inert(html, name)
    account_page = pages["account"].get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in account_page  # shown, as text
    assert "{{7*7}}" in account_page


def test_no_template_marks_anything_safe() -> None:
    root = Path(__file__).resolve().parents[2] / "webhooks"
    for path in [*root.glob("templates/**/*.html"), *root.glob("**/*.py")]:
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path
        assert "Markup(" not in text, path
        assert "autoescape false" not in text, path


def test_the_csp_is_on_every_console_answer_errors_and_the_csv_too(
    app: Flask, team: dict[OperatorRole, MadeOperator]
) -> None:
    @app.get("/console/test-boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.config["TESTING"] = False  # the 500 page, not the exception
    app.config["PROPAGATE_EXCEPTIONS"] = False
    viewer = signed_in(app, team[OperatorRole.VIEWER])
    answers = {
        "404": viewer.get("/console/nothing-here"),
        "403": viewer.post("/console/settings", data={"csrf": csrf_of(viewer, "/console/")}),
        "405": viewer.put("/console/find"),
        "500": viewer.get("/console/test-boom"),
        "400": viewer.post("/console/settings", data={}),
        "csv": viewer.get("/console/consent.csv"),
        "json": viewer.get("/console/overview.json"),
        "static-outside": viewer.get("/console"),
    }
    assert answers["500"].status_code == 500
    assert answers["405"].status_code == 405
    for name, answer in answers.items():
        assert "default-src 'self'" in answer.headers.get("Content-Security-Policy", ""), name
        assert answer.headers["X-Content-Type-Options"] == "nosniff", name


# The consent CSV


def test_the_consent_csv_keeps_its_shape_whatever_was_texted(
    app: Flask, admin: AdminClient, twilio: TwilioClient, team: dict[OperatorRole, MadeOperator]
) -> None:
    admin.enrol(phone=MOM)
    words = 'STOP "now",\r\nplease\n=HYPERLINK("x"),\'; "'
    twilio.sms(MOM, words)
    twilio.sms(MOM, 'START\nagain, "ok"')
    viewer = signed_in(app, team[OperatorRole.VIEWER])
    answer = viewer.get("/console/consent.csv")
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True), newline="")))
    header, body = rows[0], rows[1:]
    assert all(len(row) == len(header) for row in body), rows
    recorded = [row[header.index("words")] for row in body]
    assert len(body) == 2, rows
    assert any(w.startswith("STOP") and "please" in w for w in recorded), recorded


# /metrics


@pytest.fixture
def settings(database_url: str) -> Settings:
    return base_settings(database_url).model_copy(update={"metrics_token": METRICS_TOKEN})


def series(client: FlaskClient, name: str) -> list[dict[str, str]]:
    answer = client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert answer.status_code == 200
    return [
        sample.labels
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
        if sample.name == name
    ]


def test_no_request_can_add_a_series_per_value_it_sends(client: FlaskClient) -> None:
    """A stranger's paths, methods and headers are unbounded; the latency histogram's labels
    must not be, or each new value is a new series held forever (memory, scrape size)."""
    before = series(client, "textpay_http_request_seconds_count")
    for i in range(30):
        client.get(f"/nowhere-{i}")
        client.open("/healthz", method=f"PROBE{i}")
        client.open(f"/console/x{i}", method=f"X{i}")
        client.open("/twilio/sms", method=f"BREW{i}")
    after = series(client, "textpay_http_request_seconds_count")
    new = [labels for labels in after if labels not in before]
    assert len(new) <= 4, new
    for labels in after:
        assert labels["method"] in {
            "GET",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "HEAD",
            "OPTIONS",
            "other",
        }, labels


def test_the_scrape_token_is_its_own(client: FlaskClient, tokens_by_role: dict[Any, str]) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 401
    admin = bearer(tokens_by_role[OperatorRole.ADMIN])
    assert client.get("/metrics", headers=admin).status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code
        == 401
    )


# Request ids


@pytest.mark.parametrize(
    "offered", ["x" * 5000, "(212) 555-0147", "2125550147", "+1 212 555 0147", "a" * 65]
)
def test_a_hostile_request_id_is_neither_returned_nor_stored(
    client: FlaskClient, twilio: TwilioClient, engine: Engine, offered: str
) -> None:
    sid = "SM" + "f" * 32
    params = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": MOM,
        "To": OUR_NUMBER,
        "Body": "HELP",
        "NumMedia": "0",
    }
    answer = twilio.post("/twilio/sms", params, headers={"X-Request-Id": offered})
    assert answer.status_code == 200
    assert answer.headers["X-Request-Id"] != offered
    assert "X-Injected" not in answer.headers
    with Session(engine) as session:
        stored = session.exec(select(Message.request_id).where(Message.twilio_sid == sid)).all()
    assert stored
    assert all(s and s != offered and len(s) <= 64 for s in stored), stored


# The Account page's credit form


def test_the_credit_form_refuses_odd_amounts_and_another_accounts_key(
    app: Flask, admin: AdminClient, engine: Engine, team: dict[OperatorRole, MadeOperator]
) -> None:
    first, second = admin.enrol(), admin.enrol(account_number="ACCT-2", phone="2125550199")
    agent = signed_in(app, team[OperatorRole.AGENT])

    def balance(account_id: int) -> int:
        with Session(engine) as session:
            row = session.get(Account, account_id)
            assert row is not None
            return row.balance_cents

    def credit(account_id: int, amount: str, key: str | None = None) -> Any:
        drawn = agent.get(f"/console/accounts/{account_id}").get_data(as_text=True)
        found = _KEY.search(drawn)
        assert found
        return agent.post(
            f"/console/accounts/{account_id}/credit",
            data={
                "csrf": csrf_of(agent, "/console/"),
                "key": key or found.group(1),
                "amount": amount,
                "reason": "goodwill",
            },
        )

    for amount in (
        "-5",
        "0",
        "0.00",
        "12,50",
        "1e9",
        "$1,000,000,000",
        "1000000000.00",
        "Infinity",
        "NaN",
        "5.",
        "$-5",
        "0x10",
    ):
        answer = credit(first["id"], amount)
        assert answer.status_code == 422, (amount, answer.status_code)
    assert balance(first["id"]) == 0
    done = credit(first["id"], "12.50", key="shared-key-0123456789")
    assert done.status_code == 303
    assert balance(first["id"]) == 1250
    reused = credit(second["id"], "12.50", key="shared-key-0123456789")
    assert reused.status_code in (303, 422)
    assert balance(second["id"]) in (0, 1250)
    assert balance(first["id"]) == 1250
