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


def test_an_empty_window_is_refused(admin: AdminClient) -> None:
    """20:00-21:00 leaves no sending time where state law stops at 20:00, nor where an area
    code spans two zones an hour apart: refused, naming where, and nothing changes."""
    before = admin.get("/admin/settings").get_json()
    response = admin.patch(
        "/admin/settings", json={"quiet_hours_start": "20:00", "quiet_hours_end": "21:00"}
    )
    body = problem(response, 422, "validation-error")
    assert body["detail"].startswith(
        "Quiet hours 20:00\N{EN DASH}21:00 leave no sending time in CT, FL, MD, MS, NJ, OK; "
        "area codes spanning two zones in AK, AZ, ID, ND, NV, SD"
    )
    assert "toll-free" in body["detail"]
    assert fields(body) == {"quiet_hours_start"}
    assert admin.get("/admin/settings").get_json() == before
    assert admin.get("/admin/audit").get_json()["entries"] == []


def test_a_window_too_short_for_toll_free_numbers_needs_a_facility_zone(
    admin: AdminClient,
) -> None:
    """Toll-free numbers may be anywhere from Guam to American Samoa: 09:00-17:00 is never
    open in all those zones at once. A facility that says where it is can have it."""
    office = {"quiet_hours_start": "09:00", "quiet_hours_end": "17:00"}
    body = problem(admin.patch("/admin/settings", json=office), 422, "validation-error")
    assert "toll-free and non-geographic numbers" in body["detail"]

    body = problem(admin.put("/admin/facilities/F1", json=office), 422, "validation-error")
    assert "at facility F1" in body["detail"]
    assert "give the facility a timezone" in body["detail"]
    assert admin.get("/admin/facilities").get_json()["facilities"] == []

    created = admin.put("/admin/facilities/F1", json={**office, "timezone": "America/Chicago"})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["timezone"] == "America/Chicago"
    assert admin.get("/admin/facilities/F1").get_json()["timezone"] == "America/Chicago"


def test_a_facility_zone_must_be_a_real_iana_zone(admin: AdminClient) -> None:
    for bad in ("Mars/Olympus_Mons", "America", "posix/America/Chicago", "../etc/passwd"):
        response = admin.put("/admin/facilities/F1", json={"timezone": bad})
        assert fields(problem(response, 422, "validation-error")) == {"timezone"}, bad
    assert admin.get("/admin/facilities").get_json()["facilities"] == []
    created = admin.put("/admin/facilities/F1", json={"timezone": "America/Anchorage"})
    assert created.status_code == 201
    # PUT replaces: a facility sent without its zone no longer has one.
    assert admin.put("/admin/facilities/F1", json={}).get_json()["timezone"] is None


def test_a_state_table_change_that_shuts_a_facilitys_window_is_refused(
    admin: AdminClient,
) -> None:
    assert (
        admin.put(
            "/admin/facilities/F1",
            json={
                "quiet_hours_start": "10:00",
                "quiet_hours_end": "20:00",
                "timezone": "America/New_York",
            },
        ).status_code
        == 201
    )
    table = {"CT": ["08:00", "10:00"]}  # fine for the global 08:00-21:00, not for F1
    body = problem(
        admin.patch("/admin/settings", json={"state_quiet_hours": table}), 422, "validation-error"
    )
    assert (
        body["detail"]
        == "Quiet hours 10:00\N{EN DASH}20:00 leave no sending time in CT at facility F1."
    )
    assert fields(body) == {"state_quiet_hours"}
    late = {"TX": ["21:00", "22:00"]}  # a law window outside the global one leaves nothing
    body = problem(
        admin.patch("/admin/settings", json={"state_quiet_hours": late}), 422, "validation-error"
    )
    assert "in TX" in body["detail"]
    assert admin.get("/admin/settings").get_json()["state_quiet_hours"]["CT"] == ["09:00", "20:00"]
