"""Changing the global defaults and facility overrides, checked and audited.

Owns the rule that a change is accepted only if every place it reaches stays valid: a change to
the global defaults is checked as resolved for each facility too, so lowering the global maximum
deposit cannot leave a facility with a minimum above it. That includes the sending window: one
that a state's law, or the zones a number may be in, would leave with no sending time is
refused here, naming where, rather than discovered by the scan or the dispatcher at night.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import StringConstraints
from sqlmodel import Session, col, select

from textpay import audit, settings_cache
from textpay.errors import FieldError, NotFound, ValidationFailed
from textpay.models import NULLABLE_SETTINGS, SETTING_FIELDS, Facility, GlobalSettings
from textpay.policy import (
    closed_places,
    get_global_settings,
    resolve,
    state_windows,
    validate_settings,
)
from textpay.redaction import has_card_number, mask_card_numbers
from textpay.schemas import CARD_NUMBER_REFUSED, FacilityPut, SettingsPatch
from textpay.timeutil import utcnow

_FACILITY_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# The fields a closed window is reported on, in the order they are blamed when several changed.
_WINDOW_FIELDS = ("quiet_hours_start", "quiet_hours_end", "state_quiet_hours")


class FacilityIn(FacilityPut):
    """A facility as `PUT /admin/facilities/{code}` takes it: its overrides, and where it is
    (an IANA zone, e.g. `America/Chicago`: the zone of its accounts whose numbers have no
    usable area code). A field left out or null inherits, or for `timezone` is unknown."""

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_window(
    values: dict[str, Any],
    state_table: dict[str, tuple[str, str]],
    *,
    facility_zone: str | None,
    field: str,
    facility: str | None = None,
) -> None:
    """Refuse settings (already valid field by field) whose sending window some state's law or
    some number's zones would leave with no sending time, naming where."""
    start, end = values["quiet_hours_start"], values["quiet_hours_end"]
    closed = closed_places(start, end, state_table, facility_zone=facility_zone,
                           year=utcnow().year)  # fmt: skip
    if not closed:
        return
    message = f"quiet hours {start}\N{EN DASH}{end} leave no sending time in {closed.describe()}"
    if facility is not None:
        message += f" at facility {facility}"
        if facility_zone is None and closed.toll_free:
            message += " (give the facility a timezone, or widen the window)"
    raise ValidationFailed([FieldError(field, message)], detail=f"Q{message[1:]}.")


def update_global_settings(session: Session, patch: SettingsPatch, *, actor: str) -> GlobalSettings:
    row = get_global_settings(session)
    before = audit.snapshot(row)
    changes = patch.changes()
    nulls = [
        FieldError(name, "must not be null")
        for name, v in changes.items()
        if v is None and name not in NULLABLE_SETTINGS  # null: the rule is off
    ]
    if nulls:
        raise ValidationFailed(nulls)
    for name, value in changes.items():
        if name == "state_quiet_hours":  # stored as JSON lists
            setattr(row, name, {state: list(window) for state, window in value.items()})
        else:
            setattr(row, name, value)
    table = state_windows(row)
    blamed = next((name for name in _WINDOW_FIELDS if name in changes), "quiet_hours_start")
    values = resolve(row).as_dict()
    validate_settings(values)
    # Accounts without a facility (or whose facility has no zone) take the global window as is.
    check_window(values, table, facility_zone=None, field=blamed)
    for facility in list_facilities(session):
        at_facility = resolve(row, facility).as_dict()
        try:
            validate_settings(at_facility)
        except ValidationFailed as failure:
            raise ValidationFailed(
                [
                    FieldError(error.field, f"{error.message} at facility {facility.code}")
                    for error in failure.errors
                ],
                detail=f"The change would break the settings of facility {facility.code}.",
            ) from None
        check_window(at_facility, table, facility_zone=facility.timezone, field=blamed,
                     facility=facility.code)  # fmt: skip
    row.updated_at = utcnow()
    session.add(row)
    settings_cache.changed(session)
    after = audit.snapshot(row)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="settings.update",
            entity_type="settings",
            entity_id="global",
            before=before,
            after=after,
        )
    return row


def list_facilities(session: Session) -> list[Facility]:
    return list(session.exec(select(Facility).order_by(col(Facility.code))))


def get_facility(session: Session, code: str) -> Facility:
    facility = None
    if _FACILITY_CODE.match(code):
        facility = session.exec(select(Facility).where(Facility.code == code)).first()
    if facility is None:
        raise NotFound(f"facility {mask_card_numbers(code)[0]!r} does not exist")
    return facility


def put_facility(
    session: Session, code: str, data: FacilityPut, *, actor: str
) -> tuple[Facility, bool]:
    """Create or replace a facility's overrides (and its zone, when `data` carries one: a
    `FacilityIn`). Returns the facility and whether it is new."""
    if not _FACILITY_CODE.match(code):
        raise ValidationFailed.single(
            "code", "must be 1 to 32 letters, digits, hyphens or underscores"
        )
    if has_card_number(code):  # the code is stored, listed and shown on every account of it
        raise ValidationFailed.single("code", CARD_NUMBER_REFUSED)
    zone = getattr(data, "timezone", None)
    if zone is not None and zone not in _iana_zones():
        raise ValidationFailed.single(
            "timezone", f"{zone!r} is not an IANA time zone such as America/Chicago"
        )
    facility = session.exec(select(Facility).where(Facility.code == code)).first()
    created = facility is None
    before = None if facility is None else audit.snapshot(facility)
    if facility is None:
        facility = Facility(code=code)
    # Checked before the changed row can reach the database: a query's autoflush would
    # otherwise write it first, and a value no column holds would fail there, not here.
    with session.no_autoflush:
        facility.name = data.name
        facility.timezone = zone
        for name in SETTING_FIELDS:
            setattr(facility, name, getattr(data, name))
        global_settings = get_global_settings(session)
        values = resolve(global_settings, facility).as_dict()
        validate_settings(values)
    blamed = next(
        (name for name in _WINDOW_FIELDS if getattr(data, name, None) is not None),
        "quiet_hours_start",
    )
    check_window(values, state_windows(global_settings), facility_zone=zone, field=blamed,
                 facility=code)  # fmt: skip
    facility.updated_at = utcnow()
    session.add(facility)
    session.flush()
    settings_cache.changed(session)
    after = audit.snapshot(facility)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="facility.create" if created else "facility.update",
            entity_type="facility",
            entity_id=code,
            before=before,
            after=after,
        )
    return facility, created
