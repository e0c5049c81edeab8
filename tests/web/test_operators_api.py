"""Operators on the admin API (issue 15): each role's reach, API tokens (shown once, hashed at
rest, revocable, last used), the audit trail naming the operator, and TEXTPAY_ADMIN_TOKEN still
the bootstrap owner. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AUTH, AdminClient
from tests.web.operators_helpers import bearer, make_operator
from textpay import tokens
from textpay.db import unit_of_work
from textpay.models import OperatorToken
from textpay.timeutil import utcnow

PROBLEM = "application/problem+json"


def mint(client: FlaskClient, operator_id: int, name: str = "script") -> dict[str, Any]:
    """A token minted by the bootstrap owner on the operator's behalf."""
    answer = client.post(
        "/admin/tokens", headers=AUTH, json={"name": name, "operator_id": operator_id}
    )
    assert answer.status_code == 201, answer.get_json()
    minted: dict[str, Any] = answer.get_json()
    return minted


@pytest.fixture
def tokens_by_role(client: FlaskClient, engine: Engine) -> dict[str, str]:
    found = {}
    for role in ("viewer", "agent", "admin"):
        made = make_operator(engine, f"{role}@example.org", role, name=role.title())
        found[role] = mint(client, made.id)["token"]
    return found


@pytest.mark.parametrize(
    ("role", "expected"),
    [("viewer", [200, 403, 403]), ("agent", [200, 201, 403]), ("admin", [200, 201, 200])],
)
def test_each_role_reaches_what_it_may_and_is_refused_the_rest(
    admin: AdminClient,
    client: FlaskClient,
    tokens_by_role: dict[str, str],
    role: str,
    expected: list[int],
) -> None:
    """A read, an agent's write (a credit) and an admin's write (a global setting)."""
    account = admin.enrol()
    headers = bearer(tokens_by_role[role])
    answers = [
        client.get(f"/admin/accounts/{account['id']}", headers=headers),
        client.post(
            f"/admin/accounts/{account['id']}/credits",
            headers={**headers, "Idempotency-Key": f"k-{role}"},
            json={"amount_cents": 500, "reason": "goodwill"},
        ),
        client.patch("/admin/settings", headers=headers, json={"prompt_ttl_minutes": 45}),
    ]
    assert [a.status_code for a in answers] == expected
    for answer in answers:
        if answer.status_code == 403:
            assert answer.content_type == PROBLEM
            assert answer.get_json()["type"] == "/problems/forbidden"
            assert "role" in answer.get_json()["detail"]


def test_the_calling_platform_posts_usage_with_an_agent_token(
    admin: AdminClient, client: FlaskClient, tokens_by_role: dict[str, str]
) -> None:
    account = admin.enrol()
    admin.credit(account["id"], 2000, "seed")
    usage = client.post(f"/admin/accounts/{account['id']}/usage",
                        headers=bearer(tokens_by_role["agent"]),
                        json={"amount_cents": 300, "reference": "call-1"})  # fmt: skip
    assert usage.status_code == 201, usage.get_json()
    viewer = client.post(f"/admin/accounts/{account['id']}/usage",
                         headers=bearer(tokens_by_role["viewer"]),
                         json={"amount_cents": 300, "reference": "call-2"})  # fmt: skip
    assert viewer.status_code == 403


def test_only_admins_manage_operators(client: FlaskClient, tokens_by_role: dict[str, str]) -> None:
    body = {"email": "new@example.org", "role": "viewer"}
    for role in ("viewer", "agent"):
        headers = bearer(tokens_by_role[role])
        assert client.post("/admin/operators", headers=headers, json=body).status_code == 403
        assert client.get("/admin/operators", headers=headers).status_code == 403
    created = client.post("/admin/operators", headers=bearer(tokens_by_role["admin"]), json=body)
    assert created.status_code == 201
    assert len(created.get_json()["password"]) >= 16
    listed = client.get("/admin/operators", headers=bearer(tokens_by_role["admin"])).get_json()
    assert [o["email"] for o in listed["operators"]][-1] == "new@example.org"
    assert all("password" not in o and "password_hash" not in o for o in listed["operators"])


def test_emails_are_one_operator_whatever_their_case(client: FlaskClient) -> None:
    ann = {"email": "Ann@Example.ORG", "role": "admin", "name": "Ann"}
    first = client.post("/admin/operators", headers=AUTH, json=ann)
    assert first.status_code == 201
    assert first.get_json()["email"] == "ann@example.org"
    again = client.post("/admin/operators", headers=AUTH,
                        json={"email": "ANN@example.org", "role": "viewer"})  # fmt: skip
    assert again.status_code == 409


def test_a_token_is_shown_once_and_only_its_hash_is_kept(
    client: FlaskClient, engine: Engine
) -> None:
    made = make_operator(engine, "ann@example.org", "agent")
    minted = mint(client, made.id, name="billing platform")
    raw = minted["token"]
    assert raw.startswith("tpo_")
    assert len(raw) >= 40
    listed = client.get("/admin/tokens", headers=bearer(raw)).get_json()["tokens"]
    assert [t["name"] for t in listed] == ["billing platform"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    with unit_of_work(engine) as session:
        rows = session.exec(select(OperatorToken)).all()
        assert [row.token_hash for row in rows] == [tokens.hash_token(raw)]
        # No column of any row of the two tables nor the audit trail holds the token itself.
        for table in ("operator_token", "operator", "audit_log"):
            for row in session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                assert raw not in " ".join(str(value) for value in row)


def test_a_revoked_token_or_a_disabled_operators_is_refused(
    client: FlaskClient, engine: Engine
) -> None:
    ann = make_operator(engine, "ann@example.org", "agent")
    bob = make_operator(engine, "bob@example.org", "viewer")
    anns, bobs = mint(client, ann.id)["token"], mint(client, bob.id)["token"]
    assert client.get("/admin/accounts", headers=bearer(anns)).status_code == 200
    minted_id = client.get("/admin/tokens", headers=bearer(anns)).get_json()["tokens"][0]["id"]
    revoked = client.delete(f"/admin/tokens/{minted_id}", headers=bearer(anns))
    assert revoked.status_code == 200
    assert revoked.get_json()["revoked_at"]
    refused = client.get("/admin/accounts", headers=bearer(anns))
    assert refused.status_code == 401
    assert refused.content_type == PROBLEM
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")

    assert client.post(f"/admin/operators/{bob.id}/disable", headers=AUTH).status_code == 200
    assert client.get("/admin/accounts", headers=bearer(bobs)).status_code == 401
    assert client.get("/admin/accounts", headers=bearer("tpo_" + "x" * 43)).status_code == 401


def test_tokens_are_minted_and_revoked_by_their_own_operator_or_an_admin(
    client: FlaskClient, engine: Engine
) -> None:
    ann = make_operator(engine, "ann@example.org", "agent")
    bob = make_operator(engine, "bob@example.org", "viewer")
    boss = make_operator(engine, "boss@example.org", "admin")
    anns = mint(client, ann.id)["token"]
    bobs_token = mint(client, bob.id)
    # An operator mints for itself, with its own token, never for someone else.
    own = client.post("/admin/tokens", headers=bearer(anns), json={"name": "laptop"})
    assert own.status_code == 201
    assert own.get_json()["operator_id"] == ann.id
    other = client.post("/admin/tokens", headers=bearer(anns),
                        json={"name": "x", "operator_id": bob.id})  # fmt: skip
    assert other.status_code == 403
    # The bootstrap owner must say whose token it mints.
    assert client.post("/admin/tokens", headers=AUTH, json={"name": "x"}).status_code == 422
    # Someone else's token is not found for an agent; an admin revokes any.
    assert client.delete(f"/admin/tokens/{bobs_token['id']}", headers=bearer(anns)).status_code \
        == 404  # fmt: skip
    assert client.get(f"/admin/tokens?operator_id={bob.id}", headers=bearer(anns)).status_code \
        == 403  # fmt: skip
    bosses = mint(client, boss.id)["token"]
    theirs = client.get(f"/admin/tokens?operator_id={bob.id}", headers=bearer(bosses))
    assert [t["id"] for t in theirs.get_json()["tokens"]] == [bobs_token["id"]]
    assert client.delete(f"/admin/tokens/{bobs_token['id']}", headers=bearer(bosses)).status_code \
        == 200  # fmt: skip
    assert client.get("/admin/accounts", headers=bearer(bobs_token["token"])).status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(client: FlaskClient, engine: Engine) -> None:
    ann = make_operator(engine, "ann@example.org", "viewer")
    minted = mint(client, ann.id)
    assert minted["last_used_at"] is None

    def last_used() -> Any:
        with unit_of_work(engine) as session:
            token = session.get(OperatorToken, minted["id"])
            assert token is not None
            return token.last_used_at

    start = utcnow().replace(microsecond=0)
    with freeze_time(start) as clock:
        assert client.get("/admin/accounts", headers=bearer(minted["token"])).status_code == 200
        assert last_used() == start
        clock.tick(timedelta(seconds=30))
        client.get("/admin/accounts", headers=bearer(minted["token"]))
        assert last_used() == start  # no write for a use within the minute
        clock.tick(timedelta(seconds=31))
        client.get("/admin/accounts", headers=bearer(minted["token"]))
        assert last_used() == start + timedelta(seconds=61)


def test_the_audit_trail_names_the_operator_and_ignores_a_declared_name(
    admin: AdminClient, client: FlaskClient, engine: Engine
) -> None:
    account = admin.enrol()
    ann = make_operator(engine, "ann@example.org", "agent")
    anns = mint(client, ann.id)["token"]
    changed = client.patch(f"/admin/accounts/{account['id']}", json={"nickname": "Dad"},
                           headers={**bearer(anns), "X-TextPay-Actor": "mallory"})  # fmt: skip
    assert changed.status_code == 200
    # The bootstrap owner still declares a name.
    admin.patch(f"/admin/accounts/{account['id']}", json={"nickname": "Pa"},
                headers={"X-TextPay-Actor": "lead"})  # fmt: skip
    trail = admin.get(f"/admin/audit?entity_type=account&entity_id={account['id']}").get_json()
    actors = [entry["actor"] for entry in trail["entries"]]
    assert actors[:2] == ["lead", "operator:ann@example.org"]
    assert "mallory" not in actors
    minted = admin.get("/admin/audit?entity_type=operator_token").get_json()["entries"]
    assert minted
    assert all("tpo_" not in str(entry) for entry in minted)


def test_the_bootstrap_token_keeps_working_and_a_wrong_one_is_401(client: FlaskClient) -> None:
    assert client.get("/admin/accounts", headers=AUTH).status_code == 200
    assert client.get("/admin/accounts", headers=bearer("nope")).status_code == 401
    assert client.get("/admin/accounts").status_code == 401
