"""The console's Overview, Settings, Scans and Consent pages (issue 15) and the consent CSV of
the admin API, on SQLite and PostgreSQL: the overview's numbers and its JSON, a settings change
previewed (nothing written) then saved (audited under the operator), errors shown in place, a
viewer shown no forms and refused a post, scans listed and queued, consent records filtered and
exported."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tests.conftest import AUTH, AdminClient
from tests.db.test_overview import NOW, seed
from tests.web.operators_helpers import MadeOperator, bearer, make_operator
from tests.web.test_console_sign_in import csrf_of, sign_in
from textpay.models import AuditLogEntry, ConsentEvent, GlobalSettings, ScanRun
from webhooks.console.overview import LABELS


def signed_in_as(app: Flask, engine: Engine, role: str) -> tuple[FlaskClient, MadeOperator]:
    client = app.test_client()
    made = make_operator(engine, f"{role}@example.org", role, name=role.title())
    assert sign_in(client, made.email, made.password).status_code == 303
    return client, made


def global_settings(engine: Engine) -> GlobalSettings:
    with Session(engine) as session:
        row = session.get(GlobalSettings, 1)
        assert row is not None
        return row


def audit_entries(engine: Engine, action: str) -> list[AuditLogEntry]:
    with Session(engine) as session:
        return list(session.exec(select(AuditLogEntry).where(AuditLogEntry.action == action)))


# Overview


def test_the_overview_shows_thirty_days_in_tables_and_loads_its_chart_from_static(
    app: Flask, engine: Engine
) -> None:
    seed(engine)
    with freeze_time(NOW):
        client, _ = signed_in_as(app, engine, "viewer")
        page = client.get("/console/overview")
        html = page.get_data(as_text=True)
        data = client.get("/console/overview.json").get_json()
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<script src="/static/vendor/chartjs/chart.umd.min.js" defer></script>' in html
    assert '<script src="/static/console-overview.js" defer></script>' in html
    assert "<script>" not in html
    assert "style=" not in html
    assert 'data-source="/console/overview.json"' in html
    assert html.count('<tr data-day="') == 30
    row = re.search(r'<tr data-day="2024-06-29">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-series="(\w+)">([^<]*)<', row.group(1)))
    assert cells["offers_sent"] == "2"
    assert cells["funded"] == "1"
    assert cells["conversion"] == "50%"
    assert re.search(r'data-state="held_by_cap">1<', html)
    assert "insufficient_funds" in html
    assert len(data["days"]) == 30
    assert data["days"][-1] == "2024-06-30"
    assert data["conversion"][-2] == 0.5
    assert data["series"]["offers_sent"][-2] == 2
    assert data["labels"] == LABELS
    assert data["outbox"]["held_by_cap"] == 1


def test_the_overview_and_its_json_need_a_signed_in_operator(client: FlaskClient) -> None:
    for path in ("/console/overview", "/console/overview.json"):
        answer = client.get(path)
        assert answer.status_code == 303
        assert "/console/sign-in" in answer.headers["Location"]


def test_the_chart_library_is_served_from_static_with_its_licence(client: FlaskClient) -> None:
    library = client.get("/static/vendor/chartjs/chart.umd.min.js")
    assert library.status_code == 200
    assert b"Chart.js v4.6.1" in library.get_data()[:200]
    assert client.get("/static/vendor/chartjs/LICENSE.md").status_code == 200
    assert client.get("/static/console-overview.js").status_code == 200


# Settings


def test_a_preview_counts_newly_eligible_accounts_and_changes_nothing_then_save_audits(
    app: Flask, engine: Engine, admin: AdminClient
) -> None:
    # Three enrolled accounts at $3.00, $6.00 and $9.00; the threshold is $5.00.
    for n, cents in enumerate((300, 600, 900)):
        account = admin.enrol(account_number=f"A{n}", phone=f"212555014{n}")
        admin.credit(account["id"], cents, f"seed-{n}")
    client, made = signed_in_as(app, engine, "admin")
    form = {
        "csrf": csrf_of(client, "/console/settings"),
        "target": "global",
        "low_balance_threshold_cents": "700",
        "action": "preview",
    }
    preview = client.post("/console/settings", data=form)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert re.search(r'id="preview-offers-before">1<', html)
    assert re.search(r'id="preview-offers-after">2<', html)
    assert re.search(r'id="preview-newly-eligible">\+1<', html)
    assert 'value="700"' in html  # the form keeps what was typed
    assert global_settings(engine).low_balance_threshold_cents == 500
    assert audit_entries(engine, "settings.update") == []

    saved = client.post("/console/settings", data={**form, "action": "save"})
    assert saved.status_code == 303
    assert global_settings(engine).low_balance_threshold_cents == 700
    [entry] = audit_entries(engine, "settings.update")
    assert entry.actor == f"operator:{made.email}"
    assert entry.after is not None
    assert entry.after["low_balance_threshold_cents"] == 700
    landed = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'id="saved"' in landed


def test_a_facility_override_is_previewed_and_saved_through_the_same_checks(
    app: Flask, engine: Engine, admin: AdminClient
) -> None:
    assert admin.put("/admin/facilities/NORTH", json={"name": "North"}).status_code == 201
    account = admin.enrol(account_number="N1", phone="2125550150", facility="NORTH")
    admin.credit(account["id"], 600, "seed-n1")
    client, made = signed_in_as(app, engine, "admin")
    form = {"csrf": csrf_of(client, "/console/settings"), "target": "NORTH", "name": "North",
            "low_balance_threshold_cents": "1000", "action": "preview"}  # fmt: skip
    preview = client.post("/console/settings", data=form).get_data(as_text=True)
    assert re.search(r'id="preview-newly-eligible">\+1<', preview)
    assert admin.get("/admin/facilities/NORTH").get_json()["low_balance_threshold_cents"] is None
    assert client.post("/console/settings", data={**form, "action": "save"}).status_code == 303
    assert admin.get("/admin/facilities/NORTH").get_json()["low_balance_threshold_cents"] == 1000
    [entry] = audit_entries(engine, "facility.update")
    assert entry.actor == f"operator:{made.email}"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"min_deposit_cents": "30000"}, "min_deposit_cents", "max"),
        ({"daily_message_cap": "many"}, "daily_message_cap", "must be a whole number"),
        # A window inside no state's stricter hours: the admin API's own refusal.
        ({"quiet_hours_start": "06:00", "quiet_hours_end": "07:30"}, "quiet_hours_start",
         "leave no sending time"),
    ],
)  # fmt: skip
def test_a_refused_change_is_shown_next_to_its_field_and_nothing_is_saved(
    app: Flask, engine: Engine, fields: dict[str, str], field: str, message: str
) -> None:
    client, _ = signed_in_as(app, engine, "admin")
    before = global_settings(engine)
    for action in ("preview", "save"):
        answer = client.post("/console/settings", data={
            "csrf": csrf_of(client, "/console/settings"), "target": "global", "action": action,
            **fields})  # fmt: skip
        html = answer.get_data(as_text=True)
        assert answer.status_code == 422
        assert f'id="global-{field}" name="{field}"' in html
        error = re.search(rf'<p class="field-error" id="global-{field}-error">([^<]*)</p>', html)
        assert error is not None, html
        assert message in error.group(1)
        assert re.search(rf'id="global-{field}"[^>]*aria-invalid="true"', html)
        assert 'id="preview"' not in html
    after = global_settings(engine)
    assert after.model_dump() == before.model_dump()
    assert audit_entries(engine, "settings.update") == []


@pytest.mark.parametrize("role", ["viewer", "agent"])
def test_below_admin_the_settings_are_read_only_and_a_post_is_refused(
    app: Flask, engine: Engine, role: str
) -> None:
    client, _ = signed_in_as(app, engine, role)
    page = client.get("/console/settings").get_data(as_text=True)
    assert 'id="global-table"' in page
    assert 'action="/console/settings"' not in page
    assert "Preview" not in page
    refused = client.post("/console/settings", data={
        "csrf": csrf_of(client, "/console/settings"), "target": "global",
        "low_balance_threshold_cents": "900", "action": "save"})  # fmt: skip
    assert refused.status_code == 403
    assert global_settings(engine).low_balance_threshold_cents == 500


# Scans


def test_an_agent_queues_a_scan_and_everyone_sees_it_listed(app: Flask, engine: Engine) -> None:
    viewer, _ = signed_in_as(app, engine, "viewer")
    assert "No scan has been asked for yet" in viewer.get("/console/scans").get_data(as_text=True)
    assert 'id="queue-scan"' not in viewer.get("/console/scans").get_data(as_text=True)
    refused = viewer.post("/console/scans", data={"csrf": csrf_of(viewer, "/console/scans")})
    assert refused.status_code == 403

    agent, made = signed_in_as(app, engine, "agent")
    queued = agent.post("/console/scans", data={"csrf": csrf_of(agent, "/console/scans")})
    assert queued.status_code == 303
    with Session(engine) as session:
        [run] = session.exec(select(ScanRun)).all()
    assert run.requested_by == f"operator:{made.email}"
    assert run.status == "queued"
    page = viewer.get("/console/scans").get_data(as_text=True)
    assert f'<tr data-scan="{run.id}">' in page
    assert f"operator:{made.email}" in page


# Consent records

EVENTS = [
    ("+12125550147", "opt_out", "STOP, please", "sms", datetime(2024, 5, 1, 23, 59, tzinfo=UTC)),
    ("+12125550147", "opt_in", 'START "again"', "sms", datetime(2024, 5, 2, 0, 1, tzinfo=UTC)),
    ("+13125550100", "opt_out", "Twilio error 21610", "carrier",
     datetime(2024, 5, 3, 12, 0, tzinfo=UTC)),
]  # fmt: skip


def seed_consent(engine: Engine) -> None:
    with Session(engine) as session:
        for phone, kind, words, source, moment in EVENTS:
            session.add(ConsentEvent(phone=phone, kind=kind, words=words, source=source,
                                     created_at=moment))  # fmt: skip
        session.commit()


def rows_of(answer_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(answer_text)))


def test_the_consent_csv_has_a_header_and_one_row_per_event_in_the_range(
    client: FlaskClient, engine: Engine
) -> None:
    seed_consent(engine)
    answer = client.get("/admin/consent-events.csv?from=2024-05-02&to=2024-05-03", headers=AUTH)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert "consent-events-2024-05-02-to-2024-05-03.csv" in answer.headers["Content-Disposition"]
    rows = rows_of(answer.get_data(as_text=True))
    assert rows[0] == ["id", "time_utc", "phone", "kind", "words", "source", "account_id"]
    assert [row[2:6] for row in rows[1:]] == [
        ["+12125550147", "opt_in", 'START "again"', "sms"],
        ["+13125550100", "opt_out", "Twilio error 21610", "carrier"],
    ]
    assert rows[1][1] == "2024-05-02T00:01:00+00:00"
    everything = rows_of(client.get("/admin/consent-events.csv", headers=AUTH).get_data(True))
    assert [row[4] for row in everything[1:]] == ["STOP, please", 'START "again"',
                                                  "Twilio error 21610"]  # fmt: skip
    empty = client.get("/admin/consent-events.csv?from=2024-06-01&to=2024-06-30", headers=AUTH)
    assert empty.status_code == 200
    assert rows_of(empty.get_data(as_text=True)) == [rows[0]]


def test_a_viewer_token_may_export_the_consent_record(client: FlaskClient, engine: Engine) -> None:
    made = make_operator(engine, "vera@example.org", "viewer")
    minted = client.post(
        "/admin/tokens", headers=AUTH, json={"name": "csv", "operator_id": made.id}
    )
    answer = client.get("/admin/consent-events.csv", headers=bearer(minted.get_json()["token"]))
    assert answer.status_code == 200
    assert client.get("/admin/consent-events.csv").status_code == 401


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("from=2024-13-01", ["from"]),
        ("from=yesterday&to=2024-02-30", ["from", "to"]),
        ("to=20240501", ["to"]),
        ("from=2024-05-03&to=2024-05-01", ["to"]),
        ("from=0001-01-01", ["from"]),
    ],
)
def test_bad_dates_are_a_422_problem_naming_each(
    client: FlaskClient, query: str, fields: list[str]
) -> None:
    answer = client.get(f"/admin/consent-events.csv?{query}", headers=AUTH)
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["type"].endswith("validation-error")
    assert [error["field"] for error in problem["errors"]] == fields


def test_the_consent_page_filters_by_days_and_a_number_typed_any_way_and_links_the_csv(
    app: Flask, engine: Engine
) -> None:
    seed_consent(engine)
    client, _ = signed_in_as(app, engine, "viewer")
    everything = client.get("/console/consent").get_data(as_text=True)
    assert everything.count("<tr data-event=") == 3
    assert 'href="/console/consent.csv"' in everything
    one_number = client.get("/console/consent?phone=(212)+555-0147").get_data(as_text=True)
    assert one_number.count("<tr data-event=") == 2
    assert "Consent changes of +12125550147" in one_number
    assert "STOP, please" in one_number
    assert "START &#34;again&#34;" in one_number
    ranged = client.get("/console/consent?from=2024-05-02&to=2024-05-02").get_data(as_text=True)
    assert ranged.count("<tr data-event=") == 1
    assert 'href="/console/consent.csv?from=2024-05-02&amp;to=2024-05-02"' in ranged
    empty = client.get("/console/consent?from=2024-06-01").get_data(as_text=True)
    assert 'id="no-events"' in empty
    # The link works for the signed-in operator (a browser has the cookie, not an API token),
    # and gives the admin API's file.
    download = client.get("/console/consent.csv?from=2024-05-02&to=2024-05-02")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert (
        download.get_data()
        == client.get(
            "/admin/consent-events.csv?from=2024-05-02&to=2024-05-02", headers=AUTH
        ).get_data()
    )
    assert client.get("/console/consent.csv?from=2024-02-30").status_code == 303


def test_the_consent_page_shows_a_bad_date_or_number_next_to_its_box(
    app: Flask, engine: Engine
) -> None:
    client, _ = signed_in_as(app, engine, "viewer")
    answer = client.get("/console/consent?from=2024-02-30&phone=not-a-number")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert 'id="from-error"' in html
    assert 'id="phone-error"' in html
    assert 'id="consent-csv"' not in html


def test_the_consent_page_pages_back_through_older_records(app: Flask, engine: Engine) -> None:
    with Session(engine) as session:
        for n in range(55):
            session.add(ConsentEvent(phone="+12125550147", kind="opt_out", words=f"STOP {n}",
                                     source="sms"))  # fmt: skip
        session.commit()
        newest = max(session.exec(select(col(ConsentEvent.id))).all())
    client, _ = signed_in_as(app, engine, "viewer")
    first = client.get("/console/consent").get_data(as_text=True)
    assert first.count("<tr data-event=") == 50
    older = re.search(r'<a href="([^"]+)" id="older">', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("<tr data-event=") == 5
    assert f'data-event="{newest}"' not in second
