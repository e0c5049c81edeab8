"""The shapes of what operators send: accounts, payment methods, settings, usage and credits.

Owns field-level rules (types, ranges, patterns, unknown fields) so that every way in (the admin
API, the demo's fixture loader, scripts) rejects the same bad input with the same messages.
Rules that need the database, such as deposit limits inherited from a facility, live in the
services that use these shapes. Money is always integer cents: strict mode refuses `25.0`,
`"2500"` and `true` where cents are expected.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from textpay.models import ID_MAX
from textpay.policy import MAX_AMOUNT_CENTS, SETTING_RANGES
from textpay.redaction import has_card_number

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What an operator is told when a field holds a card number (the field, never the number).
CARD_NUMBER_REFUSED = "must not contain a card number (card numbers are never stored)"

Cents = Annotated[int, Field(ge=0, le=MAX_AMOUNT_CENTS)]
PositiveCents = Annotated[int, Field(ge=1, le=MAX_AMOUNT_CENTS)]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
RunwayDays = Annotated[
    int, Field(ge=SETTING_RANGES["runway_days"][0], le=SETTING_RANGES["runway_days"][1])
]


class StrictInput(BaseModel):
    """Base for operator input: unknown fields are errors, and types are never coerced.

    No text field may hold a card number (`textpay.redaction`), whether it is stored, shown or
    texted to a subscriber: a nickname, a reason, a facility's name, an account number. A
    subclass lists in `card_numbers_allowed` the fields that are exempt, and says why.
    """

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    card_numbers_allowed: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _plain_text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        # PostgreSQL refuses NUL in text, and no field of ours has a use for control characters.
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        if info.field_name not in cls.card_numbers_allowed and has_card_number(value):
            raise ValueError(CARD_NUMBER_REFUSED)
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the sender actually wrote (a PATCH touches only these)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class PaymentMethodIn(StrictInput):
    card_numbers_allowed = frozenset({"token"})  # refused below, with a message of its own

    token: Annotated[str, StringConstraints(min_length=3, max_length=255)]
    # The processor's customer the card belongs to (Stripe: `cus_...`); Stripe's gateway
    # creates one for the account when left out.
    customer: (
        Annotated[str, StringConstraints(min_length=3, max_length=255, pattern=r"^[\x21-\x7e]+$")]
        | None
    ) = None
    brand: Annotated[str, StringConstraints(min_length=1, max_length=20)] | None = None
    last4: Annotated[str, StringConstraints(pattern=r"^\d{4}$")] | None = None
    exp_month: Annotated[int, Field(ge=1, le=12)] | None = None
    exp_year: Annotated[int, Field(ge=2000, le=2100)] | None = None

    @field_validator("token")
    @classmethod
    def _not_a_card_number(cls, token: str) -> str:
        # A card number must never be stored as a "token".
        if has_card_number(token):
            raise ValueError(
                "looks like a card number; send the payment gateway's token, never the card"
            )
        return token


AccountNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Nickname = Annotated[str, StringConstraints(max_length=40)]


def _setting(name: str) -> Any:
    """An optional integer setting with its range from `textpay.policy.SETTING_RANGES`: the
    schema (and the OpenAPI document made from it) states every bound the policy enforces."""
    low, high = SETTING_RANGES[name]
    return Field(default=None, ge=low, le=high)


# A phone number is stored only as libphonenumber's E.164 form of it, never as typed, and a
# valid one can pass the card rule (`+86 138 0013 8002`: 13 digits, Luhn-valid): it is checked
# as a phone number (`textpay.phones.to_e164`, which never repeats a card number back).
_PHONE_NOT_A_CARD = frozenset({"phone"})


class AccountCreate(StrictInput):
    card_numbers_allowed = _PHONE_NOT_A_CARD

    account_number: AccountNumber
    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    facility: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    nickname: Nickname = ""
    language: Literal["en", "es"] = "en"
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    textpay_enabled: bool = True
    autopay_enabled: bool = False
    preset_amount_cents: PositiveCents | None = None
    threshold_cents: Cents | None = None
    runway_days: RunwayDays | None = None
    payment_method: PaymentMethodIn | None = None
    # The account's own passcode rules (null: the facility's, else the global ones).
    passcode_over_cents: int | None = _setting("passcode_over_cents")
    passcode_new_phone_days: int | None = _setting("passcode_new_phone_days")


class AccountUpdate(StrictInput):
    """Every field optional; a field sent as null clears an override (threshold, preset, ...)."""

    card_numbers_allowed = _PHONE_NOT_A_CARD

    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    facility: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    nickname: Nickname | None = None
    language: Literal["en", "es"] | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    textpay_enabled: bool | None = None
    autopay_enabled: bool | None = None
    preset_amount_cents: PositiveCents | None = None
    threshold_cents: Cents | None = None
    runway_days: RunwayDays | None = None
    status: Literal["active", "suspended", "closed"] | None = None
    payment_method: PaymentMethodIn | None = None
    passcode_over_cents: int | None = _setting("passcode_over_cents")
    passcode_new_phone_days: int | None = _setting("passcode_new_phone_days")


# Fields of AccountUpdate that cannot be null: sending null for them is an error, not a clear.
ACCOUNT_FIELDS_NOT_NULLABLE = (
    "phone",
    "nickname",
    "language",
    "textpay_enabled",
    "autopay_enabled",
    "status",
)


class SettingsFields(StrictInput):
    """The settings shared by the global defaults and each facility's overrides. Every integer
    has its bounds here; rules between fields (min below max, ...) are `policy`'s."""

    low_balance_threshold_cents: int | None = _setting("low_balance_threshold_cents")
    preset_amount_cents: int | None = _setting("preset_amount_cents")
    min_deposit_cents: int | None = _setting("min_deposit_cents")
    max_deposit_cents: int | None = _setting("max_deposit_cents")
    daily_deposit_limit_cents: int | None = _setting("daily_deposit_limit_cents")
    deposit_fee_cents: int | None = _setting("deposit_fee_cents")
    prompt_ttl_minutes: int | None = _setting("prompt_ttl_minutes")
    prompt_cooldown_hours: int | None = _setting("prompt_cooldown_hours")
    quiet_hours_start: HHMM | None = None
    quiet_hours_end: HHMM | None = None
    daily_message_cap: int | None = _setting("daily_message_cap")
    # Offer also when the days of calls left at the usual pace fall below this (null: off for
    # the global default, "inherit" for a facility).
    runway_days: int | None = _setting("runway_days")
    # Null at the global level: the rule is off; at a facility: the global value.
    passcode_over_cents: int | None = _setting("passcode_over_cents")
    passcode_new_phone_days: int | None = _setting("passcode_new_phone_days")


StateCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class SettingsPatch(SettingsFields):
    """A change to the global defaults; only the fields sent are changed, none may be null
    but `runway_days` (null: the runway rule is off).

    `state_quiet_hours` replaces the table of state windows stricter than the default, e.g.
    `{"FL": ["08:00", "20:00"], "CT": ["09:00", "20:00"]}`.
    """

    state_quiet_hours: dict[StateCode, tuple[HHMM, HHMM]] | None = None

    @field_validator("state_quiet_hours")
    @classmethod
    def _windows_are_not_empty(
        cls, table: dict[str, tuple[str, str]] | None
    ) -> dict[str, tuple[str, str]] | None:
        for state, (start, end) in (table or {}).items():
            if start >= end:
                raise ValueError(f"{state}: the window must end after it starts")
        return table


class FacilityPut(SettingsFields):
    """A facility and its overrides, replaced whole.

    A field left out or null inherits the global value.
    """

    name: Annotated[str, StringConstraints(max_length=200)] = ""


class UsageIn(StrictInput):
    # The calling platform's own id of the call charges: a machine's identifier, never texted.
    # Call ids look like card numbers often enough (Asterisk's `1705312345.1234` is 14 digits
    # around a dot, Luhn-valid one time in ten) that refusing them would drop real charges.
    card_numbers_allowed = frozenset({"reference"})

    amount_cents: PositiveCents
    reference: Annotated[str, StringConstraints(min_length=1, max_length=150)]


class CreditIn(StrictInput):
    amount_cents: PositiveCents
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    kind: Literal["credit", "refund"] = "credit"


class CardRefundIn(StrictInput):
    """Money back to the card a deposit came from (`textpay.card_refunds`). The reason is kept
    on the refund and the ledger, so it may not hold a card number either."""

    deposit_id: Annotated[int, Field(ge=1, le=ID_MAX)]
    amount_cents: PositiveCents
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasscodeIn(StrictInput):
    """An account's passcode (`PUT /admin/accounts/{id}/passcode`): exactly four ASCII digits,
    taken as sent (no spaces trimmed: a passcode that is not what was typed is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)

    passcode: Annotated[str, StringConstraints(min_length=4, max_length=4, pattern=r"^[0-9]{4}$")]


# An operator's email: ASCII only (lower-casing it never changes its length), short enough that
# `operator:<email>` fits the audit trail's 100-character actor.
OperatorEmail = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=90,
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$",
    ),
]


class OperatorIn(StrictInput):
    """A new operator (`textpay.operators.create_operator`); the password is made for them."""

    email: OperatorEmail
    name: Annotated[str, StringConstraints(max_length=100)] = ""
    role: Literal["viewer", "agent", "admin"]


class TokenIn(StrictInput):
    """A new API token. `operator_id` is for the bootstrap owner (TEXTPAY_ADMIN_TOKEN), which
    mints a token on an operator's behalf; an operator's own token mints for itself."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    operator_id: Annotated[int, Field(ge=1, le=ID_MAX)] | None = None
