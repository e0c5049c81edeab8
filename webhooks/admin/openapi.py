"""`GET /admin/openapi.json`: the admin API described as OpenAPI 3.1.

Request bodies are the very models the API validates with (`textpay.schemas`); responses are
described by the models below, which the schemathesis test holds the API to.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from textpay import __version__
from textpay.models import ID_MAX
from textpay.operator_settings import FacilityIn
from textpay.schemas import (
    AccountCreate,
    AccountUpdate,
    CardRefundIn,
    CreditIn,
    OperatorIn,
    PasscodeIn,
    SettingsPatch,
    TokenIn,
    UsageIn,
)
from webhooks.admin import bp


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldErrorOut(Out):
    field: str
    message: str


class SettingsValues(Out):
    low_balance_threshold_cents: int
    preset_amount_cents: int
    min_deposit_cents: int
    max_deposit_cents: int
    daily_deposit_limit_cents: int
    deposit_fee_cents: int
    prompt_ttl_minutes: int
    prompt_cooldown_hours: int
    quiet_hours_start: str
    quiet_hours_end: str
    daily_message_cap: int
    runway_days: int | None
    passcode_over_cents: int | None
    passcode_new_phone_days: int | None


class EffectiveOut(SettingsValues):
    sources: dict[str, str]


class SettingsOut(SettingsValues):
    state_quiet_hours: dict[str, list[str]]
    updated_at: str


class FacilityOut(Out):
    code: str
    name: str
    timezone: str | None
    low_balance_threshold_cents: int | None
    preset_amount_cents: int | None
    min_deposit_cents: int | None
    max_deposit_cents: int | None
    daily_deposit_limit_cents: int | None
    deposit_fee_cents: int | None
    prompt_ttl_minutes: int | None
    prompt_cooldown_hours: int | None
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    daily_message_cap: int | None
    runway_days: int | None
    passcode_over_cents: int | None
    passcode_new_phone_days: int | None
    effective: EffectiveOut
    created_at: str
    updated_at: str


class FacilityList(Out):
    facilities: list[FacilityOut]


class PaymentMethodOut(Out):
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    customer: str | None


class PromptOut(Out):
    id: int
    status: str
    amount_cents: int
    fee_cents: int
    expires_at: str
    created_at: str


class DisputeOut(Out):
    id: int
    amount_cents: int
    reason: str
    status: str
    created_at: str
    closed_at: str | None


class AccountOut(Out):
    id: int
    account_number: str
    phone: str
    nickname: str
    language: str
    timezone: str | None
    facility: str | None
    textpay_enabled: bool
    autopay_enabled: bool
    preset_amount_cents: int | None
    threshold_cents: int | None
    runway_days: int | None
    runway_estimate_days: int | None
    passcode_over_cents: int | None
    passcode_new_phone_days: int | None
    passcode_set: bool
    passcode_locked_until: str | None
    phone_since: str
    status: str
    opted_out: bool
    opted_out_at: str | None
    balance_cents: int
    balance_as_of: str
    payment_method: PaymentMethodOut | None
    pending_prompt: PromptOut | None
    effective: EffectiveOut
    disputes: list[DisputeOut]
    created_at: str
    updated_at: str


class PasscodeOut(Out):
    account_id: int
    passcode_set: bool


class AccountList(Out):
    accounts: list[AccountOut]
    next_after: int | None


class LedgerEntryOut(Out):
    id: int
    account_id: int
    kind: str
    amount_cents: int
    balance_after_cents: int
    reference: str
    memo: str
    created_at: str


class LedgerPage(Out):
    account_id: int
    balance_cents: int
    entries: list[LedgerEntryOut]
    next_before: int | None


class CardRefundOut(Out):
    id: int
    account_id: int
    deposit_id: int | None
    amount_cents: int
    reason: str
    status: Literal["pending", "succeeded", "failed"]
    card_last4: str
    refund_id: str | None
    failure_reason: str | None
    actor: str
    created_at: str
    settled_at: str | None
    # The debit (null only for a processor's own refund found when the balance was 0), and the
    # adjustment that gave the money back when the processor refused.
    ledger_entry: LedgerEntryOut | None
    give_back_entry: LedgerEntryOut | None
    balance_cents: int


class CardRefundList(Out):
    account_id: int
    card_refunds: list[CardRefundOut]


class ProblemOut(Out):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldErrorOut] | None = None
    # On a `card-refund-failed` problem: the refund as recorded.
    card_refund: CardRefundOut | None = None


class AuditEntryOut(Out):
    id: int
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: str


class AuditPage(Out):
    entries: list[AuditEntryOut]
    next_before: int | None


class MessageOut(Out):
    id: int
    direction: str
    phone: str
    account_id: int | None
    body: str
    reply_body: str | None
    status: str
    kind: str
    engine_initiated: bool
    send_after: str | None
    sent_at: str | None
    attempts: int
    twilio_sid: str | None
    error_code: str | None
    created_at: str


class MessagePage(Out):
    messages: list[MessageOut]
    next_before: int | None


class ScanRunOut(Out):
    id: int
    status: Literal["queued", "running", "done", "failed"]
    prompted: int
    autopay_charged: int
    held: int
    skipped: int
    # Accounts whose offer or AutoPay charge failed (logged; the scan went on), plus one for a
    # scan that failed as a whole or whose clock stopped while it ran.
    errors: int
    requested_by: str
    created_at: str
    started_at: str | None
    finished_at: str | None


class ScanRunPage(Out):
    scans: list[ScanRunOut]
    next_before: int | None


class OperatorOut(Out):
    id: int
    email: str
    name: str
    role: Literal["viewer", "agent", "admin"]
    # Sign-in is locked for a while after repeated wrong passwords.
    locked: bool
    created_at: str
    disabled_at: str | None


class OperatorCreated(OperatorOut):
    # The one-time password: shown here once, stored only as a hash.
    password: str


class OperatorList(Out):
    operators: list[OperatorOut]


class TokenOut(Out):
    id: int
    operator_id: int
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class TokenCreated(TokenOut):
    # The bearer token itself: shown here once, stored only as a hash.
    token: str


class TokenList(Out):
    tokens: list[TokenOut]


def _components() -> dict[str, Any]:
    inputs: list[type[BaseModel]] = [
        AccountCreate, AccountUpdate, UsageIn, CreditIn, CardRefundIn, SettingsPatch,
        FacilityIn, OperatorIn, TokenIn, PasscodeIn,
    ]  # fmt: skip
    outputs: list[type[BaseModel]] = [
        ProblemOut, SettingsOut, FacilityOut, FacilityList, AccountOut, AccountList,
        LedgerEntryOut, LedgerPage, CardRefundOut, CardRefundList, AuditPage, MessagePage,
        ScanRunOut, ScanRunPage, OperatorOut, OperatorCreated, OperatorList, TokenOut,
        TokenCreated, TokenList, PasscodeOut,
    ]  # fmt: skip
    validation: Literal["validation"] = "validation"
    serialization: Literal["serialization"] = "serialization"
    entries: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((m, validation) for m in inputs),
        *((m, serialization) for m in outputs),
    ]
    _, schema = models_json_schema(entries, ref_template="#/components/schemas/{model}")
    return dict(schema.get("$defs", {}))


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}


def _operation(summary: str, ok: int, out: str, *, body: str | None = None,
               params: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): {"description": "OK", "content": _json(out)},
            "default": {
                "description": "A problem (RFC 9457)",
                "content": {
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/ProblemOut"}
                    }
                },
            },
        },
    }
    if ok == 201 and out == "LedgerEntryOut":
        operation["responses"]["200"] = {"description": "A replay", "content": _json(out)}
    if body:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    if params:
        operation["parameters"] = params
    return operation


def _query(name: str, kind: str = "string", *, maximum: int = ID_MAX) -> dict[str, Any]:
    """A query parameter; an integer one is ASCII digits from 1 to `maximum` (anything else is
    a 422 validation-error problem naming it)."""
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema.update(minimum=1, maximum=maximum)
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _consent_csv() -> dict[str, Any]:
    day = {
        "type": "string",
        "format": "date",
        "description": "A UTC day, YYYY-MM-DD (both ends included).",
    }
    operation = _operation("The consent record as CSV (TCPA evidence)", 200, "ProblemOut",
                           params=[{**_query("from"), "schema": day},
                                   {**_query("to"), "schema": day}])  # fmt: skip
    operation["responses"]["200"] = {
        "description": "A header line (id, time_utc, phone, kind, words, source, account_id), "
        "then one line per consent change in the range, oldest first: phone in E.164, words as "
        "recorded",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
    return operation


def _queued_scan() -> dict[str, Any]:
    operation = _operation("Queue a low-balance scan (the clock runs it)", 202, "ScanRunOut")
    operation["responses"]["202"].update(
        description="Queued",
        headers={
            "Location": {
                "description": "The scan's own resource, `/admin/scans/{scan_id}`",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    )
    return operation


def _card_refund() -> dict[str, Any]:
    operation = _operation(
        "Refund (part of) a card deposit to its card",
        201,
        "CardRefundOut",
        body="CardRefundIn",
        params=[ACCOUNT_ID, IDEMPOTENCY_KEY],
    )
    replayed = {
        "Idempotent-Replayed": {
            "description": "`true` when this answers a replay of the Idempotency-Key",
            "required": True,
            "schema": {"type": "string", "enum": ["true", "false"]},
        }
    }
    responses = operation["responses"]
    responses["201"].update(description="Refunded to the card", headers=replayed)
    responses["200"] = {"description": "A replay of a refund made", "headers": replayed,
                        "content": _json("CardRefundOut")}  # fmt: skip
    responses["202"] = {
        "description": "The processor has not answered yet: the debit holds the money, and the "
        "reconciler finishes the refund",
        "headers": replayed,
        "content": _json("CardRefundOut"),
    }
    operation["description"] = (
        "At most the deposit's unspent part (the deposit less its refunds, and never more than "
        "the balance) goes back to the card, as a `card_refund` debit, and the subscriber gets "
        "a text. When the processor refuses, the answer is a 422 `card-refund-failed` problem "
        "with the refund as `card_refund`, and the money is back on the balance."
    )
    return operation


def _limit(maximum: int) -> dict[str, Any]:
    return _query("limit", "integer", maximum=maximum)


def _cursor(name: str) -> dict[str, Any]:
    """A page cursor (`after`, `before`): a row id, so at most `ID_MAX`."""
    return {**_query(name, "integer"), "description": f"A row id, 1 to {ID_MAX}."}


# A path id beyond ID_MAX (the id columns' range) names nothing: 404.
ACCOUNT_ID = {"name": "account_id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX}}  # fmt: skip
CODE = {"name": "code", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}  # fmt: skip
SCAN_ID = {"name": "scan_id", "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX}}  # fmt: skip
OPERATOR_ID = {"name": "operator_id", "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX}}  # fmt: skip
TOKEN_ID = {"name": "token_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX}}  # fmt: skip
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "schema": {"type": "string", "pattern": "^[!-~]{1,150}$"}}  # fmt: skip


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "TextPay admin API", "version": __version__},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _components(),
        },
        "paths": {
            "/admin/settings": {
                "get": _operation("Global defaults", 200, "SettingsOut"),
                "patch": _operation(
                    "Change global defaults", 200, "SettingsOut", body="SettingsPatch"
                ),
            },
            "/admin/facilities": {"get": _operation("Facilities", 200, "FacilityList")},
            "/admin/facilities/{code}": {
                "get": _operation("A facility", 200, "FacilityOut", params=[CODE]),
                "put": _operation(
                    "Create or replace a facility",
                    200,
                    "FacilityOut",
                    body="FacilityIn",
                    params=[CODE],
                ),
            },
            "/admin/accounts": {
                "post": _operation("Enrol an account", 201, "AccountOut", body="AccountCreate"),
                "get": _operation(
                    "Find accounts",
                    200,
                    "AccountList",
                    params=[
                        _query("phone"),
                        _query("account_number"),
                        _limit(500),
                        _cursor("after"),
                    ],
                ),
            },
            "/admin/accounts/{account_id}": {
                "get": _operation("An account", 200, "AccountOut", params=[ACCOUNT_ID]),
                "patch": _operation(
                    "Change an account",
                    200,
                    "AccountOut",
                    body="AccountUpdate",
                    params=[ACCOUNT_ID],
                ),
            },
            "/admin/accounts/{account_id}/passcode": {
                "put": _operation(
                    "Set the account's 4-digit passcode (never returned, stored hashed)",
                    200,
                    "PasscodeOut",
                    body="PasscodeIn",
                    params=[ACCOUNT_ID],
                ),
                "delete": _operation(
                    "Clear the account's passcode", 200, "PasscodeOut", params=[ACCOUNT_ID]
                ),
            },
            "/admin/accounts/{account_id}/usage": {
                "post": _operation(
                    "Debit call charges", 201, "LedgerEntryOut", body="UsageIn", params=[ACCOUNT_ID]
                ),
            },
            "/admin/accounts/{account_id}/credits": {
                "post": _operation(
                    "Credit or refund",
                    201,
                    "LedgerEntryOut",
                    body="CreditIn",
                    params=[ACCOUNT_ID, IDEMPOTENCY_KEY],
                ),
            },
            "/admin/accounts/{account_id}/card-refunds": {
                "post": _card_refund(),
                "get": _operation(
                    "Card refunds, newest first",
                    200,
                    "CardRefundList",
                    params=[ACCOUNT_ID, _limit(100)],
                ),
            },
            "/admin/accounts/{account_id}/ledger": {
                "get": _operation(
                    "Ledger entries",
                    200,
                    "LedgerPage",
                    params=[ACCOUNT_ID, _limit(1000), _cursor("before")],
                ),
            },
            "/admin/audit": {
                "get": _operation(
                    "Audit trail",
                    200,
                    "AuditPage",
                    params=[
                        _query("entity_type"),
                        _query("entity_id"),
                        _limit(1000),
                        _cursor("before"),
                    ],
                ),
            },
            "/admin/messages": {
                "get": _operation(
                    "Texts in both directions",
                    200,
                    "MessagePage",
                    params=[_query("phone"), _query("status"), _limit(1000), _cursor("before")],
                ),
            },
            "/admin/consent-events.csv": {"get": _consent_csv()},
            "/admin/scan": {"post": _queued_scan()},
            "/admin/scans": {
                "get": _operation(
                    "Recent scans, newest first",
                    200,
                    "ScanRunPage",
                    params=[_query("limit", "integer", maximum=100), _query("before", "integer")],
                ),
            },
            "/admin/scans/{scan_id}": {
                "get": _operation("A scan and its counts", 200, "ScanRunOut", params=[SCAN_ID]),
            },
            "/admin/operators": {
                "post": _operation(
                    "Add an operator (admin); answers its one-time password",
                    201,
                    "OperatorCreated",
                    body="OperatorIn",
                ),
                "get": _operation("Operators (admin)", 200, "OperatorList"),
            },
            "/admin/operators/{operator_id}/disable": {
                "post": _operation(
                    "Disable an operator (admin): its tokens and sign-in stop working",
                    200,
                    "OperatorOut",
                    params=[OPERATOR_ID],
                ),
            },
            "/admin/tokens": {
                "post": _operation(
                    "Mint an API token for the calling operator (with TEXTPAY_ADMIN_TOKEN: for "
                    "`operator_id`); answers the token, once",
                    201,
                    "TokenCreated",
                    body="TokenIn",
                ),
                "get": _operation(
                    "The calling operator's tokens (an admin may name `operator_id`)",
                    200,
                    "TokenList",
                    params=[_cursor("operator_id")],
                ),
            },
            "/admin/tokens/{token_id}": {
                "delete": _operation(
                    "Revoke a token (your own; an admin any)", 200, "TokenOut", params=[TOKEN_ID]
                ),
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
