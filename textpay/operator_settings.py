"""Changing the global defaults and facility overrides, checked and audited.

Owns the rule that a change is accepted only if every place it reaches stays valid: a change to
the global defaults is checked as resolved for each facility too, so lowering the global maximum
deposit cannot leave a facility with a minimum above it.
"""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from textpay import audit
from textpay.errors import FieldError, NotFound, ValidationFailed
from textpay.models import SETTING_FIELDS, Facility, GlobalSettings
from textpay.policy import get_global_settings, resolve, validate_settings
from textpay.schemas import FacilityPut, SettingsPatch
from textpay.timeutil import utcnow

_FACILITY_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def update_global_settings(session: Session, patch: SettingsPatch, *, actor: str) -> GlobalSettings:
    row = get_global_settings(session)
    before = audit.snapshot(row)
    changes = patch.changes()
    nulls = [FieldError(name, "must not be null") for name, v in changes.items() if v is None]
    if nulls:
        raise ValidationFailed(nulls)
    for name, value in changes.items():
        if name == "state_quiet_hours":  # stored as JSON lists
            setattr(row, name, {state: list(window) for state, window in value.items()})
        else:
            setattr(row, name, value)
    validate_settings(resolve(row).as_dict())
    for facility in list_facilities(session):
        try:
            validate_settings(resolve(row, facility).as_dict())
        except ValidationFailed as failure:
            raise ValidationFailed(
                [
                    FieldError(error.field, f"{error.message} at facility {facility.code}")
                    for error in failure.errors
                ],
                detail=f"The change would break the settings of facility {facility.code}.",
            ) from None
    row.updated_at = utcnow()
    session.add(row)
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
        raise NotFound(f"facility {code!r} does not exist")
    return facility


def put_facility(
    session: Session, code: str, data: FacilityPut, *, actor: str
) -> tuple[Facility, bool]:
    """Create or replace a facility's overrides. Returns the facility and whether it is new."""
    if not _FACILITY_CODE.match(code):
        raise ValidationFailed.single(
            "code", "must be 1 to 32 letters, digits, hyphens or underscores"
        )
    facility = session.exec(select(Facility).where(Facility.code == code)).first()
    created = facility is None
    before = None if facility is None else audit.snapshot(facility)
    if facility is None:
        facility = Facility(code=code)
    facility.name = data.name
    for name in SETTING_FIELDS:
        setattr(facility, name, getattr(data, name))
    validate_settings(resolve(get_global_settings(session), facility).as_dict())
    facility.updated_at = utcnow()
    session.add(facility)
    session.flush()
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
