"""Global defaults and facility overrides through the admin API, with their audit trail."""

from __future__ import annotations

import dataclasses

from tests.conftest import AdminClient
from tests.web.test_admin_accounts import fields, problem
from textpay.config import Settings
from webhooks import create_app


def test_settings_patch_changes_only_what_is_sent_and_is_audited(admin: AdminClient) -> None:
    before = admin.get("/admin/settings").get_json()
    assert before["low_balance_threshold_cents"] == 500
    response = admin.patch(
        "/admin/settings",
        json={"low_balance_threshold_cents": 700, "quiet_hours_start": "09:00"},
        headers={"X-TextPay-Actor": "ana"},
    )
    assert response.status_code == 200
    after = response.get_json()
    assert after["low_balance_threshold_cents"] == 700
    assert after["quiet_hours_start"] == "09:00"
    assert after["preset_amount_cents"] == before["preset_amount_cents"]
    assert admin.get("/admin/settings").get_json() == after

    [entry] = admin.get("/admin/audit", query_string={"entity_type": "settings"}).get_json()[
        "entries"
    ]
    assert entry["actor"] == "ana"
    assert entry["action"] == "settings.update"
    assert entry["before"]["low_balance_threshold_cents"] == 500
    assert entry["after"]["low_balance_threshold_cents"] == 700


def test_the_state_quiet_hours_table_is_operator_configurable(admin: AdminClient) -> None:
    shown = admin.get("/admin/settings").get_json()["state_quiet_hours"]
    assert shown["FL"] == ["08:00", "20:00"]
    assert shown["CT"] == ["09:00", "20:00"]
    table = {"FL": ["08:00", "20:00"], "TX": ["09:00", "20:00"]}
    changed = admin.patch("/admin/settings", json={"state_quiet_hours": table})
    assert changed.status_code == 200
    assert changed.get_json()["state_quiet_hours"] == table
    bad = admin.patch("/admin/settings", json={"state_quiet_hours": {"Texas": ["9:00", "20"]}})
    assert bad.status_code == 422
    empty = admin.patch("/admin/settings", json={"state_quiet_hours": {"TX": ["20:00", "09:00"]}})
    assert empty.status_code == 422
    assert admin.get("/admin/settings").get_json()["state_quiet_hours"] == table
    # Facilities override the window, not the state table.
    facility = admin.put("/admin/facilities/F1", json={"state_quiet_hours": table})
    assert facility.status_code == 422


def test_settings_refuse_nulls_and_bad_times_without_changing_anything(
    admin: AdminClient,
) -> None:
    before = admin.get("/admin/settings").get_json()
    body = problem(
        admin.patch("/admin/settings", json={"preset_amount_cents": None}), 422, "validation-error"
    )
    assert fields(body) == {"preset_amount_cents"}
    body = problem(
        admin.patch("/admin/settings", json={"quiet_hours_end": "9pm"}), 422, "validation-error"
    )
    assert fields(body) == {"quiet_hours_end"}
    assert admin.get("/admin/settings").get_json() == before
    assert admin.get("/admin/audit").get_json()["entries"] == []


def test_facility_overrides_flow_into_its_accounts(admin: AdminClient) -> None:
    created = admin.put(
        "/admin/facilities/TX-HARRIS",
        json={"name": "Harris County", "low_balance_threshold_cents": 1000, "deposit_fee_cents": 0},
    )
    assert created.status_code == 201
    facility = created.get_json()
    assert facility["low_balance_threshold_cents"] == 1000
    assert facility["preset_amount_cents"] is None  # inherits
    assert facility["effective"]["preset_amount_cents"] == 2500

    account = admin.enrol(facility="TX-HARRIS")
    assert account["facility"] == "TX-HARRIS"
    assert account["effective"]["low_balance_threshold_cents"] == 1000
    assert account["effective"]["sources"]["low_balance_threshold_cents"] == "facility"

    # PUT replaces: the threshold left out now inherits the global value again.
    replaced = admin.put("/admin/facilities/TX-HARRIS", json={"name": "Harris County Jail"})
    assert replaced.status_code == 200
    shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
    assert shown["effective"]["low_balance_threshold_cents"] == 500

    listed = admin.get("/admin/facilities").get_json()["facilities"]
    assert [f["code"] for f in listed] == ["TX-HARRIS"]
    trail = admin.get(
        "/admin/audit", query_string={"entity_type": "facility", "entity_id": "TX-HARRIS"}
    ).get_json()["entries"]
    assert [e["action"] for e in trail] == ["facility.update", "facility.create"]
    assert trail[0]["before"]["low_balance_threshold_cents"] == 1000
    assert trail[0]["after"]["low_balance_threshold_cents"] is None


def test_a_global_change_that_would_break_a_facility_is_refused(admin: AdminClient) -> None:
    assert admin.put("/admin/facilities/F1", json={"min_deposit_cents": 2000}).status_code == 201
    response = admin.patch("/admin/settings", json={"preset_amount_cents": 1000})
    body = problem(response, 422, "validation-error")
    assert "F1" in body["detail"]
    assert admin.get("/admin/settings").get_json()["preset_amount_cents"] == 2500


def test_facility_settings_are_checked_as_resolved(admin: AdminClient) -> None:
    response = admin.put("/admin/facilities/F1", json={"max_deposit_cents": 1000})
    assert "max_deposit_cents" in fields(problem(response, 422, "validation-error"))
    bad_code = admin.put("/admin/facilities/bad code!", json={})
    assert fields(problem(bad_code, 422, "validation-error")) == {"code"}
    assert admin.get("/admin/facilities").get_json()["facilities"] == []


def test_healthz_reports_an_unreachable_database_as_503() -> None:
    app = create_app(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        )
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    # Every other request fails fast with a problem saying so, and a hint to retry.
    app.extensions["textpay"] = dataclasses.replace(
        app.extensions["textpay"],
        settings=app.extensions["textpay"].settings.model_copy(update={"admin_token": "t"}),
    )
    answer = app.test_client().get("/admin/settings", headers={"Authorization": "Bearer t"})
    assert answer.status_code == 503
    assert answer.get_json()["type"] == "/problems/service-unavailable"
    assert answer.headers["Retry-After"] == "5"
