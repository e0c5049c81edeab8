"""Admin routes for card refunds: money back to the card a deposit came from
(`textpay.card_refunds`), in the three phases of a charge: the debit and the pending refund in
one transaction, the processor called outside any, its answer settled in another.

Answers: 201 (200 for a replay of the Idempotency-Key) when the card got the money back; 202
when the processor has not answered yet (the reconciler finishes it, the debit holds the money
meanwhile); a 422 `card-refund-failed` problem when the processor refused (the money is back on
the balance). Every answer carries `Idempotent-Replayed`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlmodel import Session

from textpay import card_refunds
from textpay.accounts import get_account
from textpay.models import CardRefundStatus, OperatorRole
from textpay.money import format_cents
from textpay.payments import RefundResult
from textpay.schemas import CardRefundIn
from textpay.timeutil import utcnow
from webhooks.admin import bp, requires
from webhooks.admin.money import idempotency_key
from webhooks.admin.requests import actor, body, int_arg
from webhooks.admin.serializers import card_refund_json
from webhooks.problems import Problem
from webhooks.services import services
from webhooks.transactions import in_transaction


@bp.post("/accounts/<id:account_id>/card-refunds")
@requires(OperatorRole.AGENT)
def card_refund(account_id: int) -> tuple[Response, int]:
    key = idempotency_key()
    data = body(CardRefundIn)
    who = actor()
    found = services()
    begun = in_transaction(
        lambda session: card_refunds.begin(
            session,
            account_id=account_id,
            deposit_id=data.deposit_id,
            amount_cents=data.amount_cents,
            reason=data.reason,
            request_key=key,
            actor=who,
            now=utcnow(),
        )
    )
    result: RefundResult | None = None
    timeout = found.settings.gateway_timeout_seconds
    if begun.order is not None and not begun.replayed:  # new: ask with our key
        result = card_refunds.call_gateway(found.gateway, begun.order, timeout_seconds=timeout)
    elif begun.order is not None:
        # A replay of one still pending: asked as the reconciler asks (by the refund id once
        # known; our key only while the processor remembers it, else it could refund twice).
        result = card_refunds.ask_again(found.gateway, begun.order, now=utcnow(),
                                        timeout_seconds=timeout)  # fmt: skip

    def finish(session: Session) -> dict[str, Any]:
        if result is not None:
            card_refunds.settle(session, begun.card_refund_id, result, now=utcnow(),
                                config=found.engine_config)  # fmt: skip
        return card_refund_json(card_refunds.describe(session, begun.card_refund_id))

    shown = in_transaction(finish)
    replayed = {"Idempotent-Replayed": "true" if begun.replayed else "false"}
    if shown["status"] == CardRefundStatus.FAILED.value:
        raise Problem(
            "card-refund-failed",
            f"The card processor refused to refund {format_cents(shown['amount_cents'])} to "
            f"card ...{shown['card_last4']} ({shown['failure_reason']}). Nothing went back to "
            "the card; the amount is back on the balance, which is now "
            f"{format_cents(shown['balance_cents'])}.",
            headers=replayed,
            extensions={"card_refund": shown},
        )
    response = jsonify(shown)
    response.headers.update(replayed)
    if shown["status"] == CardRefundStatus.PENDING.value:
        return response, 202
    return response, 200 if begun.replayed else 201


@bp.get("/accounts/<id:account_id>/card-refunds")
def list_card_refunds(account_id: int) -> Response:
    limit = int_arg("limit", default=20, high=100) or 20

    def work(session: Session) -> dict[str, Any]:
        get_account(session, account_id)
        listed = card_refunds.recent(session, account_id, limit=limit)
        return {
            "account_id": account_id,
            "card_refunds": [
                card_refund_json(card_refunds.describe(session, refund.id or 0))
                for refund in listed
            ],
        }

    return jsonify(in_transaction(work))
