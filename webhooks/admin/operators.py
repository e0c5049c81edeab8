"""Admin routes for operators (admin only) and API tokens (each operator its own).

`POST /admin/operators` answers the new operator's one-time password, and `POST /admin/tokens`
the new token: the only time either is shown. An operator's token mints and lists tokens for
its own operator; the bootstrap owner (TEXTPAY_ADMIN_TOKEN) names the operator
(`operator_id`), which is how the first operator gets a token. An admin may list and revoke
anyone's tokens; anyone else's are not found.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlmodel import Session

from textpay import operators
from textpay.errors import ValidationFailed
from textpay.models import OperatorRole
from textpay.schemas import OperatorIn, TokenIn
from textpay.timeutil import utcnow
from webhooks.admin import bp, caller, requires
from webhooks.admin.requests import actor, body, id_arg
from webhooks.problems import Problem
from webhooks.transactions import in_transaction


@bp.post("/operators")
@requires(OperatorRole.ADMIN)
def create_operator() -> tuple[Response, int]:
    data = body(OperatorIn)
    who, now = actor(), utcnow()

    def work(session: Session) -> dict[str, Any]:
        operator, password = operators.create_operator(
            session, data.email, role=data.role, name=data.name, actor=who, now=now
        )
        return {**operators.operator_json(operator, now=now), "password": password}

    return jsonify(in_transaction(work)), 201


@bp.get("/operators")
@requires(OperatorRole.ADMIN)
def list_operators() -> Response:
    now = utcnow()
    return jsonify(
        operators=in_transaction(
            lambda session: [
                operators.operator_json(operator, now=now)
                for operator in operators.list_operators(session)
            ]
        )
    )


@bp.post("/operators/<id:operator_id>/disable")
@requires(OperatorRole.ADMIN)
def disable_operator(operator_id: int) -> Response:
    who, now = actor(), utcnow()

    def work(session: Session) -> dict[str, Any]:
        operator = operators.get_operator(session, operator_id)
        operators.disable_operator(session, operator, actor=who, now=now)
        return operators.operator_json(operator, now=now)

    return jsonify(in_transaction(work))


@bp.post("/tokens")
@requires(OperatorRole.VIEWER)
def mint_token() -> tuple[Response, int]:
    data = body(TokenIn)
    signed_in = caller().operator
    if signed_in is None and data.operator_id is None:
        raise ValidationFailed.single(
            "operator_id", "is required with TEXTPAY_ADMIN_TOKEN (whose token is it?)"
        )
    if signed_in is not None and data.operator_id not in (None, signed_in.id):
        raise Problem("forbidden", "An operator's token mints tokens for that operator only.")
    owner_id = signed_in.id if signed_in is not None else data.operator_id
    assert owner_id is not None
    who, now = actor(), utcnow()

    def work(session: Session) -> dict[str, Any]:
        owner = operators.get_operator(session, owner_id)
        token, raw = operators.mint_token(session, owner, data.name, actor=who, now=now)
        return {**operators.token_json(token), "token": raw}

    return jsonify(in_transaction(work)), 201


@bp.get("/tokens")
@requires(OperatorRole.VIEWER)
def list_tokens() -> Response:
    who = caller()
    asked = id_arg("operator_id")
    others = who.operator is not None and asked not in (None, who.operator.id)
    if others and who.role is not OperatorRole.ADMIN:
        raise Problem("forbidden", "Only an admin lists another operator's tokens.")
    owner = asked if asked is not None or who.operator is None else who.operator.id
    return jsonify(
        tokens=in_transaction(
            lambda session: [operators.token_json(t) for t in operators.list_tokens(session, owner)]
        )
    )


@bp.delete("/tokens/<id:token_id>")
@requires(OperatorRole.VIEWER)
def revoke_token(token_id: int) -> Response:
    by, who, now = caller().operator, actor(), utcnow()
    return jsonify(
        in_transaction(
            lambda session: operators.token_json(
                operators.revoke_token(session, token_id, by=by, actor=who, now=now)
            )
        )
    )
