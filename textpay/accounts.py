"""Enrolling and changing accounts: the operator's side of an account's life.

Owns the rules that need the database: a unique account number, a phone stored as E.164, a real
facility, a known time zone, a preset amount inside the deposit limits the account inherits, and a
payment method kept as a token only. An account enrolled on a number, or moved onto one, takes
that number's consent (`textpay.consent`). Every change is written to the audit trail with the
state before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import Session, col, select

from textpay import audit, consent, episodes
from textpay.errors import (
    DuplicateAccountNumber,
    FieldError,
    GatewayUnavailable,
    NotFound,
    ValidationFailed,
)
from textpay.localtime import place_of, zones_column
from textpay.models import Account, Facility, PaymentMethod
from textpay.payments import CardInfo, GatewayTimeout, PaymentGateway, UnknownCard
from textpay.phones import to_e164
from textpay.policy import effective_for_account
from textpay.schemas import (
    ACCOUNT_FIELDS_NOT_NULLABLE,
    AccountCreate,
    AccountUpdate,
    PaymentMethodIn,
)
from textpay.timeutil import utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class Enrolment:
    """What an account service needs besides the session: who acts, and how to read inputs."""

    actor: str
    gateway: PaymentGateway
    default_region: str = "US"
    # The card as the gateway saved it before the transaction began (`save_card`): the edge
    # makes that network call first, so that no transaction is open while it waits. Without
    # it (or for another card), the card is saved from inside (a local gateway, tests).
    saved: tuple[PaymentMethodIn, CardInfo | None] | None = None


def save_card(
    gateway: PaymentGateway, data: PaymentMethodIn, *, account_ref: str
) -> CardInfo | None:
    """Have the gateway make a card chargeable and describe it; call it outside any
    transaction. A card the gateway does not know is a 422 on the field at fault; a gateway
    that cannot be reached is `GatewayUnavailable` (a 503: nothing was saved, try again)."""
    try:
        return gateway.save_card(data.token, customer=data.customer, account_ref=account_ref)
    except UnknownCard as unknown:
        raise ValidationFailed.single(unknown.field, unknown.message) from None
    except GatewayTimeout:
        raise GatewayUnavailable(
            "The payment gateway is unavailable; nothing was saved. Try again."
        ) from None


def get_account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account


def find_accounts(
    session: Session,
    *,
    phone: str | None = None,
    account_number: str | None = None,
    default_region: str = "US",
    limit: int = 50,
    after_id: int | None = None,
) -> list[Account]:
    """Accounts in id order, filtered by phone (any common spelling) or account number."""
    statement = select(Account)
    if phone is not None:
        statement = statement.where(Account.phone == to_e164(phone, default_region=default_region))
    if account_number is not None:
        statement = statement.where(Account.account_number == account_number)
    if after_id is not None:
        statement = statement.where(col(Account.id) > after_id)
    return list(session.exec(statement.order_by(col(Account.id)).limit(limit)))


def payment_method_of(session: Session, account_id: int) -> PaymentMethod | None:
    return session.exec(select(PaymentMethod).where(PaymentMethod.account_id == account_id)).first()


def facility_by_code(session: Session, code: str, *, field: str = "facility") -> Facility:
    facility = session.exec(select(Facility).where(Facility.code == code)).first()
    if facility is None:
        raise ValidationFailed.single(field, f"no facility has the code {code!r}")
    return facility


def create_account(session: Session, data: AccountCreate, ctx: Enrolment) -> Account:
    errors: list[FieldError] = []
    phone = _collect(errors, lambda: to_e164(data.phone, default_region=ctx.default_region))
    facility = (
        _collect(errors, partial(facility_by_code, session, data.facility))
        if data.facility
        else None
    )
    if data.timezone is not None:
        _collect(errors, partial(_check_timezone, data.timezone))
    if errors or phone is None:
        raise ValidationFailed(errors)
    if session.exec(
        select(Account.id).where(Account.account_number == data.account_number)
    ).first():
        raise DuplicateAccountNumber(f"account number {data.account_number!r} already exists")

    now = utcnow()
    phone_state, phone_zones = place_of(phone)
    account = Account(
        phone_state=phone_state,
        phone_zones=zones_column(phone_zones),
        account_number=data.account_number,
        phone=phone,
        nickname=data.nickname,
        language=data.language,
        timezone=data.timezone,
        facility_id=facility.id if facility else None,
        textpay_enabled=data.textpay_enabled,
        autopay_enabled=data.autopay_enabled,
        preset_amount_cents=data.preset_amount_cents,
        threshold_cents=data.threshold_cents,
        runway_days=data.runway_days,
        passcode_over_cents=data.passcode_over_cents,
        passcode_new_phone_days=data.passcode_new_phone_days,
        phone_since=now,
        balance_updated_at=now,
        created_at=now,
        updated_at=now,
    )
    # Consent belongs to the number: an account enrolled on a number that said STOP (even
    # before it had any account) starts opted out.
    consent.apply_to_account(session, account, now=now)
    session.add(account)
    session.flush()
    assert account.id is not None
    _check_account_limits(session, account)
    method = None
    if data.payment_method is not None:
        method = _store_payment_method(session, account.id, data.payment_method, ctx)
    _check_autopay_has_card(account, method)
    audit.record(
        session,
        actor=ctx.actor,
        action="account.create",
        entity_type="account",
        entity_id=account.id,
        before=None,
        after=account_snapshot(account, method),
        now=now,
    )
    return account


def update_account(
    session: Session, account_id: int, data: AccountUpdate, ctx: Enrolment
) -> Account:
    account = get_account(session, account_id)
    method = payment_method_of(session, account_id)
    before = account_snapshot(account, method)
    changes = data.changes()

    errors = [
        FieldError(name, "must not be null")
        for name in ACCOUNT_FIELDS_NOT_NULLABLE
        if name in changes and changes[name] is None
    ]
    if "phone" in changes and changes["phone"] is not None:
        changes["phone"] = _collect(
            errors, lambda: to_e164(changes["phone"], default_region=ctx.default_region)
        )
    if "facility" in changes:
        code = changes.pop("facility")
        facility = _collect(errors, lambda: facility_by_code(session, code)) if code else None
        changes["facility_id"] = facility.id if facility else None
    if changes.get("timezone") is not None:
        _collect(errors, lambda: _check_timezone(changes["timezone"]))
    if errors:
        raise ValidationFailed(errors)

    if changes.get("phone"):
        state, zones = place_of(changes["phone"])
        changes.update(phone_state=state, phone_zones=zones_column(zones))
    card_change = "payment_method" in changes
    new_method: PaymentMethodIn | None = changes.pop("payment_method", None)
    previous_phone = account.phone
    restarting_autopay = changes.get("autopay_enabled") is True and not account.autopay_enabled
    for name, value in changes.items():
        setattr(account, name, value)
    now = utcnow()
    if restarting_autopay:
        episodes.restart_autopay(account, now=now)
    account.updated_at = now
    session.add(account)
    if changes.get("phone"):
        # The account takes its new number's consent, and leaves nothing queued at the old one.
        # Before the flush: the number's lock is taken before the account's row, as STOP does.
        consent.apply_to_account(session, account, now=now, moved_from=previous_phone)
        if changes["phone"] != previous_phone:
            # The offer made to the old number is withdrawn; the new number is owed its own,
            # at the next scan rather than after the reminder's cooldown.
            account.episode_prompts = 0
            account.episode_last_prompt_at = None
            # Written even when they were 0 and empty as read: a scan's offer to the old number
            # may have committed since (its counter with it) while this waited for the row.
            flag_modified(account, "episode_prompts")
            flag_modified(account, "episode_last_prompt_at")
            # A new phone for the account (`passcode_new_phone_days`).
            account.phone_since = now
    session.flush()
    _check_account_limits(session, account)
    if new_method is not None:
        method = _store_payment_method(session, account_id, new_method, ctx)
    elif card_change and method is not None:
        session.delete(method)  # `"payment_method": null` removes the card on file
        session.flush()
        method = None
    _check_autopay_has_card(account, method)
    after = account_snapshot(account, method)
    if after != before:
        audit.record(
            session,
            actor=ctx.actor,
            action="account.update",
            entity_type="account",
            entity_id=account_id,
            before=before,
            after=after,
        )
    return account


def _store_payment_method(
    session: Session, account_id: int, data: PaymentMethodIn, ctx: Enrolment
) -> PaymentMethod:
    """Replace the account's card on file. The gateway makes the card chargeable later (Stripe:
    attaches it to the given customer, or to one it creates for the account) and says what it
    is; brand, last 4 and expiry default to that, and are kept."""
    account = session.get(Account, account_id)
    assert account is not None
    if ctx.saved is not None and ctx.saved[0] == data:
        known = ctx.saved[1]
    else:
        known = save_card(ctx.gateway, data, account_ref=account.account_number)
    return put_card(session, account_id, data, known)


def put_card(
    session: Session, account_id: int, data: PaymentMethodIn, known: CardInfo | None
) -> PaymentMethod:
    """Replace the account's card on file with one the gateway has already made chargeable
    (`known`: what it said of the card; None when it could not describe it). Shared by the
    operator's API and the subscriber's card link (`textpay.card_links`)."""
    brand = data.brand or (known.brand if known else None)
    last4 = data.last4 or (known.last4 if known else None)
    if brand is None or last4 is None:
        raise ValidationFailed.single(
            "payment_method.last4", "is required for a token the gateway cannot describe"
        )
    # The gateway may have given the card a token of its own (Stripe attaches a copy of a
    # test payment method): that is the one it will charge.
    token = (known.token if known else None) or data.token
    method = payment_method_of(session, account_id) or PaymentMethod(
        account_id=account_id, token=token, last4=last4
    )
    method.token = token
    method.customer = (known.customer if known else None) or data.customer
    method.brand = brand
    method.last4 = last4
    method.exp_month = data.exp_month or (known.exp_month if known else None)
    method.exp_year = data.exp_year or (known.exp_year if known else None)
    method.updated_at = utcnow()
    session.add(method)
    session.flush()
    return method


def _check_account_limits(session: Session, account: Account) -> None:
    """The account's own preset amount must be a deposit its limits allow."""
    if account.preset_amount_cents is None:
        return
    effective = effective_for_account(session, account)
    if (
        not effective.min_deposit_cents
        <= account.preset_amount_cents
        <= effective.max_deposit_cents
    ):
        raise ValidationFailed.single(
            "preset_amount_cents",
            f"must be within the deposit limits ({effective.min_deposit_cents} to "
            f"{effective.max_deposit_cents} cents)",
        )


def _check_autopay_has_card(account: Account, method: PaymentMethod | None) -> None:
    if account.autopay_enabled and method is None:
        raise ValidationFailed.single(
            "autopay_enabled", "AutoPay needs a payment_method on the account"
        )


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "America"
        raise ValidationFailed.single(
            "timezone", f"{name!r} is not an IANA time zone such as America/Chicago"
        ) from None


def _collect(errors: list[FieldError], check: Callable[[], T]) -> T | None:
    """Run one check, adding its field errors to `errors` so that all are reported together."""
    try:
        return check()
    except ValidationFailed as failure:
        errors.extend(failure.errors)
        return None


def account_snapshot(account: Account, method: PaymentMethod | None) -> dict[str, Any]:
    data = audit.snapshot(account) or {}
    data.pop("balance_cents", None)  # moved by the ledger, which is its own audit trail
    data["payment_method"] = audit.snapshot(method)
    return data
