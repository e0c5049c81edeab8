"""Admin routes for accounts: enrol, look up by phone or number, read, change."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for
from sqlmodel import Session

from textpay import passcodes
from textpay.accounts import (
    Enrolment,
    create_account,
    find_accounts,
    get_account,
    save_card,
    update_account,
)
from textpay.models import OperatorRole
from textpay.schemas import AccountCreate, AccountUpdate, PasscodeIn, PaymentMethodIn
from textpay.timeutil import utcnow
from webhooks.admin import bp, requires
from webhooks.admin.requests import actor, body, id_arg, int_arg
from webhooks.admin.serializers import account_json
from webhooks.services import services
from webhooks.transactions import in_transaction


def _enrolment(card: PaymentMethodIn | None = None, account_ref: str = "") -> Enrolment:
    """The enrolment context, with the card already saved at the gateway: a network call
    (Stripe), made here before the transaction opens. An enrolment refused afterwards (a
    duplicate account number, say) leaves at most an unused customer at Stripe, no money."""
    found = services()
    saved = None
    if card is not None:
        saved = (card, save_card(found.gateway, card, account_ref=account_ref))
    return Enrolment(
        actor=actor(),
        gateway=found.gateway,
        default_region=found.settings.default_region,
        saved=saved,
    )


@bp.post("/accounts")
@requires(OperatorRole.AGENT)
def create() -> tuple[Response, int, dict[str, str]]:
    data = body(AccountCreate)
    context = _enrolment(data.payment_method, data.account_number)

    def work(session: Session) -> dict[str, Any]:
        return account_json(session, create_account(session, data, context))

    created = in_transaction(work)
    location = url_for("admin.show", account_id=created["id"])
    return jsonify(created), 201, {"Location": location}


@bp.get("/accounts")
def index() -> Response:
    limit = int_arg("limit", default=50, high=500)
    after = id_arg("after")
    phone = request.args.get("phone")
    account_number = request.args.get("account_number")
    region = services().settings.default_region

    def work(session: Session) -> list[dict[str, Any]]:
        found = find_accounts(
            session,
            phone=phone,
            account_number=account_number,
            default_region=region,
            limit=limit or 50,
            after_id=after,
        )
        return [account_json(session, account) for account in found]

    accounts = in_transaction(work)
    return jsonify(accounts=accounts, next_after=accounts[-1]["id"] if accounts else None)


@bp.get("/accounts/<id:account_id>")
def show(account_id: int) -> Response:
    return jsonify(
        in_transaction(lambda session: account_json(session, get_account(session, account_id)))
    )


@bp.patch("/accounts/<id:account_id>")
@requires(OperatorRole.AGENT)
def change(account_id: int) -> Response:
    data = body(AccountUpdate)
    context = _enrolment()
    if data.payment_method is not None:
        # A short read first: a missing account is a 404 before anything reaches Stripe.
        number = in_transaction(lambda session: get_account(session, account_id).account_number)
        context = _enrolment(data.payment_method, number)
    return jsonify(
        in_transaction(
            lambda session: account_json(
                session, update_account(session, account_id, data, context)
            )
        )
    )


def _passcode_json(account_id: int, has_one: bool) -> dict[str, Any]:
    return {"account_id": account_id, "passcode_set": has_one}


@bp.put("/accounts/<id:account_id>/passcode")
@requires(OperatorRole.AGENT)
def put_passcode(account_id: int) -> Response:
    """Set (or replace) the account's 4-digit passcode. Answers only that it is set: the
    digits are never returned, stored (only their scrypt hash) nor logged."""
    data = body(PasscodeIn)
    who = actor()

    def work(session: Session) -> dict[str, Any]:
        account = get_account(session, account_id)
        passcodes.set_passcode(session, account, data.passcode, actor=who, now=utcnow())
        session.add(account)
        return _passcode_json(account_id, True)

    return jsonify(in_transaction(work))


@bp.delete("/accounts/<id:account_id>/passcode")
@requires(OperatorRole.AGENT)
def delete_passcode(account_id: int) -> Response:
    """Clear the account's passcode (its YES pays without one again). Clearing an account
    with none changes nothing and is not audited."""
    who = actor()

    def work(session: Session) -> dict[str, Any]:
        account = get_account(session, account_id)
        if account.passcode_hash is not None:
            passcodes.clear_passcode(session, account, actor=who, now=utcnow())
            session.add(account)
        return _passcode_json(account_id, False)

    return jsonify(in_transaction(work))
