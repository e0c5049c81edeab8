"""The admin API's side of passcodes: setting and clearing one (never shown back), refusing
anything but four ASCII digits, the passcode settings at each level, and `phone_since`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from tests.conftest import AdminClient


def test_a_passcode_is_set_and_cleared_never_shown_and_audited_without_its_value(
    admin: AdminClient,
) -> None:
    account = admin.enrol()
    assert account["passcode_set"] is False
    path = f"/admin/accounts/{account['id']}/passcode"
    put = admin.put(path, json={"passcode": "0472"})
    assert put.status_code == 200
    assert put.get_json() == {"account_id": account["id"], "passcode_set": True}
    shown = admin.get(f"/admin/accounts/{account['id']}")
    assert shown.get_json()["passcode_set"] is True
    listed = admin.get("/admin/accounts?phone=2125550147")
    trail = admin.get(f"/admin/audit?entity_type=account&entity_id={account['id']}")
    for answer in (put, shown, listed, trail):
        assert "0472" not in answer.get_data(as_text=True)
        assert "scrypt" not in answer.get_data(as_text=True)

    cleared = admin.request("DELETE", path)
    assert cleared.status_code == 200
    assert cleared.get_json()["passcode_set"] is False
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["passcode_set"] is False
    assert admin.request("DELETE", path).status_code == 200  # clearing again changes nothing
    entries = admin.get(f"/admin/audit?entity_type=account&entity_id={account['id']}")
    actions = [(e["action"], e["before"], e["after"]) for e in entries.get_json()["entries"]]
    assert actions[:2] == [
        ("account.passcode_cleared", {"passcode_set": True}, {"passcode_set": False}),
        ("account.passcode_set", {"passcode_set": False}, {"passcode_set": True}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"passcode": "123"},
        {"passcode": "12345"},
        {"passcode": "abcd"},
        {"passcode": "12a4"},
        {"passcode": " 1234"},
        {"passcode": "1234\n"},
        {"passcode": "١٢٣٤"},  # digits, but not ASCII ones
        {"passcode": "\uff11\uff12\uff13\uff14"},  # full-width
        {"passcode": 1234},
        {"passcode": None},
        {},
        {"passcode": "1234", "hint": "birthday"},
    ],
    ids=repr,
)
def test_anything_but_four_ascii_digits_is_refused(admin: AdminClient, body: Any) -> None:
    account = admin.enrol()
    answer = admin.put(f"/admin/accounts/{account['id']}/passcode", json=body)
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["passcode_set"] is False


def test_an_unknown_account_or_a_body_that_is_not_json(admin: AdminClient) -> None:
    assert admin.put("/admin/accounts/999/passcode", json={"passcode": "1234"}).status_code == 404
    assert admin.request("DELETE", "/admin/accounts/999/passcode").status_code == 404
    account = admin.enrol()
    answer = admin.put(f"/admin/accounts/{account['id']}/passcode", data="1234")
    assert 400 <= answer.status_code < 500


def test_the_passcode_settings_resolve_global_facility_account(admin: AdminClient) -> None:
    settings = admin.get("/admin/settings").get_json()
    assert settings["passcode_over_cents"] is None  # never, until an operator says
    assert settings["passcode_new_phone_days"] is None
    assert admin.patch("/admin/settings", json={"passcode_over_cents": 5000}).status_code == 200
    facility = admin.put("/admin/facilities/NYC", json={"passcode_new_phone_days": 7})
    assert facility.status_code == 201
    assert facility.get_json()["effective"]["passcode_over_cents"] == 5000
    account = admin.enrol(facility="NYC", passcode_over_cents=10_000)
    effective = account["effective"]
    assert (effective["passcode_over_cents"], effective["sources"]["passcode_over_cents"]) == (
        10_000,
        "account",
    )
    assert effective["passcode_new_phone_days"] == 7
    assert effective["sources"]["passcode_new_phone_days"] == "facility"
    # Null on the account inherits again; null globally turns the rule off.
    changed = admin.patch(f"/admin/accounts/{account['id']}", json={"passcode_over_cents": None})
    assert changed.get_json()["effective"]["passcode_over_cents"] == 5000
    assert admin.patch("/admin/settings", json={"passcode_over_cents": None}).status_code == 200
    shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
    assert shown["effective"]["passcode_over_cents"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"passcode_over_cents": -1},
        {"passcode_over_cents": 1_000_001},
        {"passcode_over_cents": "5000"},
        {"passcode_new_phone_days": 366},
        {"passcode_new_phone_days": 1.5},
    ],
    ids=repr,
)
def test_passcode_settings_out_of_range_are_refused(admin: AdminClient, body: Any) -> None:
    assert admin.patch("/admin/settings", json=body).status_code == 422
    assert admin.put("/admin/facilities/NYC", json=body).status_code == 422
    account = admin.enrol()
    assert admin.patch(f"/admin/accounts/{account['id']}", json=body).status_code == 422


def test_phone_since_is_when_the_phone_became_the_accounts(admin: AdminClient) -> None:
    with freeze_time("2026-11-01 15:00:00") as clock:
        account = admin.enrol()
        assert account["phone_since"].startswith("2026-11-01T15:00:00")
        clock.tick(timedelta(days=3))
        same = admin.patch(f"/admin/accounts/{account['id']}", json={"phone": "+1 212 555 0147"})
        assert same.get_json()["phone_since"].startswith("2026-11-01T15:00:00")
        moved = admin.patch(f"/admin/accounts/{account['id']}", json={"phone": "2125550199"})
        assert moved.get_json()["phone_since"].startswith("2026-11-04T15:00:00")
