"""`runway_days` where thresholds are set: the global defaults (null: off), a facility's
overrides (null: inherit), an account's own (null: its facility's or the global one), in the
admin API and the console's settings page; whole days from 1 to 90, anything else a 422 that
changes nothing; and a preview that counts the accounts it makes eligible."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.test_runway import FIRST_CALLS, calling
from tests.web.test_console_pages import global_settings, signed_in_as
from tests.web.test_console_sign_in import csrf_of

BAD = [0, -1, 91, 10**6, "5", 5.0, True]


def field_errors(response: Any) -> set[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    return {e["field"] for e in response.get_json()["errors"]}


@pytest.mark.parametrize("value", BAD)
def test_a_bad_runway_is_refused_everywhere_and_changes_nothing(
    admin: AdminClient, value: Any
) -> None:
    account = admin.enrol()
    assert field_errors(admin.patch("/admin/settings", json={"runway_days": value})) == {
        "runway_days"
    }
    assert field_errors(admin.put("/admin/facilities/NORTH", json={"runway_days": value})) == {
        "runway_days"
    }
    assert field_errors(
        admin.patch(f"/admin/accounts/{account['id']}", json={"runway_days": value})
    ) == {"runway_days"}
    assert field_errors(
        admin.post("/admin/accounts", json={"account_number": "NEW-1", "phone": "2125550100",
                                            "runway_days": value})
    ) == {"runway_days"}  # fmt: skip
    assert admin.get("/admin/settings").get_json()["runway_days"] is None
    assert admin.get("/admin/facilities/NORTH").status_code == 404
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["runway_days"] is None


def test_global_then_facility_then_account(admin: AdminClient) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 90}).get_json()["runway_days"] == 90
    assert admin.put("/admin/facilities/NORTH", json={"runway_days": 4}).status_code == 201
    assert admin.put("/admin/facilities/SOUTH", json={}).status_code == 201
    north = admin.enrol(account_number="N-1", phone="2125550101", facility="NORTH")
    south = admin.enrol(account_number="S-1", phone="2125550102", facility="SOUTH")
    own = admin.enrol(account_number="O-1", phone="2125550103", facility="NORTH", runway_days=2)

    def effective(account: dict[str, Any]) -> tuple[int | None, str]:
        found = admin.get(f"/admin/accounts/{account['id']}").get_json()["effective"]
        return found["runway_days"], found["sources"]["runway_days"]

    assert effective(north) == (4, "facility")
    assert effective(south) == (90, "global")
    assert effective(own) == (2, "account")
    assert admin.get("/admin/facilities/SOUTH").get_json()["effective"]["runway_days"] == 90
    # The account's own value cleared by null; the global one switched off by null.
    path = f"/admin/accounts/{own['id']}"
    assert admin.patch(path, json={"runway_days": None}).get_json()["runway_days"] is None
    assert effective(own) == (4, "facility")
    assert admin.patch("/admin/settings", json={"runway_days": None}).status_code == 200
    assert effective(south) == (None, "global")
    assert effective(north) == (4, "facility")


def test_the_console_sets_and_clears_it_and_previews_who_becomes_eligible(
    app: Flask, engine: Engine, admin: AdminClient
) -> None:
    with freeze_time(FIRST_CALLS) as clock:
        calling(admin, clock, number="ACCT-4821", phone="2125550147")  # 4 days left, $20.00
        client, _ = signed_in_as(app, engine, "admin")
        form = {"csrf": csrf_of(client, "/console/settings"), "target": "global",
                "runway_days": "5", "action": "preview"}  # fmt: skip
        html = client.post("/console/settings", data=form).get_data(as_text=True)
        assert re.search(r'id="preview-newly-eligible">\+1<', html)
        assert global_settings(engine).runway_days is None
        assert client.post("/console/settings", data={**form, "action": "save"}).status_code \
            == 303  # fmt: skip
        assert global_settings(engine).runway_days == 5
        # A form without the box changes nothing; the box sent empty switches it off.
        other = {**form, "action": "save", "daily_message_cap": "4"}
        del other["runway_days"]
        assert client.post("/console/settings", data=other).status_code == 303
        assert global_settings(engine).runway_days == 5
        emptied = {**form, "action": "save", "runway_days": ""}
        assert client.post("/console/settings", data=emptied).status_code == 303
        assert global_settings(engine).runway_days is None
        refused = client.post("/console/settings", data={**form, "runway_days": "91"})
        assert refused.status_code == 422
        assert global_settings(engine).runway_days is None
