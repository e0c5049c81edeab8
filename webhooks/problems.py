"""One error shape for every HTTP error: `application/problem+json` (RFC 9457).

Owns the catalogue of problem types. Each has a stable `type` (a path under `/problems/`, which
this app also serves as documentation) and `title`, so that scripts can branch on `type` while
people read `detail`. Validation problems add `errors`: one `{field, message}` per bad field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from textpay.errors import FieldError, TextPayError, ValidationFailed
from textpay.logsafe import mask_card_links
from textpay.redaction import mask_card_numbers

CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    description: str


CATALOGUE: dict[str, ProblemType] = {
    "invalid-json": ProblemType(400, "Request body is not valid JSON", "Send a JSON object."),
    "missing-idempotency-key": ProblemType(
        400,
        "Idempotency-Key header required",
        "Requests that move money need an Idempotency-Key header (1 to 150 printable characters) "
        "so that a retry cannot post twice.",
    ),
    "unauthorized": ProblemType(
        401,
        "Missing or wrong bearer token",
        "Send Authorization: Bearer <TEXTPAY_ADMIN_TOKEN> or an operator's API token. A "
        "revoked token, or the token of a disabled operator, is refused.",
    ),
    "forbidden": ProblemType(
        403,
        "Forbidden",
        "The caller is known but may not do this: an operator's token below the role the "
        "admin endpoint needs (viewer reads; agent changes accounts and moves money; admin "
        "changes settings, facilities and operators), or a Twilio webhook without a valid "
        "X-Twilio-Signature for TWILIO_AUTH_TOKEN.",
    ),
    "bad-webhook": ProblemType(
        400,
        "Malformed webhook",
        "A Twilio webhook lacks a field every such request has (MessageSid, From, MessageStatus), "
        "or carries one Twilio never sends (a malformed SID or ErrorCode, or an inbound "
        "MessageSid that is the SID of one of our outbound texts). Nothing was recorded.",
    ),
    "bad-signature": ProblemType(
        400,
        "Webhook signature invalid",
        "Stripe webhooks must carry a Stripe-Signature made with STRIPE_WEBHOOK_SECRET over the "
        "exact body, less than five minutes old. Nothing was read or recorded.",
    ),
    "not-found": ProblemType(404, "Not found", "No such resource."),
    "method-not-allowed": ProblemType(405, "Method not allowed", "See the Allow header."),
    "conflict": ProblemType(409, "Conflict", "The request clashes with existing data."),
    "duplicate-account-number": ProblemType(
        409, "Account number already exists", "Account numbers are unique."
    ),
    "idempotency-conflict": ProblemType(
        409,
        "Reference reused for a different request",
        "A usage reference or Idempotency-Key can only ever mean one posting. Replaying the same "
        "request returns the original entry; changing the account, kind or amount is refused.",
    ),
    "insufficient-balance": ProblemType(
        409,
        "Balance too low for this debit",
        "Prepaid accounts never go below zero.",
    ),
    "request-too-large": ProblemType(413, "Request body too large", "The limit is 64 KiB."),
    "unsupported-media-type": ProblemType(
        415, "Unsupported media type", "Send Content-Type: application/json."
    ),
    "validation-error": ProblemType(
        422,
        "Request has invalid fields",
        "See `errors`: one entry per field, with what is wrong with it.",
    ),
    "card-refund-failed": ProblemType(
        422,
        "The card processor refused the refund",
        "Nothing went back to the card: the amount is back on the account's balance (an "
        "`adjustment` entry). `card_refund` is the refund as recorded, with its reason.",
    ),
    "internal-error": ProblemType(500, "Internal error", "Something failed on our side."),
    "admin-api-disabled": ProblemType(
        503,
        "Admin API disabled",
        "Set TEXTPAY_ADMIN_TOKEN to enable the admin API.",
    ),
    "service-unavailable": ProblemType(503, "Service unavailable", "Try again shortly."),
    "gateway-unavailable": ProblemType(
        503,
        "Payment gateway unavailable",
        "The payment gateway (Stripe) could not be reached while saving a card; nothing was "
        "saved. Send the same request again shortly.",
    ),
    "http-error": ProblemType(400, "HTTP error", "See `detail`."),
}

_SLUG_BY_STATUS = {400: "http-error", 404: "not-found", 405: "method-not-allowed",
                   413: "request-too-large", 415: "unsupported-media-type",
                   500: "internal-error", 503: "service-unavailable"}  # fmt: skip


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        # RFC 9457 extension members: more about this problem, under names of its own.
        self.extensions = extensions or {}


def problem_response(
    slug: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    kind = CATALOGUE[slug]
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": f"/problems/{slug}",
        "title": kind.title,
        "status": status or kind.status,
        "detail": detail,
        # A path may hold a card number, or a card link's token (a PUT to `/card/<token>`):
        # neither is echoed into a body a proxy or a client's error report may keep.
        "instance": mask_card_links(mask_card_numbers(request.path)[0]),
    }
    if errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    response = jsonify(body)
    response.status_code = body["status"]
    response.content_type = CONTENT_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(error: ValidationError) -> list[FieldError]:
    """Pydantic's errors as `{field, message}` pairs, without echoing the input back.

    The input is left out on purpose: it may hold a card number someone pasted into a field.
    """
    found = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "is not a known field"
        elif item["type"] == "missing":
            message = "is required"
        found.append(FieldError(field, message))
    return found


def register(app: Flask) -> None:
    app.register_blueprint(_docs)

    @app.errorhandler(Problem)
    def _problem(error: Problem) -> Response:
        return problem_response(
            error.slug,
            error.detail,
            errors=error.errors,
            headers=error.headers,
            extensions=error.extensions,
        )

    @app.errorhandler(TextPayError)
    def _domain(error: TextPayError) -> Response:
        errors = error.errors if isinstance(error, ValidationFailed) else None
        slug = error.slug if error.slug in CATALOGUE else "conflict"
        retry = {"Retry-After": "5"} if CATALOGUE[slug].status == 503 else None
        return problem_response(slug, error.detail, errors=errors, headers=retry)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        slug = _SLUG_BY_STATUS.get(status, "http-error")
        response = problem_response(slug, error.description or "", status=status)
        if status == 405 and error.response is None:
            allow = getattr(error, "valid_methods", None)
            if allow:
                response.headers["Allow"] = ", ".join(allow)
        return response

    @app.errorhandler(OperationalError)
    def _database_down(error: OperationalError) -> Response:
        # The database is unreachable (restarting, failing over): say so at once, and let the
        # caller (Twilio, an operator's script) retry; the pool reconnects when it is back.
        current_app.logger.warning("database unavailable: %s", type(error.orig).__name__)
        return problem_response(
            "service-unavailable", "The database is unavailable; retry shortly.",
            headers={"Retry-After": "5"},
        )  # fmt: skip

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response("internal-error", "The error has been logged.")


_docs = Blueprint("problems", __name__)


@_docs.get("/problems/<slug>")
def describe(slug: str) -> Response:
    kind = CATALOGUE.get(slug)
    if kind is None:
        return problem_response("not-found", f"no problem type {slug!r}")
    return jsonify(type=f"/problems/{slug}", title=kind.title, status=kind.status,
                   description=kind.description)  # fmt: skip
