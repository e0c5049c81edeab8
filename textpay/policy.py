"""Settings policy: resolving an account's effective settings and the rules settings must obey.

Resolution runs global defaults → facility overrides → the account's own overrides (threshold and
preset amount). Validation keeps operators from configuring something the money rules forbid,
such as a maximum deposit below the $50 the FCC requires to be allowed, or a sending window that
leaves some numbers no time at all.

Also owns which zone applies to an account: its own when an operator set one; else the zone of
its number's area code; for a number with no usable area code (toll-free, non-geographic) the
facility's zone; else every zone the number may be in. The sending window must hold in all of
them (the most restrictive reading); a text tells times in one of them and names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Protocol

from sqlalchemy import func
from sqlmodel import Session, col, select

from textpay import quiet_hours, settings_cache
from textpay.errors import FieldError, ValidationFailed
from textpay.localtime import FALLBACK_ZONE, country_wide, likeliest_zone, place_of
from textpay.models import NULLABLE_SETTINGS, SETTING_FIELDS, Account, Facility, GlobalSettings

# FCC rules for inmate calling services: a provider must accept deposits of at least $50.
FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS = 5_000
# No single TextPay deposit, credit or usage debit may exceed this: it catches a dollars-for-cents
# mistake in an operator script before it reaches the ledger.
MAX_AMOUNT_CENTS = 1_000_000

# How `closed_places` names the numbers without a usable area code.
TOLL_FREE = "toll-free and non-geographic numbers"

_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

# Allowed range for each integer setting, as (minimum, maximum). Every setting has an upper
# bound: the request schemas (`textpay.schemas`, hence the OpenAPI document) refuse a value
# outside it before anything is stored, and each fits the columns on either database.
SETTING_RANGES: dict[str, tuple[int, int]] = {
    "low_balance_threshold_cents": (0, MAX_AMOUNT_CENTS),
    "preset_amount_cents": (1, MAX_AMOUNT_CENTS),
    "min_deposit_cents": (1, MAX_AMOUNT_CENTS),
    "max_deposit_cents": (FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS, MAX_AMOUNT_CENTS),
    "daily_deposit_limit_cents": (FCC_MINIMUM_ALLOWED_DEPOSIT_CENTS, MAX_AMOUNT_CENTS * 10),
    "deposit_fee_cents": (0, 10_000),
    "prompt_ttl_minutes": (5, 7 * 24 * 60),
    "prompt_cooldown_hours": (1, 30 * 24),
    "daily_message_cap": (1, 20),
    # Whole days; beyond a few weeks a 30-day pace says little about what is left.
    "runway_days": (1, 90),
    # Null (at every level) turns these rules off; below a global value, `passcode_over_cents`
    # at its maximum (no deposit is larger) or `passcode_new_phone_days` 0 turns them off.
    "passcode_over_cents": (0, MAX_AMOUNT_CENTS),
    "passcode_new_phone_days": (0, 365),
}
# Settings an account may override for itself besides its threshold and preset (each also a
# column of `account`). Null (`NULLABLE_SETTINGS`) is "off" globally, "inherit" below.
ACCOUNT_OVERRIDES = ("runway_days", "passcode_over_cents", "passcode_new_phone_days")


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
    runway_days: int | None  # `textpay.runway`: None is off
    passcode_over_cents: int | None  # `textpay.passcodes`: None is never
    passcode_new_phone_days: int | None
    sources: dict[str, str]
    # Where the facility is (not a setting: it is not inherited and not shown among them).
    facility_timezone: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTING_FIELDS}


def get_global_settings(session: Session) -> GlobalSettings:
    """The global settings row, created with the defaults the first time it is needed: for code
    that changes it or must read it as of this transaction. Everything else reads the copy
    `settings_cache` keeps (`cached_global_settings`)."""
    return settings_cache.global_row(session)


def cached_global_settings(session: Session) -> GlobalSettings:
    """The global settings as this process last loaded them (at most a few seconds old; see
    `textpay.settings_cache`). Read only."""
    return settings_cache.current(session).global_settings


class AccountOverrides(Protocol):
    """What `resolve` reads of an account: an `Account`, or the scan's plain row of one."""

    @property
    def threshold_cents(self) -> int | None: ...
    @property
    def preset_amount_cents(self) -> int | None: ...
    @property
    def runway_days(self) -> int | None: ...


class PlacedAccount(Protocol):
    """What the zone rules read of an account: an `Account`, or the scan's plain row of one."""

    @property
    def phone(self) -> str: ...
    @property
    def phone_state(self) -> str | None: ...
    @property
    def phone_zones(self) -> str: ...
    @property
    def timezone(self) -> str | None: ...


def resolve(
    global_settings: GlobalSettings,
    facility: Facility | None = None,
    account: AccountOverrides | None = None,
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
        for name in ACCOUNT_OVERRIDES:  # the scan's plain rows carry only runway_days
            own = getattr(account, name, None)
            if own is not None:
                values[name] = own
                sources[name] = "account"
    return EffectiveSettings(
        **values,
        sources=sources,
        facility_timezone=facility.timezone if facility is not None else None,
    )


class SettledAccount(AccountOverrides, Protocol):
    """What `effective_for_account` reads of an account: an `Account`, or a plain row of one,
    with every override an account may have (`resolve` reads the passcode ones if present)."""

    @property
    def facility_id(self) -> int | None: ...
    @property
    def passcode_over_cents(self) -> int | None: ...
    @property
    def passcode_new_phone_days(self) -> int | None: ...


def effective_for_account(session: Session, account: SettledAccount) -> EffectiveSettings:
    """The settings that apply to `account`, from the settings this process holds (at most a
    few seconds old: `textpay.settings_cache`)."""
    held = settings_cache.current(session, facility_id=account.facility_id)
    return resolve(held.global_settings, held.facility(account.facility_id), account)


def low_balance_threshold_column(*, default: Any) -> Any:
    """Each account's effective low-balance threshold as a SQL expression over `account`: its
    own, else its facility's, else `default` (the global one, or a bound parameter for it). For
    statements that must compare a balance with it without loading the account first."""
    return _resolved_column(Account.threshold_cents, Facility.low_balance_threshold_cents, default)


def runway_days_column(*, default: Any) -> Any:
    """Each account's effective `runway_days` as a SQL expression over `account` (null: off),
    like `low_balance_threshold_column`."""
    return _resolved_column(Account.runway_days, Facility.runway_days, default)


def _resolved_column(own: Any, facility_setting: Any, default: Any) -> Any:
    """`resolve` in SQL for one setting: the account's `own` value, else its facility's, else
    `default`."""
    facility_value = (
        select(facility_setting)
        .where(col(Facility.id) == col(Account.facility_id))
        .correlate(Account)
        .scalar_subquery()
    )
    return func.coalesce(col(own), facility_value, default)


def validate_settings(values: dict[str, Any], *, prefix: str = "") -> None:
    """Check a complete set of settings (after resolution); raise listing every broken rule.

    `prefix` names where the values came from in field paths (e.g. `preset_amount_cents` of an
    account is checked against limits it inherited).
    """
    errors: list[FieldError] = []
    for name, (low, high) in SETTING_RANGES.items():
        value = values[name]
        if value is None and name in NULLABLE_SETTINGS:
            continue
        if value is None or not low <= value <= high:
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
        # Checked here so the message explains the order; a window that some state's law or
        # some zones shut is `closed_places`' concern.
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


def stored_place(account: PlacedAccount) -> tuple[str | None, tuple[str, ...]]:
    """The account's state and phone zones as stored at enrolment, else worked out now."""
    if account.phone_zones:
        return account.phone_state, tuple(account.phone_zones.split(","))
    return place_of(account.phone)


def delivery_rules(session: Session, account: Account) -> DeliveryRules:
    held = settings_cache.current(session, facility_id=account.facility_id)
    effective = resolve(held.global_settings, held.facility(account.facility_id), account)
    return delivery_rules_for(account, effective, state_windows(held.global_settings))


def delivery_rules_for(
    account: PlacedAccount, effective: EffectiveSettings, windows: dict[str, tuple[str, str]]
) -> DeliveryRules:
    """The rules from settings already resolved (the scan resolves once per facility)."""
    state, _ = stored_place(account)
    window = quiet_hours.window_for(
        effective.quiet_hours_start, effective.quiet_hours_end, state, windows
    )
    return DeliveryRules(
        zones=sending_zones(account, effective.facility_timezone),
        window=window,
        daily_cap=effective.daily_message_cap,
    )


def sending_zones(account: PlacedAccount, facility_zone: str | None) -> tuple[str, ...]:
    """The zones the sending window must hold in for this account's number."""
    if account.timezone:
        return (account.timezone,)
    _, zones = stored_place(account)
    if facility_zone and (not zones or country_wide(zones)):
        return (facility_zone,)
    return zones or (FALLBACK_ZONE,)


def text_zone(account: PlacedAccount, facility_zone: str | None) -> tuple[str, bool]:
    """The zone a text tells this account's times in, and whether the text must name it.

    The account's own zone, else its area code's; when the area code spans zones (Alaska's
    907) or there is none (toll-free), the facility's zone if the number may be there; else the
    likeliest of the number's zones, named (`8:00am AKT`), since it is only a guess.
    """
    if account.timezone:
        return account.timezone, False
    state, zones = stored_place(account)
    if len(zones) == 1:
        return zones[0], False
    if facility_zone and (not zones or country_wide(zones) or facility_zone in zones):
        return facility_zone, False
    return likeliest_zone(zones, state), True


@dataclass(frozen=True)
class ClosedPlaces:
    """Where a sending window leaves no sending time (see `closed_places`)."""

    states: tuple[str, ...] = ()  # whose law shuts it
    spanning: tuple[str, ...] = ()  # states (else zones) with area codes it cannot cover
    toll_free: bool = False  # numbers without an area code, which may be in any zone

    def __bool__(self) -> bool:
        return bool(self.states or self.spanning or self.toll_free)

    def describe(self) -> str:
        """In words for an operator: `CT, FL; area codes spanning two zones in AK; ...`."""
        parts = []
        if self.states:
            parts.append(", ".join(self.states))
        if self.spanning:
            parts.append(f"area codes spanning two zones in {', '.join(self.spanning)}")
        if self.toll_free:
            parts.append(f"{TOLL_FREE}, which may be in any North American zone")
        return "; ".join(parts)


def closed_places(
    start: str,
    end: str,
    state_table: dict[str, tuple[str, str]],
    *,
    facility_zone: str | None,
    year: int,
) -> ClosedPlaces:
    """Where the sending window `start`-`end` (already checked to be a non-empty HH:MM pair)
    leaves no sending time on some day of `year`: states whose law shuts it, states whose area
    codes span zones it cannot cover at once, and numbers without an area code (in the
    facility's zone if it has one, else in any zone of the country)."""
    states = [
        state
        for state in sorted(state_table)
        if (shut := quiet_hours.window_for(start, end, state, state_table))[0] >= shut[1]
    ]
    spanning: list[str] = []
    for place, zones in quiet_hours.multi_zone_places():
        label = place or " and ".join(zones)
        if place in states or label in spanning:
            continue
        window = quiet_hours.window_for(start, end, place, state_table)
        if quiet_hours.open_minutes(window, zones, year=year) <= 0:
            spanning.append(label)
    toll_free = False
    if facility_zone is None:  # in the facility's own zone the window is open: start < end
        window = quiet_hours.window_for(start, end, None, state_table)
        toll_free = quiet_hours.open_minutes(window, quiet_hours.country_zones(), year=year) <= 0
    return ClosedPlaces(tuple(states), tuple(spanning), toll_free)
