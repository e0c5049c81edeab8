"""Enrolling and managing accounts through the admin API, as an operator's script would."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import AdminClient

PROBLEM = "application/problem+json"


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body: dict[str, Any] = response.get_json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body["errors"]}


def test_phone_in_any_common_format_is_stored_as_e164(admin: AdminClient) -> None:
    created = admin.enrol(phone="(212) 555-0147")
    assert created["phone"] == "+12125550147"

    fetched = admin.get(f"/admin/accounts/{created['id']}").get_json()
    assert fetched["phone"] == "+12125550147"
    assert fetched["account_number"] == "ACCT-4821"
    assert fetched["balance_cents"] == 0
    assert fetched["payment_method"] == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2030,
        "customer": None,
    }

    # Looking up by phone accepts any spelling of the number.
    for spelling in ("212.555.0147", "+1 212 555 0147", "+12125550147"):
        listed = admin.get("/admin/accounts", query_string={"phone": spelling}).get_json()
        assert [a["id"] for a in listed["accounts"]] == [created["id"]]


def test_created_account_has_location_and_effective_settings(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "threshold_cents": 800},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/admin/accounts/{body['id']}"
    assert body["effective"]["low_balance_threshold_cents"] == 800
    assert body["effective"]["sources"]["low_balance_threshold_cents"] == "account"
    assert body["effective"]["preset_amount_cents"] == 2500
    assert body["effective"]["sources"]["preset_amount_cents"] == "global"
    assert body["pending_prompt"] is None
    assert body["payment_method"] is None


def test_payment_token_is_write_only(admin: AdminClient) -> None:
    created = admin.enrol()
    assert "token" not in created["payment_method"]
    text = admin.get(f"/admin/accounts/{created['id']}").get_data(as_text=True)
    assert "tok_visa" not in text
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "tok_visa" not in audit


def test_card_number_given_as_token_is_refused_and_not_echoed(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={
            "account_number": "A1",
            "phone": "2125550147",
            "payment_method": {"token": "4242 4242 4242 4242"},
        },
    )
    body = problem(response, 422, "validation-error")
    assert fields(body) == {"payment_method.token"}
    assert "4242 4242" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/admin/accounts", "GET"),
        ("/admin/accounts", "POST"),
        ("/admin/accounts/1", "GET"),
        ("/admin/accounts/1/usage", "POST"),
        ("/admin/accounts/1/credits", "POST"),
        ("/admin/settings", "GET"),
        ("/admin/settings", "PATCH"),
        ("/admin/facilities/F1", "PUT"),
        ("/admin/audit", "GET"),
    ],
)
def test_admin_api_needs_the_bearer_token(client: FlaskClient, path: str, method: str) -> None:
    missing = client.open(path, method=method, json={})
    problem(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.open(
        path, method=method, json={}, headers={"Authorization": "Bearer not-the-token"}
    )
    problem(wrong, 401, "unauthorized")
    basic = client.open(
        path, method=method, json={}, headers={"Authorization": "Basic dGVzdC1hZG1pbg=="}
    )
    problem(basic, 401, "unauthorized")


def test_admin_api_is_off_until_a_token_is_configured(app: Any) -> None:
    services = app.extensions["textpay"]
    app.extensions["textpay"] = dataclasses.replace(
        services, settings=services.settings.model_copy(update={"admin_token": None})
    )
    response = app.test_client().get("/admin/settings", headers={"Authorization": "Bearer x"})
    problem(response, 503, "admin-api-disabled")


def test_invalid_phone_is_a_field_error(admin: AdminClient) -> None:
    for phone in ("555-0147", "not a phone", "+1 212 555 01478"):
        response = admin.post("/admin/accounts", json={"account_number": "A1", "phone": phone})
        body = problem(response, 422, "validation-error")
        assert fields(body) == {"phone"}


@pytest.mark.parametrize("cents", ["2500", 25.0, 25.5, True, None, [2500]])
def test_non_integer_cents_are_refused(admin: AdminClient, cents: Any) -> None:
    account = admin.enrol()
    response = admin.usage(account["id"], cents, "call-1")
    body = problem(response, 422, "validation-error")
    assert fields(body) == {"amount_cents"}
    # Nothing was posted.
    assert admin.get(f"/admin/accounts/{account['id']}/ledger").get_json()["entries"] == []


@pytest.mark.parametrize("cents", [-100, 0])
def test_negative_or_zero_cents_are_refused(admin: AdminClient, cents: int) -> None:
    account = admin.enrol()
    body = problem(admin.credit(account["id"], cents, "k1"), 422, "validation-error")
    assert fields(body) == {"amount_cents"}
    body = problem(admin.usage(account["id"], cents, "c1"), 422, "validation-error")
    assert fields(body) == {"amount_cents"}
    created = admin.post(
        "/admin/accounts",
        json={"account_number": "B2", "phone": "2125550148", "threshold_cents": -1},
    )
    assert fields(problem(created, 422, "validation-error")) == {"threshold_cents"}


def test_unknown_fields_are_refused_everywhere(admin: AdminClient) -> None:
    account = admin.enrol()
    cases = [
        ("POST", "/admin/accounts", {"account_number": "X", "phone": "2125550148", "pin": 1}),
        ("PATCH", f"/admin/accounts/{account['id']}", {"balance_cents": 100000}),
        ("PATCH", "/admin/settings", {"threshold": 100}),
        ("PUT", "/admin/facilities/F1", {"name": "North", "colour": "red"}),
        ("POST", f"/admin/accounts/{account['id']}/usage",
         {"amount_cents": 1, "reference": "r", "extra": True}),
    ]  # fmt: skip
    for method, path, payload in cases:
        body = problem(admin.request(method, path, json=payload), 422, "validation-error")
        assert any(e["message"] == "is not a known field" for e in body["errors"]), path
    # The balance was not touched by the attempt to PATCH it.
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["balance_cents"] == 0


def test_amounts_outside_limits_are_refused(admin: AdminClient) -> None:
    # The FCC requires deposits of at least $50 to be allowed.
    body = problem(
        admin.patch("/admin/settings", json={"max_deposit_cents": 4999}),
        422,
        "validation-error",
    )
    assert "max_deposit_cents" in fields(body)
    # A preset amount must be a deposit the limits allow (default 500 to 20000 cents).
    low = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "preset_amount_cents": 100},
    )
    assert fields(problem(low, 422, "validation-error")) == {"preset_amount_cents"}
    high = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "preset_amount_cents": 20_001},
    )
    assert fields(problem(high, 422, "validation-error")) == {"preset_amount_cents"}
    # Nothing was created by the refused requests.
    assert admin.get("/admin/accounts").get_json()["accounts"] == []
    # A credit above the sanity cap (a dollars-for-cents slip) is refused.
    account = admin.enrol()
    assert fields(
        problem(admin.credit(account["id"], 1_000_001, "k"), 422, "validation-error")
    ) == {"amount_cents"}


def test_unknown_ids_are_404(admin: AdminClient) -> None:
    problem(admin.get("/admin/accounts/999"), 404, "not-found")
    problem(admin.patch("/admin/accounts/999", json={"nickname": "x"}), 404, "not-found")
    problem(admin.usage(999, 100, "r1"), 404, "not-found")
    problem(admin.credit(999, 100, "k1"), 404, "not-found")
    problem(admin.get("/admin/accounts/999/ledger"), 404, "not-found")
    problem(admin.get("/admin/facilities/NOPE"), 404, "not-found")
    problem(admin.get("/admin/no-such-thing"), 404, "not-found")


def test_unknown_facility_on_an_account_is_a_field_error(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "facility": "NOPE"},
    )
    assert fields(problem(response, 422, "validation-error")) == {"facility"}


def test_duplicate_account_number_is_409(admin: AdminClient) -> None:
    admin.enrol(account_number="ACCT-1")
    response = admin.post(
        "/admin/accounts", json={"account_number": "ACCT-1", "phone": "2125550148"}
    )
    problem(response, 409, "duplicate-account-number")
    assert len(admin.get("/admin/accounts").get_json()["accounts"]) == 1


def test_every_field_error_is_reported_at_once(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "nope", "timezone": "Mars/Olympus"},
    )
    assert fields(problem(response, 422, "validation-error")) == {"phone", "timezone"}


def test_malformed_bodies_get_clear_problems(admin: AdminClient) -> None:
    problem(
        admin.post("/admin/accounts", data="{not json", content_type="application/json"),
        400,
        "invalid-json",
    )
    problem(admin.post("/admin/accounts", json=[1, 2]), 400, "invalid-json")
    problem(
        admin.post("/admin/accounts", data="account_number=1", content_type="text/plain"),
        415,
        "unsupported-media-type",
    )
    problem(
        admin.post("/admin/accounts", data="x" * 70_000, content_type="application/json"),
        413,
        "request-too-large",
    )
    problem(admin.request("DELETE", "/admin/accounts/1"), 405, "method-not-allowed")


def test_patch_changes_only_what_is_sent_and_is_audited(admin: AdminClient) -> None:
    account = admin.enrol(threshold_cents=700)
    response = admin.patch(
        f"/admin/accounts/{account['id']}",
        json={"nickname": "Dad", "language": "es", "phone": "(212) 555-0199"},
        headers={"X-TextPay-Actor": "ops@example.org"},
    )
    assert response.status_code == 200
    changed = response.get_json()
    assert (changed["nickname"], changed["language"], changed["phone"]) == (
        "Dad",
        "es",
        "+12125550199",
    )
    assert changed["threshold_cents"] == 700  # untouched

    cleared = admin.patch(f"/admin/accounts/{account['id']}", json={"threshold_cents": None})
    assert cleared.get_json()["threshold_cents"] is None
    assert cleared.get_json()["effective"]["sources"]["low_balance_threshold_cents"] == "global"

    refused = admin.patch(f"/admin/accounts/{account['id']}", json={"nickname": None})
    assert fields(problem(refused, 422, "validation-error")) == {"nickname"}

    trail = admin.get(
        "/admin/audit", query_string={"entity_type": "account", "entity_id": account["id"]}
    ).get_json()["entries"]
    assert [e["action"] for e in trail] == ["account.update", "account.update", "account.create"]
    rename = trail[1]
    assert rename["actor"] == "ops@example.org"
    assert rename["before"]["nickname"] == "Mom"
    assert rename["after"]["nickname"] == "Dad"
    assert rename["before"]["phone"] == "+12125550147"
    assert rename["after"]["phone"] == "+12125550199"
    assert trail[2]["before"] is None
    assert trail[2]["actor"] == "admin"


def test_autopay_needs_a_card(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "autopay_enabled": True},
    )
    assert fields(problem(response, 422, "validation-error")) == {"autopay_enabled"}
    account = admin.enrol(autopay_enabled=True)
    assert account["autopay_enabled"] is True
    removed = admin.patch(f"/admin/accounts/{account['id']}", json={"payment_method": None})
    assert fields(problem(removed, 422, "validation-error")) == {"autopay_enabled"}


def test_unknown_gateway_token_needs_last4(admin: AdminClient) -> None:
    response = admin.post(
        "/admin/accounts",
        json={"account_number": "A1", "phone": "2125550147", "payment_method": {"token": "pm_1"}},
    )
    assert fields(problem(response, 422, "validation-error")) == {"payment_method.last4"}
    account = admin.enrol(payment_method={"token": "pm_1", "brand": "amex", "last4": "0005"})
    assert account["payment_method"]["last4"] == "0005"


def test_list_is_paged(admin: AdminClient) -> None:
    ids = [admin.enrol(account_number=f"A{i}", phone=f"21255501{i:02d}")["id"] for i in range(5)]
    first = admin.get("/admin/accounts", query_string={"limit": 2}).get_json()
    assert [a["id"] for a in first["accounts"]] == ids[:2]
    rest = admin.get(
        "/admin/accounts", query_string={"limit": 10, "after": first["next_after"]}
    ).get_json()
    assert [a["id"] for a in rest["accounts"]] == ids[2:]
    bad = admin.get("/admin/accounts", query_string={"limit": "ten"})
    assert fields(problem(bad, 422, "validation-error")) == {"limit"}


def test_nul_and_control_characters_are_refused_not_stored(admin: AdminClient) -> None:
    body = problem(
        admin.post("/admin/accounts",
                   json={"account_number": "A1", "phone": "2125550147", "nickname": "Mo\x00m"}),
        422, "validation-error",
    )  # fmt: skip
    assert fields(body) == {"nickname"}
    listed = admin.get("/admin/audit", query_string={"entity_type": "acc\x00ount"})
    assert fields(problem(listed, 422, "validation-error")) == {"entity_type"}
    problem(admin.get("/admin/facilities/F\x00"), 404, "not-found")


def test_problem_types_are_documented(client: FlaskClient) -> None:
    doc = client.get("/problems/idempotency-conflict")
    assert doc.status_code == 200
    assert doc.get_json()["status"] == 409


def test_a_toll_free_number_can_be_enrolled(admin: AdminClient) -> None:
    """A toll-free number may be in any of 42 North American zones; storing them all overflowed
    the column on PostgreSQL (a 500)."""
    created = admin.enrol(phone="+1 800 555 0100")
    assert created["phone"] == "+18005550100"
    moved = admin.patch(f"/admin/accounts/{created['id']}", json={"phone": "(888) 555-0100"})
    assert moved.status_code == 200, moved.get_json()


def test_a_zone_folder_is_not_a_time_zone(admin: AdminClient) -> None:
    account = admin.enrol()
    for folder in ("America", "Etc", "US"):
        refused = admin.patch(f"/admin/accounts/{account['id']}", json={"timezone": folder})
        assert refused.status_code == 422, folder
        assert refused.get_json()["errors"][0]["field"] == "timezone"
