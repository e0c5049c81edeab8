"""Admin routes that move money without a card: usage debits and operator credits, and the
ledger that records them."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify
from flask import request as flask_request
from sqlmodel import Session

from textpay import ledger
from textpay.accounts import get_account
from textpay.balances import issue_credit, record_usage
from textpay.ledger import Posting
from textpay.models import LedgerKind, OperatorRole
from textpay.schemas import CreditIn, UsageIn
from webhooks.admin import bp, requires
from webhooks.admin.requests import actor, body, id_arg, int_arg
from webhooks.admin.serializers import ledger_entry_json
from webhooks.problems import Problem
from webhooks.transactions import in_transaction

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,150}$")


def _posted(posting: Posting) -> tuple[Response, int]:
    """201 for a new entry; 200 and the original entry for a replay."""
    response = jsonify(ledger_entry_json(posting.entry))
    response.headers["Idempotent-Replayed"] = "true" if posting.replayed else "false"
    return response, 200 if posting.replayed else 201


@bp.post("/accounts/<id:account_id>/usage")
@requires(OperatorRole.AGENT)
def usage(account_id: int) -> tuple[Response, int]:
    data = body(UsageIn)
    return _posted(
        in_transaction(
            lambda session: record_usage(
                session,
                account_id=account_id,
                amount_cents=data.amount_cents,
                reference=data.reference,
            )
        )
    )


def idempotency_key() -> str:
    """The request's Idempotency-Key header, or a 400 problem asking for one."""
    key = flask_request.headers.get(IDEMPOTENCY_KEY_HEADER, "").strip()
    if not _IDEMPOTENCY_KEY.match(key):
        raise Problem(
            "missing-idempotency-key",
            "Send an Idempotency-Key header of 1 to 150 printable characters.",
        )
    return key


@bp.post("/accounts/<id:account_id>/credits")
@requires(OperatorRole.AGENT)
def credit(account_id: int) -> tuple[Response, int]:
    key = idempotency_key()
    data = body(CreditIn)
    who = actor()
    return _posted(
        in_transaction(
            lambda session: issue_credit(
                session,
                account_id=account_id,
                amount_cents=data.amount_cents,
                reason=data.reason,
                idempotency_key=key,
                kind=LedgerKind(data.kind),
                actor=who,
            )
        )
    )


@bp.get("/accounts/<id:account_id>/ledger")
def entries(account_id: int) -> Response:
    limit = int_arg("limit", default=100, high=1000) or 100
    before = id_arg("before")

    def work(session: Session) -> dict[str, Any]:
        account = get_account(session, account_id)
        found = ledger.entries(session, account_id, limit=limit, before_id=before)
        return {
            "account_id": account_id,
            "balance_cents": account.balance_cents,
            "entries": [ledger_entry_json(entry) for entry in found],
            "next_before": found[-1].id if len(found) == limit else None,
        }

    return jsonify(in_transaction(work))
