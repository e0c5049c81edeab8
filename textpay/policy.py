"""Settings policy: resolving an account's effective settings and the rules settings must obey.

Resolution runs global defaults → facility overrides → the account's own overrides (threshold and
preset amount). Validation keeps operators from configuring something the money rules forbid,
such as a maximum deposit below the $50 the FCC requires to be allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlmodel import Session

from textpay import quiet_hours
from textpay.errors import FieldError, ValidationFailed
from textpay.localtime import FALLBACK_ZONE, place_of
from textpay.models import SETTING_FIELDS, Account, Facility, GlobalSettings

# FCC rules for inmate calling services: a provider must accept deposits of at least $50.
FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS = 5_000
# No single TextPay deposit, credit or usage debit may exceed this: it catches a dollars-for-cents
# mistake in an operator script before it reaches the ledger.
MAX_AMOUNT_CENTS = 1_000_000

_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

# Allowed range for each integer setting, as (minimum, maximum).
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "low_balance_threshold_cents": (0, MAX_AMOUNT_CENTS),
    "preset_amount_cents": (1, MAX_AMOUNT_CENTS),
    "min_deposit_cents": (1, MAX_AMOUNT_CENTS),
    "max_deposit_cents": (FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS, MAX_AMOUNT_CENTS),
    "daily_deposit_limit_cents": (FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS, MAX_AMOUNT_CENTS * 10),
    "deposit_fee_cents": (0, 10_000),
    "prompt_ttl_minutes": (5, 7 * 24 * 60),
    "prompt_cooldown_hours": (1, 30 * 24),
    "daily_message_cap": (1, 20),
}


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings that apply to one account (or facility), with where each value came from."""

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
    sources: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTING_FIELDS}


def get_global_settings(session: Session) -> GlobalSettings:
    """The global settings row, created with the defaults the first time it is needed."""
    row = session.get(GlobalSettings, 1)
    if row is None:
        row = GlobalSettings(id=1)
        session.add(row)
        session.flush()
    return row


def resolve(
    global_settings: GlobalSettings,
    facility: Facility | None = None,
    account: Account | None = None,
) -> EffectiveSettings:
    """Layer facility and account overrides over the global defaults."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in SETTING_FIELDS:
        values[name] = getattr(global_settings, name)
        sources[name] = "global"
        if facility is not None and getattr(facility, name) is not None:
            values[name] = getattr(facility, name)
            sources[name] = "facility"
    if account is not None:
        if account.threshold_cents is not None:
            values["low_balance_threshold_cents"] = account.threshold_cents
            sources["low_balance_threshold_cents"] = "account"
        if account.preset_amount_cents is not None:
            values["preset_amount_cents"] = account.preset_amount_cents
            sources["preset_amount_cents"] = "account"
    return EffectiveSettings(**values, sources=sources)


def effective_for_account(session: Session, account: Account) -> EffectiveSettings:
    facility = session.get(Facility, account.facility_id) if account.facility_id else None
    return resolve(get_global_settings(session), facility, account)


def validate_settings(values: dict[str, Any], *, prefix: str = "") -> None:
    """Check a complete set of settings (after resolution); raise listing every broken rule.

    `prefix` names where the values came from in field paths (e.g. `preset_amount_cents` of an
    account is checked against limits it inherited).
    """
    errors: list[FieldError] = []
    for name, (low, high) in _INTEGER_RANGES.items():
        value = values[name]
        if not low <= value <= high:
            errors.append(FieldError(prefix + name, f"must be between {low} and {high}"))
    for name in ("quiet_hours_start", "quiet_hours_end"):
        if not _HH_MM.match(values[name]):
            errors.append(FieldError(prefix + name, "must be a 24-hour time written HH:MM"))
    if errors:
        raise ValidationFailed(errors)

    if values["min_deposit_cents"] > values["max_deposit_cents"]:
        errors.append(
            FieldError(prefix + "min_deposit_cents", "must not be more than max_deposit_cents")
        )
    if (
        not values["min_deposit_cents"]
        <= values["preset_amount_cents"]
        <= values["max_deposit_cents"]
    ):
        errors.append(
            FieldError(
                prefix + "preset_amount_cents",
                f"must be within the deposit limits ({values['min_deposit_cents']} to "
                f"{values['max_deposit_cents']} cents)",
            )
        )
    if values["daily_deposit_limit_cents"] < values["max_deposit_cents"]:
        errors.append(
            FieldError(
                prefix + "daily_deposit_limit_cents", "must not be less than max_deposit_cents"
            )
        )
    if values["quiet_hours_start"] >= values["quiet_hours_end"]:
        errors.append(
            FieldError(
                prefix + "quiet_hours_end",
                "must be later than quiet_hours_start (they bound the hours in which "
                "TextPay may start a conversation)",
            )
        )
    if errors:
        raise ValidationFailed(errors)


@dataclass(frozen=True)
class DeliveryRules:
    """When and how often TextPay may start a conversation with one account's number."""

    zones: tuple[str, ...]
    window: tuple[time, time]
    daily_cap: int

    def allows(self, moment: datetime) -> bool:
        return quiet_hours.allowed(moment, self.zones, self.window)

    def next_allowed(self, moment: datetime) -> datetime:
        return quiet_hours.next_allowed(moment, self.zones, self.window)


def state_windows(global_settings: GlobalSettings) -> dict[str, tuple[str, str]]:
    return {
        state: (window[0], window[1])
        for state, window in (global_settings.state_quiet_hours or {}).items()
    }


def stored_place(account: Account) -> tuple[str | None, tuple[str, ...]]:
    """The account's state and phone zones as stored at enrolment, else worked out now."""
    if account.phone_zones:
        return account.phone_state, tuple(account.phone_zones.split(","))
    return place_of(account.phone)


def delivery_rules(session: Session, account: Account) -> DeliveryRules:
    global_settings = get_global_settings(session)
    facility = session.get(Facility, account.facility_id) if account.facility_id else None
    effective = resolve(global_settings, facility, account)
    return delivery_rules_for(account, effective, state_windows(global_settings))


def delivery_rules_for(
    account: Account, effective: EffectiveSettings, windows: dict[str, tuple[str, str]]
) -> DeliveryRules:
    """The rules from settings already resolved (the scan resolves once per facility)."""
    state, zones = stored_place(account)
    window = quiet_hours.window_for(
        effective.quiet_hours_start, effective.quiet_hours_end, state, windows
    )
    return DeliveryRules(
        zones=(account.timezone,) if account.timezone else zones or (FALLBACK_ZONE,),
        window=window,
        daily_cap=effective.daily_message_cap,
    )
