"""Domain errors: what can go wrong in a way the caller should explain to a person.

Each carries enough for an edge to answer clearly (the admin API turns them into
`application/problem+json`; the CLI prints them) without the domain knowing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one input field.

    `field` is a dotted path such as `payment_method.token`.
    """

    field: str
    message: str


class TextPayError(Exception):
    """Base of the errors the domain raises on purpose."""

    slug = "textpay-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(TextPayError):
    slug = "not-found"


class ValidationFailed(TextPayError):
    """Input that breaks a rule; lists every field at fault, not only the first."""

    slug = "validation-error"

    def __init__(
        self, errors: list[FieldError], detail: str = "The request has invalid fields."
    ) -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        return cls([FieldError(field, message)], detail=f"{field}: {message}")


class Conflict(TextPayError):
    """The request is valid but clashes with what already exists."""

    slug = "conflict"


class DuplicateAccountNumber(Conflict):
    slug = "duplicate-account-number"


class IdempotencyConflict(Conflict):
    """A reference or idempotency key was reused for a different request."""

    slug = "idempotency-conflict"


class InsufficientBalance(Conflict):
    """A debit larger than the balance: prepaid accounts never go below zero."""

    slug = "insufficient-balance"


class GatewayUnavailable(TextPayError):
    """The payment gateway could not be reached (or refused our credentials): nothing was
    saved, and the same request may simply be sent again."""

    slug = "gateway-unavailable"
