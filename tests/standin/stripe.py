"""A local stand-in for Stripe's API, over real HTTP on 127.0.0.1, driven by the real `stripe` SDK.

Point `stripe.StripeClient(key, base_addresses={"api": standin.url}, ...)` at it. It answers the
operations a card-on-file gateway uses (customers, payment methods and attach, payment intents
create/retrieve/list/search, refunds, events, Checkout Sessions in setup mode and their
SetupIntents) with objects built from Stripe's own example objects
(`fixtures/stripe/fixtures3.json`), and it refuses, with 400 and Stripe's error shape, any request
that Stripe's OpenAPI description (`fixtures/stripe/stripe-api-2024-04-10.trimmed.json`) does not
accept, before changing anything.

What it does as Stripe does:
- `Authorization: Bearer sk_test_...` on every request, else 401.
- Idempotency: a POST's `Idempotency-Key` keeps the request and its answer (for 24 hours, or until
  `expire_keys()`); the same key and request get the same answer again, byte for byte, with
  `Idempotent-Replayed: true`, declines included; the same key with other parameters (or another
  endpoint) gets 400 `idempotency_error`; the same key while the first request is still being
  answered gets 409. A request refused by validation keeps no key (Stripe saves no result then).
- Test payment methods (`TEST_CARDS`): `pm_card_visa` succeeds, `pm_card_chargeDeclined...`
  answer 402 card errors, `pm_card_authenticationRequired` answers 402 `authentication_required`
  as an off-session confirm does. Two are the stand-in's own: `pm_card_slow` (the payment is made
  when the request arrives, the answer comes `slow_seconds` later, or at `release()`) and
  `pm_card_processing` (status `processing` until `finish()`); and Stripe's
  `pm_card_pendingRefund` succeeds, but its refunds are `pending` until `finish_refund()`. Using
  or attaching a test payment method makes a new `pm_...` object, as Stripe does; that id keeps
  the test card's behaviour.
- Webhook events, built from the example `event`, signed with `webhook_secret` like Stripe's
  (`Stripe-Signature: t=...,v1=...`), posted to `webhook_url` (pretty-printed JSON, as Stripe
  sends it, so a receiver must verify the raw bytes): `payment_intent.succeeded` /
  `payment_intent.payment_failed` at `finish()`, `charge.refunded` after a refund,
  `charge.refund.updated` at `finish_refund()`,
  `charge.dispute.created` / `charge.dispute.closed` at `dispute()` / `close_dispute()`,
  `checkout.session.completed` at `complete_checkout(session_id, payment_method)` (the card
  holder saving a card on the session's page, `<url>/checkout/<id>`, which a browser can also
  use: a form of the test cards, no script), and any `deliver(type, obj)`. Events that API
  calls cause are posted from a thread after the answer.

Run it in a thread from tests (`StripeStandIn(...).start()`), or as a process:
`python -m tests.standin.stripe --port 0 --webhook-url URL --webhook-secret S`. The process takes
test controls as JSON POSTs under `/_` (`/_finish`, `/_finish_refund`, `/_dispute`,
`/_close_dispute`, `/_complete_checkout {"session": id, "payment_method": pm}`, `/_expire_keys`,
`/_release`, `/_redeliver {"event": id}`) and tells what it
posted to the webhook URL at `GET /_deliveries`. The request log names methods, paths (object ids
written `{id}`) and statuses only.
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import html
import http.client
import json
import re
import secrets
import string
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from jsonschema.exceptions import ValidationError, best_match
from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.schemas import oas30_write_schema_validators_factory
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
SPEC_FILE = FIXTURES / "stripe-api-2024-04-10.trimmed.json"
EXAMPLES_FILE = FIXTURES / "fixtures3.json"
API_VERSION = "2024-04-10"
SPEC_SERVER = "https://api.stripe.com"
IDEMPOTENCY_TTL = 24 * 3600
# Where a Checkout Session's page is, on the stand-in's own origin (`<url>/checkout/<id>`).
CHECKOUT_PAGE = "/checkout/"
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class TestCard:
    """A test payment method: the card it stands for and what charging it does."""

    __test__ = False  # not a pytest test class

    brand: str
    last4: str
    outcome: str  # "succeeded", "declined", "slow" or "processing"
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    exp_month: int = 12
    exp_year: int = 2034
    funding: str = "credit"
    # What a refund of its charge is at first: "succeeded", or "pending" until `finish_refund`.
    refund: str = "succeeded"


_DECLINED = "Your card was declined."
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242", "succeeded"),
    "pm_card_mastercard": TestCard("mastercard", "4444", "succeeded"),
    "pm_card_chargeDeclined": TestCard(
        "visa", "0002", "declined", "card_declined", "generic_decline", _DECLINED
    ),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa",
        "9995",
        "declined",
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", "declined", "expired_card", "expired_card", "Your card has expired."
    ),
    "pm_card_chargeDeclinedLostCard": TestCard(
        "visa", "9987", "declined", "card_declined", "lost_card", _DECLINED
    ),
    "pm_card_authenticationRequired": TestCard(
        "visa",
        "3184",
        "declined",
        "authentication_required",
        None,
        "Your card was declined. This transaction requires authentication.",
    ),
    "pm_card_slow": TestCard("visa", "3220", "slow"),
    "pm_card_processing": TestCard("visa", "1881", "processing"),
    # Stripe's own test card whose refunds start `pending` (a card refund not finished yet);
    # here they stay pending until `finish_refund()`.
    "pm_card_pendingRefund": TestCard("visa", "7726", "succeeded", refund="pending"),
}


@dataclass
class RecordedRequest:
    """One request as the stand-in received it. `params`: the query (GET) or form body (POST),
    nested (`metadata[k]=v` is `{"metadata": {"k": "v"}}`) and, once it validated, typed as the
    spec says (`amount` an int, `confirm` a bool, `expand[0]` a list)."""

    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    replayed: bool = False
    status: int = 0


@dataclass
class Delivery:
    """One post of an event to the webhook URL; `status` 0 when no answer came."""

    event_id: str
    type: str
    status: int


class StripeError(Exception):
    """An answer in Stripe's error shape."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": type_,
                "message": message,
                **{k: v for k, v in extra.items() if v is not None},
            }
        }


def _invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def _missing(kind: str, ident: str, param: str | None, status: int = 400) -> StripeError:
    return StripeError(
        status,
        "invalid_request_error",
        f"No such {kind}: '{ident}'",
        param=param,
        code="resource_missing",
        doc_url="https://stripe.com/docs/error-codes/resource-missing",
    )


@dataclass
class _Reply:
    status: int
    body: dict[str, Any]
    slow: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Kept:
    """What an idempotency key remembers."""

    method: str
    path: str
    params: dict[str, Any]
    at: float
    status: int = 0
    body: bytes = b""
    done: bool = False


@functools.cache
def _spec() -> tuple[dict[str, Any], SchemaPath, APICallPathFinder]:
    """Stripe's description, read once per process (about 0.7 s)."""
    raw = json.loads(SPEC_FILE.read_text())
    api = OpenAPI.from_dict(raw)
    return raw, api.spec, APICallPathFinder(api.spec)


@functools.cache
def _examples() -> dict[str, Any]:
    resources: dict[str, Any] = json.loads(EXAMPLES_FILE.read_text())["resources"]
    return resources


@functools.cache
def _validator(operation_id: str, where: str) -> Any:
    """An openapi-core schema validator for one operation's form body or query parameters
    (Stripe's request schemas hold no `$ref`, so each stands alone)."""
    schema = _params_schema(_operation(operation_id), where)
    return oas30_write_schema_validators_factory.create(_spec()[1], SchemaPath.from_dict(schema))


def _params_schema(operation: dict[str, Any], where: str) -> dict[str, Any]:
    """The JSON schema of an operation's form body ("body") or query parameters ("query")."""
    if where == "body":
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/x-www-form-urlencoded", {}).get("schema")
        return schema or {"type": "object", "additionalProperties": False, "properties": {}}
    query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {p["name"]: p["schema"] for p in query},
    }
    required = [p["name"] for p in query if p.get("required")]
    if required:
        schema["required"] = required
    return schema


@functools.cache
def _operation(operation_id: str) -> dict[str, Any]:
    raw, _, _ = _spec()
    for item in raw["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return operation
    raise KeyError(operation_id)


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


# -- form and query decoding ----------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_nested(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracketed form keys: `metadata[k]=v` → {"metadata": {"k": "v"}},
    `expand[]=a&expand[]=b` and `expand[0]=a` → {"expand": {"0": "a", ...}} (made a list when
    the schema says array). Raises StripeError for keys that contradict each other."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        matched = _KEY.match(key)
        parts = [key] if not matched else [matched[1], *re.findall(r"\[([^\[\]]*)\]", matched[2])]
        node = root
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                raise _invalid(f"Invalid request: conflicting parameters ({key})", param=key)
            name = part if part != "" else str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(name), dict):
                    raise _invalid(f"Invalid request: conflicting parameters ({key})", param=key)
                node[name] = value
            else:
                node = node.setdefault(name, {})
    return root


def _schema_types(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema.get("anyOf") or schema.get("oneOf") or [schema])


def coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Give form strings the types the schema asks for ("100" → 100, "true" → True, a dict of
    numbered keys → a list), trying each `anyOf` alternative in order. What fits no alternative
    is left as it was, for the validator to refuse."""
    for alternative in _schema_types(schema):
        kind = alternative.get("type")
        if isinstance(value, str):
            if kind == "integer" and re.fullmatch(r"-?\d+", value):
                return int(value)
            if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
                return float(value)
            if kind == "boolean" and value in ("true", "false"):
                return value == "true"
            if kind == "string" and value in alternative.get("enum", [value]):
                return value
        elif isinstance(value, dict):
            if kind == "array" and all(k.isdigit() for k in value):
                items = alternative.get("items", {})
                return [coerce(value[k], items) for k in sorted(value, key=int)]
            if kind == "object":
                properties = alternative.get("properties", {})
                extra = alternative.get("additionalProperties")
                extra = extra if isinstance(extra, dict) else {}
                return {k: coerce(v, properties.get(k, extra)) for k, v in value.items()}
    return value


def _param_name(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return parts[0] + "".join(f"[{p}]" for p in parts[1:]) if parts else ""


def _refusal(error: ValidationError) -> StripeError:
    """Stripe's wording for what the schema validator found, with `param` in bracket form."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        param = _param_name([*where, unknown[0] if unknown else "?"])
        return _invalid(
            f"Received unknown parameter: {param}", param=param, code="parameter_unknown"
        )
    if error.validator == "required":
        missing = re.match(r"'([^']+)'", error.message)
        param = _param_name([*where, missing[1] if missing else "?"])
        return _invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")
    param = _param_name(where)
    shown = error.instance if not isinstance(error.instance, (dict, list)) else "(a hash)"
    if error.validator == "type":
        expected = {
            "integer": "integer",
            "boolean": "boolean",
            "string": "string",
            "object": "hash",
            "array": "array",
            "number": "number",
        }
        kind = error.validator_value if isinstance(error.validator_value, str) else "value"
        return _invalid(f"Invalid {expected.get(kind, kind)}: {shown}", param=param)
    if error.validator == "enum":
        choices = [str(c) for c in error.validator_value if c != ""]
        return _invalid(f"Invalid {param}: must be one of {', '.join(choices)}", param=param)
    if error.validator == "maxLength":
        return _invalid(
            f"Invalid string: {str(shown)[:40]}...; must be at most "
            f"{error.validator_value} characters",
            param=param,
        )
    return _invalid(f"Invalid {param or 'request'}: {error.message}", param=param or None)


def validate(operation_id: str, where: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params typed as the operation's schema says, or StripeError 400 when Stripe's
    description refuses them (unknown parameter, wrong type, missing required, bad enum)."""
    schema = _params_schema(_operation(operation_id), where)
    typed = coerce(params, schema)
    try:
        _validator(operation_id, where).validate(typed)
    except InvalidSchemaValue as refused:
        raise _refusal(best_match(refused.schema_errors)) from None
    return typed


# -- the server -----------------------------------------------------------------------------


# An object id in a path (`pm_card_visa`, `pm_1Nx...`, `cus_...`, `pi_...`): the segment starts
# with a short prefix and an underscore, which no collection or action name does
# (`payment_methods` has seven letters before its underscore), but for `setup_intents`.
_ID_SEGMENT = re.compile(r"(?<=/)(?!setup_intents(?:/|$))[a-z]{1,6}_[^/]*")


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler, logging the method, the path and the status only, object ids
    in the path written `{id}`: the log of an end-to-end run is searched for payment method and
    customer ids like every other process's, and it must show what was asked, not of whom."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = _ID_SEGMENT.sub("{id}", urllib.parse.urlsplit(self.path).path)
        printable = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in path)
        self.log("info", '"%s %s" %s', self.command, printable, getattr(code, "value", code))


class StripeStandIn:
    def __init__(
        self,
        *,
        webhook_secret: str = "whsec_test_standin",  # noqa: S107 (a test secret)
        webhook_url: str | None = None,
        slow_seconds: float = 5.0,
        api_key: str | None = None,
        search_lag: float = 0.0,
    ) -> None:
        """`api_key`: when set, the only key accepted (else any `sk_test_...`). `search_lag`:
        seconds before a new payment intent shows in search (Stripe's search is not
        read-after-write; 0 here unless a test wants to see that)."""
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.slow_seconds = slow_seconds
        self.api_key = api_key
        self.search_lag = search_lag
        self.requests: list[RecordedRequest] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self._cards: dict[str, str] = {}  # pm id -> its TEST_CARDS name
        self._searchable_at: dict[str, float] = {}  # pi id -> when search finds it
        self._keys: dict[tuple[str, str], _Kept] = {}
        self._payloads: dict[str, bytes] = {}  # event id -> the bytes posted
        self._slow_gates: list[threading.Event] = []
        self._lock = threading.RLock()
        self._delivered = threading.Condition(self._lock)
        self._server: BaseWSGIServer | None = None
        self.port = 0
        _spec()  # load the description now, not during the first request

    # -- lifecycle --

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> StripeStandIn:
        self._server = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=_Handler
        )
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- test controls --

    def expire_keys(self) -> None:
        """Forget every idempotency key, as Stripe does after 24 hours."""
        with self._lock:
            self._keys.clear()

    def release(self) -> None:
        """Answer the slow requests in flight now, without waiting out `slow_seconds`."""
        with self._lock:
            gates, self._slow_gates = self._slow_gates, []
        for gate in gates:
            gate.set()

    def in_flight(self) -> int:
        """How many idempotent requests are being answered (a slow card's, say)."""
        with self._lock:
            return sum(1 for kept in self._keys.values() if not kept.done)

    def sent(self, path: str, method: str = "POST") -> list[RecordedRequest]:
        """The requests to `path` (exact), in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def finish(self, pi_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        """End a `processing` payment: `succeeded`, or failed for insufficient funds (status
        `requires_payment_method`); delivers the event (when a webhook URL is set) and returns the
        payment intent."""
        with self._lock:
            intent = self.payment_intents[pi_id]
            if intent["status"] != "processing":
                raise ValueError(f"{pi_id} is {intent['status']}, not processing")
            charge = self.charges[intent["latest_charge"]]
            if succeeded:
                self._succeed(intent, charge)
                kind = "payment_intent.succeeded"
            else:
                card = TestCard(
                    "visa",
                    "1881",
                    "declined",
                    "card_declined",
                    "insufficient_funds",
                    "Your card has insufficient funds.",
                )
                self._decline(intent, charge, card)
                kind = "payment_intent.payment_failed"
            intent = copy.deepcopy(intent)
        self._send(kind, intent, None)
        return intent

    def finish_refund(self, refund_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        """End a `pending` refund: `succeeded`, or `failed` (`expired_or_canceled_card`: the
        money goes back to the merchant, so the charge's `amount_refunded` drops again);
        delivers `charge.refund.updated` (when a webhook URL is set) and returns the refund."""
        with self._lock:
            refund = self.refunds[refund_id]
            if refund["status"] != "pending":
                raise ValueError(f"{refund_id} is {refund['status']}, not pending")
            charge = self.charges[refund["charge"]]
            if succeeded:
                refund["status"] = "succeeded"
            else:
                refund.update(status="failed", failure_reason="expired_or_canceled_card")
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            charge["refunds"]["data"] = [
                copy.deepcopy(refund) if kept["id"] == refund_id else kept
                for kept in charge["refunds"]["data"]
            ]
            refund = copy.deepcopy(refund)
        self._send("charge.refund.updated", refund, None)
        return refund

    def dispute(self, pi_id: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputes a payment: a dispute (status `needs_response`) and the
        `charge.dispute.created` event."""
        with self._lock:
            intent = self.payment_intents[pi_id]
            charge = self.charges[intent["latest_charge"]]
            if charge["status"] != "succeeded":
                raise ValueError(f"{pi_id} has no successful charge to dispute")
            card = charge["payment_method_details"]["card"]
            item = copy.deepcopy(_examples()["dispute"])
            now = int(time.time())
            item.update(
                id=_random_id("dp_"),
                amount=charge["amount"],
                charge=charge["id"],
                currency=charge["currency"],
                payment_intent=pi_id,
                created=now,
                reason=reason,
                status="needs_response",
                is_charge_refundable=False,
                metadata={},
                balance_transactions=[],
            )
            item["evidence_details"].update(
                due_by=now + 7 * 86400, has_evidence=False, past_due=False, submission_count=0
            )
            item["payment_method_details"]["card"].update(
                brand=card["brand"], network=card["brand"], case_type="chargeback"
            )
            charge["disputed"] = True
            self.disputes[item["id"]] = item
            item = copy.deepcopy(item)
        self._send("charge.dispute.created", item, None)
        return item

    def close_dispute(self, dispute_id: str, status: str = "lost") -> dict[str, Any]:
        """The dispute ends `lost` or `won`: the `charge.dispute.closed` event."""
        if status not in ("lost", "won"):
            raise ValueError(status)
        with self._lock:
            item = self.disputes[dispute_id]
            item["status"] = status
            item = copy.deepcopy(item)
        self._send("charge.dispute.closed", item, None)
        return item

    def complete_checkout(
        self, session_id: str, payment_method: str = "pm_card_mastercard"
    ) -> dict[str, Any]:
        """The card holder types a card on a setup-mode Checkout page and saves it: the
        session's SetupIntent succeeds with a new payment method (made from the test payment
        method's name, as Stripe makes a `pm_...` for the card typed) attached to the session's
        customer; the session is `complete`; `checkout.session.completed` is delivered (when a
        webhook URL is set). Returns the session."""
        if payment_method not in TEST_CARDS:
            raise ValueError(f"{payment_method} is not a test payment method")
        with self._lock:
            checkout = self.checkout_sessions[session_id]
            if checkout["status"] != "open":
                raise ValueError(f"{session_id} is {checkout['status']}, not open")
            method = self._payment_method(payment_method, "payment_method", 400)
            method["customer"] = checkout["customer"]
            intent = self.setup_intents[checkout["setup_intent"]]
            intent.update(
                status="succeeded",
                payment_method=method["id"],
                customer=checkout["customer"],
                latest_attempt=_random_id("setatt_"),
            )
            checkout.update(status="complete")
            checkout = _public(checkout)
        self._send("checkout.session.completed", checkout, None)
        return checkout

    # -- webhook events --

    def sign(self, payload: bytes | str, timestamp: int | None = None) -> str:
        """The `Stripe-Signature` header for a payload, signed with `webhook_secret`."""
        text = payload.decode() if isinstance(payload, bytes) else payload
        header: str = stripe.WebhookSignature.generate_signature_header(
            text, self.webhook_secret, timestamp=timestamp
        )
        return header

    def new_event(
        self, type_: str, obj: dict[str, Any], request: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An event shaped like Stripe's (from the example `event`), not kept or sent."""
        event = copy.deepcopy(_examples()["event"])
        event.update(
            id=_random_id("evt_"),
            type=type_,
            created=int(time.time()),
            api_version=API_VERSION,
            livemode=False,
            pending_webhooks=1 if self.webhook_url else 0,
            data={"object": copy.deepcopy(obj)},
            request=request or {"id": None, "idempotency_key": None},
        )
        return _shaped("event", event)

    def event(
        self, type_: str, obj: dict[str, Any], *, timestamp: int | None = None
    ) -> tuple[bytes, str]:
        """A new signed event: (payload, Stripe-Signature header). Not kept or sent."""
        payload = _dumps(self.new_event(type_, obj))
        return payload, self.sign(payload, timestamp)

    def deliver(self, type_: str, obj: dict[str, Any]) -> int:
        """Make an event, keep it (`events`) and post it to `webhook_url`: the HTTP status."""
        if not self.webhook_url:
            raise RuntimeError("no webhook_url to deliver to")
        event = self._keep_event(self.new_event(type_, obj))
        return self._post(event["id"])

    def redeliver(self, event_id: str) -> int:
        """Post a kept event again: the same bytes, a fresh signature. The HTTP status."""
        return self._post(event_id)

    def wait_for_delivery(self, type_: str, timeout: float = 5.0) -> Delivery:
        """The first delivery of an event of `type_`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._delivered:
            while True:
                for delivery in self.deliveries:
                    if delivery.type == type_:
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {type_} delivered in {timeout} s")
                self._delivered.wait(left)

    def _keep_event(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.events.append(event)
            self._payloads[event["id"]] = _dumps(event)
        return event

    def _send(self, type_: str, obj: dict[str, Any], request: dict[str, Any] | None) -> None:
        """Keep an event and post it now, when a webhook URL is set."""
        event = self._keep_event(self.new_event(type_, obj, request))
        if self.webhook_url:
            self._post(event["id"])

    def _post(self, event_id: str) -> int:
        url = self.webhook_url
        if not url:
            raise RuntimeError("no webhook_url to deliver to")
        with self._lock:
            payload = self._payloads[event_id]
            kind = next(e["type"] for e in self.events if e["id"] == event_id)
        request = urllib.request.Request(
            url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": self.sign(payload),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as failure:
            status = failure.code
        except (OSError, http.client.HTTPException):
            status = 0
        with self._delivered:
            self.deliveries.append(Delivery(event_id, kind, status))
            self._delivered.notify_all()
        return status

    # -- HTTP --

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_"):
            response = self._control(request)
        elif request.path.startswith(CHECKOUT_PAGE):
            response = self._checkout_page(request)
        else:
            response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key")
        method = request.method.upper()
        try:
            raw = parse_nested(
                request.args.items(multi=True)
                if method != "POST"
                else request.form.items(multi=True)
            )
        except StripeError as refused:
            raw = {}
            parse_error: StripeError | None = refused
        else:
            parse_error = None
        recorded = RecordedRequest(method, request.path, raw, key if method == "POST" else None)
        with self._lock:
            self.requests.append(recorded)
        response = self._respond(request, recorded, parse_error)
        recorded.status = response.status_code
        return response

    def _respond(
        self, request: Request, recorded: RecordedRequest, parse_error: StripeError | None
    ) -> Response:
        request_id = _random_id("req_", 14)
        try:
            api_key = self._authenticate(request)
            operation_id, variables = self._route(request)
            if parse_error is not None:
                raise parse_error
            where = "body" if recorded.method == "POST" else "query"
            typed = validate(operation_id, where, recorded.params)
            recorded.params = typed
        except StripeError as refused:
            return _response(refused.status, _dumps(refused.body), request_id)
        if recorded.method != "POST" or not recorded.idempotency_key:
            reply = self._run(operation_id, variables, typed, request_id, None)
            return self._finish_reply(reply, request_id, None, None)
        key = recorded.idempotency_key
        slot = (api_key, key)
        with self._lock:
            kept = self._keys.get(slot)
            if kept is not None and time.time() - kept.at > IDEMPOTENCY_TTL:
                kept = None
            if kept is not None:
                if (kept.method, kept.path) != (recorded.method, recorded.path):
                    refused = StripeError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used for the same endpoint "
                        f"they were first used for ('{kept.method} {kept.path}' vs "
                        f"'{recorded.method} {recorded.path}'). Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                    )
                    return _response(400, _dumps(refused.body), request_id, key)
                if kept.params != typed:
                    refused = StripeError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                    )
                    return _response(400, _dumps(refused.body), request_id, key)
                if not kept.done:
                    refused = StripeError(
                        409,
                        "invalid_request_error",
                        "There is currently another in-progress request using this Idempotent "
                        "Key (that probably means you submitted twice, and the other request is "
                        f"still going through): {key}. Please try again later.",
                        code="idempotency_key_in_use",
                    )
                    return _response(409, _dumps(refused.body), request_id, key)
                recorded.replayed = True
                replay = _response(kept.status, kept.body, request_id, key)
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
            kept = _Kept(recorded.method, recorded.path, typed, time.time())
            self._keys[slot] = kept
        reply = self._run(operation_id, variables, typed, request_id, key)
        return self._finish_reply(reply, request_id, kept, key)

    def _run(
        self,
        operation_id: str,
        variables: dict[str, str],
        params: dict[str, Any],
        request_id: str,
        key: str | None,
    ) -> _Reply:
        handler: Callable[[dict[str, str], dict[str, Any]], _Reply] | None = getattr(
            self, f"_op_{operation_id}", None
        )
        try:
            if handler is None:
                raise _invalid(f"The Stripe stand-in does not answer {operation_id}.")
            with self._lock:
                reply = handler(variables, params)
        except StripeError as refused:
            reply = _Reply(refused.status, refused.body)
        except Exception:  # a bug in the stand-in: a 500 as Stripe's (kept under the key too)
            traceback.print_exc()
            reply = _Reply(500, {"error": {"type": "api_error", "message": "Stand-in failure."}})
        if reply.events:
            origin = {"id": request_id, "idempotency_key": key}
            events, reply.events = reply.events, []

            def send() -> None:
                time.sleep(0.05)  # after the answer, as Stripe's webhooks are asynchronous
                for type_, obj in events:
                    self._send(type_, obj, origin)

            threading.Thread(target=send, daemon=True).start()
        return reply

    def _finish_reply(
        self, reply: _Reply, request_id: str, kept: _Kept | None, key: str | None
    ) -> Response:
        body = _dumps(reply.body)
        if reply.slow:
            gate = threading.Event()
            with self._lock:
                self._slow_gates.append(gate)
            gate.wait(self.slow_seconds)
        if kept is not None:
            with self._lock:
                kept.status, kept.body, kept.done = reply.status, body, True
        return _response(reply.status, body, request_id, key)

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            raise StripeError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        if (
            scheme.lower() != "bearer"
            or not key.startswith("sk_test_")
            or (self.api_key is not None and key != self.api_key)
        ):
            shown = key[:8] + "*" * (len(key) - 12) + key[-4:] if len(key) > 12 else "***"
            raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
        return key

    def _route(self, request: Request) -> tuple[str, dict[str, str]]:
        _, _, finder = _spec()
        try:
            found = finder.find(request.method.lower(), SPEC_SERVER + request.path)
        except (PathNotFound, OperationNotFound):
            raise StripeError(
                404,
                "invalid_request_error",
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            ) from None
        operation_id = (found.operation / "operationId").read_str()
        return operation_id, dict(found.path_result.variables)

    def _control(self, request: Request) -> Response:
        """Test controls for process mode (JSON in, JSON out)."""
        body = request.get_json(silent=True) or {}
        try:
            if request.path == "/_finish":
                result: Any = self.finish(
                    body["payment_intent"], succeeded=body.get("succeeded", True)
                )
            elif request.path == "/_finish_refund":
                result = self.finish_refund(body["refund"], succeeded=body.get("succeeded", True))
            elif request.path == "/_dispute":
                result = self.dispute(body["payment_intent"], body.get("reason", "fraudulent"))
            elif request.path == "/_close_dispute":
                result = self.close_dispute(body["dispute"], body.get("status", "lost"))
            elif request.path == "/_expire_keys":
                self.expire_keys()
                result = {"ok": True}
            elif request.path == "/_release":
                self.release()
                result = {"ok": True}
            elif request.path == "/_complete_checkout":
                result = self.complete_checkout(
                    body["session"], body.get("payment_method", "pm_card_mastercard")
                )
            elif request.path == "/_redeliver":
                result = {"status": self.redeliver(body["event"])}
            elif request.path == "/_deliveries":  # a GET; also how a test sees it is up
                with self._lock:
                    result = {"deliveries": [vars(d) for d in self.deliveries]}
            else:
                return _response(404, _dumps({"error": "unknown control"}), "")
        except (KeyError, ValueError) as failure:
            return _response(400, _dumps({"error": repr(failure)}), "")
        return _response(200, _dumps(result), "")

    # -- operations (called with the lock held) --

    def _op_PostCustomers(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        customer = copy.deepcopy(_examples()["customer"])
        metadata = params.get("metadata")
        customer.update(
            id=_random_id("cus_", 14),
            created=int(time.time()),
            address=None,
            currency=None,
            discount=None,
            shipping=None,
            invoice_prefix="".join(secrets.choice(string.ascii_uppercase) for _ in range(8)),
            description=params.get("description"),
            email=params.get("email"),
            name=params.get("name"),
            phone=params.get("phone"),
            metadata=metadata if isinstance(metadata, dict) else {},
        )
        _check_metadata(customer["metadata"])
        customer = _shaped("customer", customer)
        self.customers[customer["id"]] = customer
        return _Reply(200, self._expand(customer, params))

    def _op_GetCustomersCustomer(self, path: dict[str, str], params: dict[str, Any]) -> _Reply:
        customer = self.customers.get(path["customer"])
        if customer is None:
            raise _missing("customer", path["customer"], "id", 404)
        return _Reply(200, self._expand(customer, params))

    def _op_GetPaymentMethodsPaymentMethod(
        self, path: dict[str, str], params: dict[str, Any]
    ) -> _Reply:
        method = self._payment_method(path["payment_method"], "payment_method", 404)
        return _Reply(200, self._expand(method, params))

    def _op_PostPaymentMethodsPaymentMethodAttach(
        self, path: dict[str, str], params: dict[str, Any]
    ) -> _Reply:
        pm_id = path["payment_method"]
        if pm_id not in self.payment_methods and pm_id not in TEST_CARDS:
            raise _missing("PaymentMethod", pm_id, "payment_method", 404)
        if params["customer"] not in self.customers:
            raise _missing("customer", params["customer"], "customer")
        method = self._payment_method(pm_id, "payment_method", 404)
        if method["customer"] not in (None, params["customer"]):
            raise _invalid(
                "The payment method you provided has already been attached to a customer.",
                param="payment_method",
            )
        method["customer"] = params["customer"]
        return _Reply(200, self._expand(method, params))

    def _op_GetCustomersCustomerPaymentMethods(
        self, path: dict[str, str], params: dict[str, Any]
    ) -> _Reply:
        if path["customer"] not in self.customers:
            raise _missing("customer", path["customer"], "customer", 404)
        found = [
            m
            for m in reversed(self.payment_methods.values())
            if m["customer"] == path["customer"] and params.get("type", m["type"]) == m["type"]
        ]
        url = f"/v1/customers/{path['customer']}/payment_methods"
        return _Reply(200, self._page(found, params, url))

    def _op_PostPaymentIntents(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        amount = params["amount"]
        if amount < 50:
            raise _invalid(
                "Amount must be at least $0.50 usd", param="amount", code="amount_too_small"
            )
        if amount > 99_999_999:
            raise _invalid(
                "Amount must be no more than $999,999.99", param="amount", code="amount_too_large"
            )
        currency = params["currency"].lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _invalid(f"Invalid currency: {params['currency']}", param="currency")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            raise _missing("customer", customer, "customer")
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        _check_metadata(metadata)
        _check_descriptor(params.get("statement_descriptor_suffix"))
        if params.get("confirm") and not params.get("payment_method"):
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                param="payment_method",
                code="payment_intent_unexpected_state",
            )
        method = None
        if params.get("payment_method"):
            method = self._payment_method(params["payment_method"], "payment_method", 400)
            if method["customer"] not in (None, customer):
                raise _invalid(
                    "The provided PaymentMethod belongs to a different Customer. "
                    "Pass that Customer's id as `customer`.",
                    param="payment_method",
                )
        intent = copy.deepcopy(_examples()["payment_intent"])
        pi_id = _random_id("pi_")
        intent.update(
            id=pi_id,
            amount=amount,
            currency=currency,
            customer=customer,
            description=params.get("description"),
            metadata=dict(metadata),
            created=int(time.time()),
            client_secret=f"{pi_id}_secret_{_random_id('', 25)}",
            payment_method=method["id"] if method else None,
            statement_descriptor=params.get("statement_descriptor"),
            statement_descriptor_suffix=params.get("statement_descriptor_suffix"),
            receipt_email=params.get("receipt_email"),
            setup_future_usage=params.get("setup_future_usage"),
            capture_method=params.get("capture_method", "automatic"),
            confirmation_method=params.get("confirmation_method", "automatic"),
            payment_method_types=params.get("payment_method_types", ["card"]),
            automatic_payment_methods=None
            if "payment_method_types" in params
            else {"allow_redirects": "always", "enabled": True},
            canceled_at=None,
            cancellation_reason=None,
            last_payment_error=None,
            latest_charge=None,
            next_action=None,
            processing=None,
            shipping=None,
            transfer_data=None,
            payment_method_configuration_details=None,
            amount_received=0,
            amount_capturable=0,
            status="requires_payment_method" if method is None else "requires_confirmation",
        )
        intent = _shaped("payment_intent", intent)
        self._searchable_at[pi_id] = time.time() + self.search_lag
        self.payment_intents[pi_id] = intent
        if not params.get("confirm") or method is None:
            return _Reply(200, self._expand(intent, params))
        card = TEST_CARDS[self._cards[method["id"]]]
        charge = self._charge(intent, method, card)
        if card.outcome == "declined":
            self._decline(intent, charge, card)
            return _Reply(402, _card_error(intent))
        if card.outcome == "processing":
            intent["status"] = "processing"
            charge.update(
                status="pending", paid=False, captured=False, amount_captured=0, outcome=None
            )
            return _Reply(200, self._expand(intent, params))
        self._succeed(intent, charge)
        return _Reply(200, self._expand(intent, params), slow=card.outcome == "slow")

    def _op_GetPaymentIntentsIntent(self, path: dict[str, str], params: dict[str, Any]) -> _Reply:
        intent = self.payment_intents.get(path["intent"])
        if intent is None:
            raise _missing("payment_intent", path["intent"], "intent", 404)
        return _Reply(200, self._expand(intent, params))

    def _op_GetPaymentIntents(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        created = params.get("created")
        found = []
        for intent in reversed(self.payment_intents.values()):
            if params.get("customer", intent["customer"]) != intent["customer"]:
                continue
            if isinstance(created, int) and intent["created"] != created:
                continue
            if isinstance(created, dict) and not _in_range(intent["created"], created):
                continue
            found.append(intent)
        return _Reply(200, self._page(found, params, "/v1/payment_intents"))

    def _op_GetPaymentIntentsSearch(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        matches = _search_query(params["query"])
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise _invalid("Invalid limit: must be between 1 and 100", param="limit")
        offset = 0
        if params.get("page"):
            try:
                offset = int(base64.urlsafe_b64decode(params["page"].encode()).decode())
            except ValueError:
                raise _invalid("Invalid page token.", param="page") from None
        now = time.time()
        found = [
            i
            for i in reversed(self.payment_intents.values())
            if self._searchable_at[i["id"]] <= now and matches(i)
        ]
        chosen = found[offset : offset + limit]
        more = offset + limit < len(found)
        token = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        expand = [
            e.removeprefix("data.") for e in params.get("expand", []) if e.startswith("data.")
        ]
        return _Reply(
            200,
            {
                "object": "search_result",
                "data": [self._expand(i, {"expand": expand}) for i in chosen],
                "has_more": more,
                "next_page": token if more else None,
                "url": "/v1/payment_intents/search",
            },
        )

    def _op_PostRefunds(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        if params.get("charge"):
            charge = self.charges.get(params["charge"])
            if charge is None:
                raise _missing("charge", params["charge"], "charge")
            intent = self.payment_intents.get(charge["payment_intent"] or "")
        elif params.get("payment_intent"):
            intent = self.payment_intents.get(params["payment_intent"])
            if intent is None:
                raise _missing("payment_intent", params["payment_intent"], "payment_intent")
            charge = self.charges.get(intent["latest_charge"] or "")
        else:
            raise _invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                param="payment_intent",
            )
        if charge is None or charge["status"] != "succeeded":
            name = intent["id"] if intent else params.get("charge")
            raise _invalid(
                f"This PaymentIntent ({name}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        if charge.get("disputed"):
            raise _invalid(
                f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        left = charge["amount"] - charge["amount_refunded"]
        if left <= 0:
            raise _invalid(
                f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = params.get("amount", left)
        if amount < 1:
            raise _invalid("Invalid positive integer", param="amount")
        if amount > left:
            raise _invalid(
                f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount "
                f"on charge (${left / 100:.2f})",
                param="amount",
                code="amount_too_large",
            )
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        _check_metadata(metadata)
        refund = copy.deepcopy(_examples()["refund"])
        refund.update(
            id=_random_id("re_"),
            amount=amount,
            charge=charge["id"],
            payment_intent=charge["payment_intent"],
            currency=charge["currency"],
            created=int(time.time()),
            metadata=dict(metadata),
            reason=params.get("reason"),
            status=self._card_of(charge).refund,
            balance_transaction=_random_id("txn_"),
        )
        refund = _shaped("refund", refund)
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
        charge["refunds"]["total_count"] = len(charge["refunds"]["data"])
        return _Reply(
            200, self._expand(refund, params), events=[("charge.refunded", copy.deepcopy(charge))]
        )

    def _op_GetRefundsRefund(self, path: dict[str, str], params: dict[str, Any]) -> _Reply:
        refund = self.refunds.get(path["refund"])
        if refund is None:
            raise _missing("refund", path["refund"], "id", 404)
        return _Reply(200, self._expand(refund, params))

    def _op_GetEventsId(self, path: dict[str, str], params: dict[str, Any]) -> _Reply:
        for event in self.events:
            if event["id"] == path["id"]:
                return _Reply(200, copy.deepcopy(event))
        raise _missing("event", path["id"], "id", 404)

    # -- objects --

    def _op_PostCheckoutSessions(self, _: dict[str, str], params: dict[str, Any]) -> _Reply:
        """A hosted Checkout Session, `setup` mode only (what saving a card for later uses),
        with its SetupIntent (`requires_payment_method` until `complete_checkout`). Its `url`
        is the stand-in's own page (`CHECKOUT_PAGE`)."""
        if params.get("mode") != "setup":
            raise _invalid(
                "The Stripe stand-in answers Checkout Sessions in setup mode only.", param="mode"
            )
        if params.get("ui_mode", "hosted") != "hosted":
            raise _invalid("The Stripe stand-in hosts its pages only.", param="ui_mode")
        if not params.get("success_url"):
            raise _invalid(
                "Missing required param: success_url.",
                param="success_url",
                code="parameter_missing",
            )
        if not params.get("payment_method_types") and not params.get("currency"):
            raise _invalid(
                "currency is required in setup mode when payment_method_types is not set.",
                param="currency",
                code="parameter_missing",
            )
        if "line_items" in params:
            raise _invalid("You cannot pass `line_items` in `setup` mode.", param="line_items")
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            raise _missing("customer", customer, "customer")
        metadata = dict(params.get("metadata") or {})
        _check_metadata(metadata)
        setup_data = params.get("setup_intent_data") or {}
        setup_metadata = dict(setup_data.get("metadata") or {})
        _check_metadata(setup_metadata)
        now = int(time.time())
        intent = copy.deepcopy(_examples()["setup_intent"])
        si_id = _random_id("seti_")
        intent.update(
            id=si_id,
            client_secret=f"{si_id}_secret_{_random_id('', 32)}",
            created=now,
            customer=customer,
            description=setup_data.get("description"),
            last_setup_error=None,
            next_action=None,
            latest_attempt=None,
            metadata=setup_metadata,
            payment_method=None,
            payment_method_types=list(params.get("payment_method_types") or ["card"]),
            status="requires_payment_method",
            usage="off_session",
        )
        self.setup_intents[si_id] = _shaped("setup_intent", intent)
        checkout = copy.deepcopy(_examples()["checkout.session"])
        cs_id = "cs_test_" + _random_id("", 58)
        checkout.update(
            id=cs_id,
            mode="setup",
            created=now,
            expires_at=params.get("expires_at", now + 24 * 3600),
            customer=customer,
            customer_email=None,
            customer_details=None,
            client_reference_id=params.get("client_reference_id"),
            success_url=params["success_url"],
            cancel_url=params.get("cancel_url"),
            locale=params.get("locale"),
            currency=params.get("currency"),
            metadata=metadata,
            payment_intent=None,
            payment_method_types=list(params.get("payment_method_types") or ["card"]),
            payment_status="no_payment_required",
            setup_intent=si_id,
            status="open",
            amount_subtotal=None,
            amount_total=None,
            shipping_cost=None,
            shipping_address_collection=None,
            shipping_options=[],
            total_details=None,
            invoice_creation=None,
            after_expiration=None,
            ui_mode="hosted",
            url=f"{self.url}{CHECKOUT_PAGE}{cs_id}",
        )
        checkout = _shaped("checkout.session", checkout)
        self.checkout_sessions[cs_id] = checkout
        return _Reply(200, self._expand(checkout, params))

    def _op_GetCheckoutSessionsSession(
        self, path: dict[str, str], params: dict[str, Any]
    ) -> _Reply:
        checkout = self.checkout_sessions.get(path["session"])
        if checkout is None:
            raise _missing("checkout.session", path["session"], "session", 404)
        return _Reply(200, self._expand(checkout, params))

    def _op_GetSetupIntentsIntent(self, path: dict[str, str], params: dict[str, Any]) -> _Reply:
        intent = self.setup_intents.get(path["intent"])
        if intent is None:
            raise _missing("setup_intent", path["intent"], "intent", 404)
        return _Reply(200, self._expand(intent, params))

    def _checkout_page(self, request: Request) -> Response:
        """Checkout's page as a browser sees it, without script: `GET /checkout/<id>` offers the
        test cards that save, `POST` saves the choice (`complete_checkout`) and answers 303 to
        the session's `success_url`; the back link is its `cancel_url`."""
        session_id = request.path[len(CHECKOUT_PAGE) :]
        with self._lock:
            checkout = copy.deepcopy(self.checkout_sessions.get(session_id))
        if checkout is None:
            return Response("No such Checkout Session.", status=404, mimetype="text/plain")
        if request.method == "POST":
            try:
                self.complete_checkout(session_id, request.form.get("card", ""))
            except ValueError as refused:
                return Response(str(refused), status=400, mimetype="text/plain")
            return Response(status=303, headers={"Location": checkout["success_url"]})
        if checkout["status"] != "open":
            return Response("This Checkout Session is complete.", status=410, mimetype="text/plain")
        choices = "".join(
            f'<label><input type="radio" name="card" value="{name}"'
            f"{' checked' if name == 'pm_card_mastercard' else ''}> "
            f"{card.brand.title()} ...{card.last4}</label><br>"
            for name, card in TEST_CARDS.items()
            if card.outcome == "succeeded"
        )
        back = checkout.get("cancel_url") or ""
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Stripe stand-in: save a card</title></head><body><main>"
            "<h1>Save a card (Stripe stand-in)</h1>"
            f'<form method="post" action="{CHECKOUT_PAGE}{session_id}">{choices}'
            '<button type="submit">Save card</button></form>'
            + (f'<p><a href="{html.escape(back)}">Back</a></p>' if back else "")
            + "</main></body></html>"
        )
        return Response(page, mimetype="text/html")

    def _payment_method(self, pm_id: str, param: str, status: int) -> dict[str, Any]:
        """A kept payment method, or a new one for a test payment method's name (as Stripe
        makes a new `pm_...` each time `pm_card_visa` is used)."""
        if pm_id in self.payment_methods:
            return self.payment_methods[pm_id]
        card = TEST_CARDS.get(pm_id)
        if card is None:
            raise _missing("PaymentMethod", pm_id, param, status)
        method = copy.deepcopy(_examples()["payment_method"])
        method.update(
            id=_random_id("pm_"),
            created=int(time.time()),
            customer=None,
            metadata={},
            allow_redisplay="unspecified",
            billing_details={
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": None,
                "name": None,
                "phone": None,
            },
        )
        method["card"].update(
            brand=card.brand,
            display_brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            funding=card.funding,
            fingerprint=_fingerprint(card),
            generated_from=None,
            wallet=None,
            networks={"available": [card.brand], "preferred": None},
        )
        method = _shaped("payment_method", method)
        self.payment_methods[method["id"]] = method
        self._cards[method["id"]] = pm_id
        return method

    def _card_of(self, charge: dict[str, Any]) -> TestCard:
        """The test card a charge was made with (a succeeding one for a charge of another)."""
        name = self._cards.get(charge.get("payment_method") or "", "pm_card_visa")
        return TEST_CARDS.get(name, TEST_CARDS["pm_card_visa"])

    def _charge(self, intent: dict[str, Any], method: dict[str, Any], card: TestCard) -> dict:
        charge = copy.deepcopy(_examples()["charge"])
        ch_id = _random_id("ch_")
        charge.update(
            id=ch_id,
            amount=intent["amount"],
            amount_captured=intent["amount"],
            amount_refunded=0,
            created=int(time.time()),
            currency=intent["currency"],
            customer=intent["customer"],
            description=intent["description"],
            metadata=dict(intent["metadata"]),
            payment_intent=intent["id"],
            payment_method=method["id"],
            balance_transaction=_random_id("txn_"),
            billing_details=copy.deepcopy(method["billing_details"]),
            captured=True,
            paid=True,
            refunded=False,
            disputed=False,
            status="succeeded",
            receipt_url=None,
            source=None,
            transfer_data=None,
            failure_code=None,
            failure_message=None,
            statement_descriptor=intent["statement_descriptor"],
            statement_descriptor_suffix=intent["statement_descriptor_suffix"],
            calculated_statement_descriptor=_descriptor(intent["statement_descriptor_suffix"]),
            outcome={
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "risk_score": 20,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            refunds={
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/charges/{ch_id}/refunds",
            },
        )
        details = charge["payment_method_details"]["card"]
        details.update(
            brand=card.brand,
            network=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            funding=card.funding,
            fingerprint=_fingerprint(card),
            wallet=None,
            amount_authorized=intent["amount"],
            overcapture={"maximum_amount_capturable": intent["amount"], "status": "unavailable"},
        )
        self.charges[ch_id] = charge
        intent["latest_charge"] = ch_id
        return charge

    def _succeed(self, intent: dict[str, Any], charge: dict[str, Any]) -> None:
        intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
        charge.update(
            status="succeeded",
            paid=True,
            captured=True,
            amount_captured=charge["amount"],
            outcome={
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "risk_score": 20,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
        )

    def _decline(self, intent: dict[str, Any], charge: dict[str, Any], card: TestCard) -> None:
        charge.update(
            status="failed",
            paid=False,
            captured=False,
            amount_captured=0,
            failure_code=card.code,
            failure_message=card.message,
            balance_transaction=None,
            outcome={
                "network_status": "declined_by_network",
                "reason": card.decline_code,
                "risk_level": "normal",
                "risk_score": 20,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            },
        )
        error = {
            "type": "card_error",
            "code": card.code,
            "message": card.message,
            "doc_url": f"https://stripe.com/docs/error-codes/{card.code.replace('_', '-')}"
            if card.code
            else None,
            "charge": charge["id"],
            "decline_code": card.decline_code,
            "payment_method": copy.deepcopy(self.payment_methods[charge["payment_method"]]),
            "payment_method_type": "card",
        }
        if card.code == "authentication_required":  # Stripe's own 3DS check: no charge made
            error["charge"] = None
            del self.charges[charge["id"]]
            intent["latest_charge"] = None
        intent.update(
            status="requires_payment_method",
            amount_received=0,
            last_payment_error={k: v for k, v in error.items() if v is not None},
        )

    def _expand(self, obj: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """A copy for the answer, with the fields named in `expand` replaced by their objects."""
        shown = _public(obj)
        stores = {
            "latest_charge": self.charges,
            "charge": self.charges,
            "payment_method": self.payment_methods,
            "customer": self.customers,
            "payment_intent": self.payment_intents,
            "setup_intent": self.setup_intents,
        }
        for name in params.get("expand", []):
            if name not in stores or name not in shown:
                raise _invalid(f"This property cannot be expanded ({name}).", param="expand")
            if shown[name] is not None and shown[name] in stores[name]:
                shown[name] = _public(stores[name][shown[name]])
        return shown

    def _page(self, found: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict:
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise _invalid("Invalid limit: must be between 1 and 100", param="limit")
        ids = [item["id"] for item in found]
        start = 0
        if params.get("starting_after") in ids:
            start = ids.index(params["starting_after"]) + 1
        end = len(found)
        if params.get("ending_before") in ids:
            end = ids.index(params["ending_before"])
            start = max(start, end - limit)
        chosen = found[start : min(end, start + limit)]
        expand = [
            e.removeprefix("data.") for e in params.get("expand", []) if e.startswith("data.")
        ]
        return {
            "object": "list",
            "url": url,
            "has_more": start + limit < end,
            "data": [self._expand(item, {"expand": expand}) for item in chosen],
        }


def _card_error(intent: dict[str, Any]) -> dict[str, Any]:
    """Stripe's 402 body: the payment's last error, with the payment intent in it."""
    error = dict(intent["last_payment_error"])
    error["payment_intent"] = _public(intent)
    return {"error": error}


def _response(status: int, body: bytes, request_id: str, key: str | None = None) -> Response:
    response = Response(body, status=status, mimetype="application/json")
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = API_VERSION
    if key:
        response.headers["Idempotency-Key"] = key
    return response


def _dumps(body: Any) -> bytes:
    return json.dumps(body, indent=2).encode()


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the stand-in's own bookkeeping fields (`_...`)."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


@functools.cache
def _known_fields(kind: str) -> frozenset[str] | None:
    schema = _spec()[0]["components"]["schemas"].get(kind)
    return frozenset(schema["properties"]) if schema else None


def _shaped(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Drop the example's fields that API version 2024-04-10 does not have."""
    known = _known_fields(kind)
    return obj if known is None else {k: v for k, v in obj.items() if k in known}


def _fingerprint(card: TestCard) -> str:
    return base64.b32encode(f"{card.brand}{card.last4}".encode()).decode()[:16]


# The stand-in account's shortened descriptor (the prefix a suffix is added to).
_PREFIX = "TEXTPAY"


def _descriptor(suffix: str | None) -> str:
    return f"{_PREFIX}* {suffix}" if suffix else _PREFIX


def _check_metadata(metadata: dict[str, Any]) -> None:
    """Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500."""
    if len(metadata) > 50:
        raise _invalid("You can only specify up to 50 metadata keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 40:
            raise _invalid(
                "Metadata keys can have a maximum length of 40 characters.",
                param=f"metadata[{key}]",
            )
        if len(str(value)) > 500:
            raise _invalid(
                "Metadata values can have a maximum length of 500 characters.",
                param=f"metadata[{key}]",
            )


def _check_descriptor(suffix: str | None) -> None:
    """Stripe's statement descriptor rules: a letter at least, none of < > \\ ' " *."""
    if suffix is None:
        return
    if not re.search(r"[A-Za-z]", suffix) or re.search(r"[<>\\'\"*]", suffix):
        raise _invalid(
            f"Invalid statement_descriptor_suffix: {suffix!r} must contain at least "
            "one letter and none of < > \\ ' \" *",
            param="statement_descriptor_suffix",
        )
    if len(_descriptor(suffix)) > 22:  # Stripe refuses, it does not cut
        raise _invalid(
            f"The statement descriptor {_descriptor(suffix)!r} (prefix, '* ' and "
            "statement_descriptor_suffix) must be at most 22 characters.",
            param="statement_descriptor_suffix",
        )


def _in_range(value: int, bounds: dict[str, Any]) -> bool:
    checks = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
    return all(checks[op](limit) for op, limit in bounds.items() if op in checks)


_CLAUSE = re.compile(
    r"""^\s*(?:metadata\[(?P<q>['"])(?P<key>.+?)(?P=q)\]|(?P<field>[a-z_]+))"""
    r"""\s*:\s*(?:(?P<vq>['"])(?P<value>.*?)(?P=vq)|(?P<number>-?\d+))\s*$"""
)
_SEARCHABLE = ("status", "customer", "currency", "amount", "description")


def _search_query(query: str) -> Callable[[dict[str, Any]], bool]:
    """Stripe's search language, the part a gateway uses: `metadata['k']:'v'`, `status:'x'`,
    `customer:'cus_...'`, `currency:'usd'`, `amount:1000`, joined by ` AND ` or by ` OR `."""
    if " AND " in query and " OR " in query:
        raise _invalid("Search queries cannot mix AND and OR.", param="query")
    joiner = " OR " if " OR " in query else " AND "
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in query.split(joiner):
        matched = _CLAUSE.match(clause)
        if not matched or (matched["field"] and matched["field"] not in _SEARCHABLE):
            raise _invalid(
                f"Invalid query: the stand-in cannot read {clause.strip()!r} "
                f"(it knows metadata['key']:'value' and "
                f"{', '.join(_SEARCHABLE)}).",
                param="query",
            )
        wanted: Any = matched["value"] if matched["number"] is None else int(matched["number"])
        if matched["key"] is not None:
            key = matched["key"]
            tests.append(lambda i, k=key, w=wanted: i["metadata"].get(k) == str(w))
        else:
            name = matched["field"]
            tests.append(lambda i, n=name, w=wanted: i.get(n) == w or str(i.get(n)) == str(w))
    combine = any if joiner == " OR " else all
    return lambda intent: combine(test(intent) for test in tests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--webhook-url", help="where events are posted")
    parser.add_argument("--webhook-secret", default="whsec_test_standin")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    args = parser.parse_args()
    stand_in = StripeStandIn(
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        slow_seconds=args.slow_seconds,
    ).start(args.port)
    print(f"stripe stand-in listening on {stand_in.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
