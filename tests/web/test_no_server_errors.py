"""No 5xx, ever, on either database (issue 11, section 3).

Each test names inputs that used to answer 500 on SQLite, on PostgreSQL or on both: query
parameters `str.isdigit` took and `int` refused, ids beyond PostgreSQL's 32-bit id columns, zone
folders as time zones, settings no column holds, Twilio fields longer than their columns or
holding NUL, an inbound MessageSid that is one of our outbound texts' SIDs, and a gateway's
long decline reason or charge id. What each now answers is the contract: a 422 problem naming
the query parameter, a 404 for an id no row can have, a 422 naming the setting or zone, a 400
`bad-webhook` with nothing recorded, and a charge settled whatever the gateway says.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select
from werkzeug.test import TestResponse

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, count, deposits
from tests.web.twilio_client import TwilioClient
from textpay import autopay, ledger, messages, outbox, settlement
from textpay.db import unit_of_work
from textpay.models import ID_MAX, Account, Message, PaymentAttempt, StatusReport
from textpay.payments import ChargeResult, ChargeStatus
from textpay.policy import SETTING_RANGES, effective_for_account
from textpay.sms import SendOutcome, SendResult
from textpay.timeutil import utcnow
from webhooks import digits_up_to


def problem(response: TestResponse, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["type"] == f"/problems/{slug}", body
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body.get("errors") or []}


# --- Query parameters: ASCII digits in range, else a 422 naming the parameter ----------------

# Each was a 500 (`str.isdigit` accepts it, `int` refuses it or Python refuses so many digits),
# or is a spelling of a number that only `str.isdigit`/`int` would have guessed at.
MALFORMED = [
    "²", "①", "١٢", "٣", "⁵", "-1", "+1", "0x10", "1e3", " 5", "5 ", "1.0", "1_0", "abc",
    "１", "１２",  # noqa: RUF001 (fullwidth digits: look-alikes are the point)
    "1" * 5000, "0" * 5000 + "1", "9" * 21,
]  # fmt: skip
# Well-formed ids no row can have: PostgreSQL's id columns are 32-bit (these were 500s there).
IDS_BEYOND_COLUMNS = [str(ID_MAX + 1), str(2**53 - 1), str(2**53), str(2**63), str(2**64)]

FOREIGN_DIGITS = ["١", "１"]  # noqa: RUF001 (Arabic-Indic and fullwidth one: the point)

PAGES = [  # path, its page-size limit, its cursor
    ("/admin/accounts", 500, "after"),
    ("/admin/messages", 1000, "before"),
    ("/admin/audit", 1000, "before"),
    ("/admin/accounts/{id}/ledger", 1000, "before"),
    ("/admin/scans", 100, "before"),
]


@pytest.mark.parametrize(("path", "limit_max", "cursor"), PAGES)
def test_query_numbers_are_ascii_digits_in_range_or_a_422_naming_them(
    admin: AdminClient, path: str, limit_max: int, cursor: str
) -> None:
    account = admin.enrol()
    url = path.format(id=account["id"])
    for name, bad in [
        *(("limit", value) for value in [*MALFORMED, "0", str(limit_max + 1), *IDS_BEYOND_COLUMNS]),
        *((cursor, value) for value in [*MALFORMED, "0", *IDS_BEYOND_COLUMNS]),
    ]:
        body = problem(admin.get(url, query_string={name: bad}), 422, "validation-error")
        assert fields(body) == {name}, (name, bad[:20])
    # Empty means "not given"; the ends of the ranges are answered.
    for name, good in [
        ("limit", ""),
        (cursor, ""),
        ("limit", str(limit_max)),
        (cursor, str(ID_MAX)),
    ]:
        response = admin.get(url, query_string={name: good})
        assert response.status_code == 200, (name, good, response.get_json())


# --- The actor header: written to the audit trail, so no control characters ----------------


def test_an_actor_header_with_control_characters_is_refused_and_nothing_is_written(
    admin: AdminClient,
) -> None:
    account = admin.enrol()
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/admin/accounts", {"json": {"account_number": "B2", "phone": "2125550148"}}),
        ("PATCH", f"/admin/accounts/{account['id']}", {"json": {"nickname": "Dad"}}),
        ("PATCH", "/admin/settings", {"json": {"daily_message_cap": 2}}),
        ("PUT", "/admin/facilities/F1", {"json": {}}),
        ("POST", f"/admin/accounts/{account['id']}/credits",
         {"json": {"amount_cents": 1, "reason": "r"}, "headers": {"Idempotency-Key": "k1"}}),
    ]  # fmt: skip
    before = admin.get("/admin/audit").get_json()["entries"]
    for name in ["ana\x00", "\x00", "ana\x1b[31m", "ana\x7f"]:
        for method, path, kwargs in writes:
            headers = {**kwargs.get("headers", {}), "X-TextPay-Actor": name}
            response = admin.request(method, path, **{**kwargs, "headers": headers})
            body = problem(response, 422, "validation-error")
            assert fields(body) == {"X-TextPay-Actor"}, (method, path)
    assert admin.get("/admin/audit").get_json()["entries"] == before
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["balance_cents"] == 0


# --- Ids in paths: beyond the id columns' range nothing exists, 404 -------------------------


def test_an_id_no_row_can_have_is_not_found_on_every_route(admin: AdminClient) -> None:
    account = admin.enrol()
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/admin/accounts/{}", {}),
        ("PATCH", "/admin/accounts/{}", {"json": {"nickname": "x"}}),
        ("POST", "/admin/accounts/{}/credits",
         {"json": {"amount_cents": 1, "reason": "r"}, "headers": {"Idempotency-Key": "k1"}}),
        ("POST", "/admin/accounts/{}/usage", {"json": {"amount_cents": 1, "reference": "r"}}),
        ("GET", "/admin/accounts/{}/ledger", {}),
    ]  # fmt: skip
    ids = [str(ID_MAX), *IDS_BEYOND_COLUMNS, "0", "007", "-1", "²", "1" * 5000, *FOREIGN_DIGITS]
    for method, template, kwargs in routes:
        for given in ids:
            response = admin.request(method, template.format(given), **kwargs)
            problem(response, 404, "not-found")
        # The real account still answers (the converter did not lose ordinary ids).
        assert admin.request(method, template.format(account["id"]), **kwargs).status_code < 300
    # Nothing was posted by the refused requests: the real account's credit and usage only.
    entries = admin.get(f"/admin/accounts/{account['id']}/ledger").get_json()["entries"]
    assert [entry["kind"] for entry in entries] == ["usage", "credit"]


def test_an_id_no_row_can_have_is_not_found_on_the_scan_and_card_refund_routes(
    admin: AdminClient,
) -> None:
    """The routes added after the list above (queued scans, card refunds) take the same ids."""
    account = admin.enrol()
    scan = admin.post("/admin/scan")
    assert scan.status_code == 202
    refund = {"deposit_id": 1, "amount_cents": 1, "reason": "r"}
    routes: list[tuple[str, str, int, dict[str, Any]]] = [
        ("GET", "/admin/scans/{}", scan.get_json()["id"], {}),
        ("GET", "/admin/accounts/{}/card-refunds", account["id"], {}),
        ("POST", "/admin/accounts/{}/card-refunds", account["id"],
         {"json": refund, "headers": {"Idempotency-Key": "k1"}}),
    ]  # fmt: skip
    ids = [str(ID_MAX), *IDS_BEYOND_COLUMNS, "0", "007", "-1", "²", "1" * 5000, *FOREIGN_DIGITS]
    for method, template, real, kwargs in routes:
        for given in ids:
            problem(admin.request(method, template.format(given), **kwargs), 404, "not-found")
        if method == "GET":  # the real row still answers
            assert admin.get(template.format(real)).status_code == 200
    url = f"/admin/accounts/{account['id']}/card-refunds"
    for bad in [*MALFORMED, "0", "101", *IDS_BEYOND_COLUMNS]:
        body = problem(admin.get(url, query_string={"limit": bad}), 422, "validation-error")
        assert fields(body) == {"limit"}, bad[:20]
    assert admin.get(url, query_string={"limit": "100"}).status_code == 200


def test_the_openapi_document_bounds_ids_to_the_columns(admin: AdminClient) -> None:
    paths = admin.get("/admin/openapi.json").get_json()["paths"]
    for path, methods in paths.items():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in {"account_id", "after", "before"}:
                    assert parameter["schema"]["maximum"] == ID_MAX, (path, parameter)
    listed = {p["name"] for p in paths["/admin/messages"]["get"]["parameters"]}
    assert {"limit", "before"} <= listed
    listed = {p["name"] for p in paths["/admin/audit"]["get"]["parameters"]}
    assert {"limit", "before"} <= listed


def test_the_path_id_pattern_admits_exactly_the_ids_1_to_id_max() -> None:
    pattern = re.compile(digits_up_to(ID_MAX))
    edges = [0, 1, 9, 10, 99, 10**9 - 1, 10**9, 1_999_999_999, 2 * 10**9, ID_MAX - 10, ID_MAX - 1]
    for number in [*edges, ID_MAX, ID_MAX + 1, ID_MAX + 10, 2**32, 10**10, 10**11]:
        assert bool(pattern.fullmatch(str(number))) == (1 <= number <= ID_MAX), number
    for text in ["01", "007", "", "+1", "-1", "1 ", "²", *FOREIGN_DIGITS]:
        assert pattern.fullmatch(text) is None, text


# --- Time zones: a folder of the zone database is not a zone ---------------------------------


def zone_folders() -> list[str]:
    """Every folder of the zone database on this machine (`America`, `America/Indiana`, `Etc`,
    `US`, `posix/Europe`, ...), and the four the issue named whatever the machine has."""
    found = {"America", "Etc", "US", "Europe"}
    for root in map(Path, zoneinfo.TZPATH):
        if root.is_dir():
            for folder, _, _ in os.walk(root):
                relative = Path(folder).relative_to(root).as_posix()
                if relative != ".":
                    found.add(relative)
    return sorted(name for name in found if len(name) <= 64)


def test_zone_folders_are_refused_wherever_a_zone_is_taken(admin: AdminClient) -> None:
    account = admin.enrol()
    folders = zone_folders()
    assert len(folders) >= 4
    for number, folder in enumerate(folders):
        patched = admin.patch(f"/admin/accounts/{account['id']}", json={"timezone": folder})
        assert fields(problem(patched, 422, "validation-error")) == {"timezone"}, folder
        created = admin.post("/admin/accounts", json={
            "account_number": f"Z{number}", "phone": "2125550148", "timezone": folder})  # fmt: skip
        assert fields(problem(created, 422, "validation-error")) == {"timezone"}, folder
        facility = admin.put("/admin/facilities/F1", json={"timezone": folder})
        assert fields(problem(facility, 422, "validation-error")) == {"timezone"}, folder
    # A real zone is still taken everywhere, and the account and facility read back.
    assert (
        admin.put("/admin/facilities/F1", json={"timezone": "America/Chicago"}).status_code == 201
    )
    assert admin.patch(f"/admin/accounts/{account['id']}",
                       json={"timezone": "America/Chicago"}).status_code == 200  # fmt: skip
    assert admin.get(f"/admin/accounts/{account['id']}").status_code == 200
    assert admin.get("/admin/facilities/F1").status_code == 200


# --- Settings: every integer has an upper bound, refused before anything is written ---------

TOO_BIG = [2**31 - 1, 2**31, 2**53, 2**63, 10**30]


@pytest.mark.parametrize("name", sorted(SETTING_RANGES))
def test_every_setting_has_an_upper_bound_refused_with_a_422(admin: AdminClient, name: str) -> None:
    low, high = SETTING_RANGES[name]
    assert admin.put("/admin/facilities/OLD", json={}).status_code == 201  # an existing row
    for value in [high + 1, *TOO_BIG, low - 1]:
        for response in (
            admin.put("/admin/facilities/OLD", json={name: value}),
            admin.put("/admin/facilities/NEW", json={name: value}),
            admin.patch("/admin/settings", json={name: value}),
        ):
            assert fields(problem(response, 422, "validation-error")) == {name}, value
    # Nothing changed, and everything that reads the settings still answers.
    assert admin.get("/admin/facilities/NEW").status_code == 404
    assert admin.get("/admin/facilities/OLD").get_json()[name] is None
    assert admin.get("/admin/settings").status_code == 200
    assert admin.get("/admin/facilities").status_code == 200


@pytest.mark.parametrize("name", ["prompt_ttl_minutes", "prompt_cooldown_hours",
                                  "daily_message_cap"])  # fmt: skip
def test_the_largest_allowed_value_is_kept_and_read_back(admin: AdminClient, name: str) -> None:
    high = SETTING_RANGES[name][1]
    assert admin.put("/admin/facilities/OLD", json={}).status_code == 201
    assert admin.put("/admin/facilities/OLD", json={name: high}).status_code == 200
    assert admin.patch("/admin/settings", json={name: high}).status_code == 200
    assert admin.get("/admin/settings").get_json()[name] == high
    assert admin.get("/admin/facilities/OLD").get_json()["effective"][name] == high


def test_the_openapi_document_states_every_settings_bound(admin: AdminClient) -> None:
    schemas = admin.get("/admin/openapi.json").get_json()["components"]["schemas"]
    for model in ("SettingsPatch", "FacilityIn"):
        for name, (low, high) in SETTING_RANGES.items():
            (integer,) = [
                option
                for option in schemas[model]["properties"][name]["anyOf"]
                if option.get("type") == "integer"
            ]
            assert (integer["minimum"], integer["maximum"]) == (low, high), (model, name)


# --- /twilio/status: ErrorCode is a Twilio error code or the callback is refused -------------

BAD_ERROR_CODES = [
    "12345678901", "1" * 5000, "300\x0003", "\x00", "30003\x00", "٣٠٠٠٣",
    "３０００３",  # noqa: RUF001 (fullwidth digits: look-alikes are the point)
    "-30003", "30003a", "E30003", "30 003",
]  # fmt: skip


def sent_text(engine: Engine, sid: str) -> int:
    """An outbound text Twilio accepted as `sid`."""
    with unit_of_work(engine) as session:
        queued = messages.queue_outbound(session, phone=MOM, account_id=None, body="hello",
                                         kind="receipt", now=utcnow())  # fmt: skip
        assert queued.id is not None
        accepted = SendResult(SendOutcome.ACCEPTED, sid=sid, status="queued")
        outbox.record(session, queued.id, accepted, now=utcnow())
        return queued.id


def message_row(engine: Engine, message_id: int) -> Message:
    with unit_of_work(engine) as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


def test_a_status_callback_with_an_error_code_twilio_never_sends_is_refused_whole(
    twilio: TwilioClient, engine: Engine
) -> None:
    known = "SM" + "a" * 32
    message_id = sent_text(engine, known)
    unknown = "SM" + "b" * 32  # not recorded yet: a valid callback would be kept for later
    for code in BAD_ERROR_CODES:
        for sid in (known, unknown):
            response = twilio.status(sid, "undelivered", code)
            problem(response, 400, "bad-webhook")
    row = message_row(engine, message_id)
    assert (row.status, row.error_code) == ("queued", None)
    assert count(engine, StatusReport) == 0
    # Twilio's own codes still arrive.
    assert twilio.status(known, "undelivered", "30003").status_code == 204
    assert message_row(engine, message_id).error_code == "30003"
    assert twilio.status(unknown, "failed", "1234567890").status_code == 204
    assert count(engine, StatusReport) == 1


# --- /twilio/sms: an inbound MessageSid that is one of our outbound SIDs ---------------------


def test_an_inbound_sid_that_names_an_outbound_text_is_refused_and_nothing_is_recorded(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    sid = "SM" + "c" * 32
    message_id = sent_text(engine, sid)
    before = count(engine, Message)
    for body in ("BAL", "YES", "STOP"):
        for _ in range(2):  # and again: a retry gets the same answer
            problem(twilio.sms(MOM, body, sid=sid), 400, "bad-webhook")
    assert count(engine, Message) == before
    assert count(engine, Message, Message.direction == "inbound") == 0
    assert charges(engine) == 0
    row = message_row(engine, message_id)
    assert (row.direction, row.status, row.body) == ("outbound", "queued", "hello")
    # The number was not opted out by the refused STOP, and real texts are answered.
    assert "acct ...4821" in twilio.text(MOM, "BAL")
    with unit_of_work(engine) as session:
        assert session.exec(select(func.count()).select_from(Account)
                            .where(Account.opted_out)).one() == 0  # fmt: skip


# --- Column lengths: what a gateway or Twilio returns never fails a write -------------------

LONG_REASON = "issuer_declined_" + "r" * 84 + "\x00"  # 101 characters, with a NUL
LONG_CHARGE_ID = "ch_" + "x" * 97  # 100 characters


def begun(app: Flask, account_id: int) -> int:
    """Phase 1 of an AutoPay charge, as the scan makes it."""
    with unit_of_work(app.extensions["textpay"].engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        order = autopay.begin(session, account, effective_for_account(session, account),
                              now=utcnow())  # fmt: skip
    return order.attempt_id


def settle(app: Flask, attempt_id: int, result: ChargeResult) -> settlement.Outcome:
    parts = app.extensions["textpay"]
    with unit_of_work(parts.engine) as session:
        return settlement.settle(session, attempt_id, result, now=utcnow(),
                                 config=parts.engine_config, by_reply=False)  # fmt: skip


def attempt(engine: Engine, attempt_id: int) -> PaymentAttempt:
    with unit_of_work(engine) as session:
        found = session.get(PaymentAttempt, attempt_id)
        assert found is not None
        return found


@pytest.mark.parametrize("status", [ChargeStatus.DECLINED, ChargeStatus.FAILED,
                                    ChargeStatus.SUCCEEDED])  # fmt: skip
def test_a_charge_whose_result_carries_a_long_reason_and_id_still_settles(
    app: Flask, admin: AdminClient, engine: Engine, status: ChargeStatus
) -> None:
    account = admin.enrol(autopay_enabled=True)
    attempt_id = begun(app, account["id"])
    reason = None if status is ChargeStatus.SUCCEEDED else LONG_REASON
    outcome = settle(app, attempt_id, ChargeResult(status, charge_id=LONG_CHARGE_ID,
                                                   decline_reason=reason))  # fmt: skip
    assert outcome is not None
    settled = attempt(engine, attempt_id)
    assert settled.status == status.value
    assert settled.charge_id == LONG_CHARGE_ID[:60]
    if reason is None:
        assert settled.decline_reason is None
        assert deposits(engine) == 1
    else:
        assert settled.decline_reason == LONG_REASON[:40]
        assert deposits(engine) == 0
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []


def test_twilio_error_codes_and_statuses_longer_than_their_columns_are_recorded_cut(
    engine: Engine,
) -> None:
    with unit_of_work(engine) as session:
        ids = []
        for _ in range(2):
            queued = messages.queue_outbound(session, phone=MOM, account_id=None, body="hi",
                                             kind="receipt", now=utcnow())  # fmt: skip
            assert queued.id is not None
            ids.append(queued.id)
    long_code = "9" * 30 + "\x00"
    with unit_of_work(engine) as session:
        outbox.record(session, ids[0], SendResult(SendOutcome.FAILED, error_code=long_code),
                      now=utcnow())  # fmt: skip
        outbox.record(session, ids[1], SendResult(SendOutcome.ACCEPTED, sid="SM" + "d" * 32,
                                                  status="accepted-by-a-long-status\x00"),
                      now=utcnow())  # fmt: skip
    failed, accepted = message_row(engine, ids[0]), message_row(engine, ids[1])
    assert (failed.status, failed.error_code) == ("failed", "9" * 10)
    assert accepted.status == "accepted-by-a-lo"
