"""Admin routes for the global defaults and per-facility overrides (and each facility's zone)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlmodel import Session

from textpay.models import Facility, OperatorRole
from textpay.operator_settings import (
    FacilityIn,
    get_facility,
    list_facilities,
    put_facility,
    update_global_settings,
)
from textpay.policy import get_global_settings
from textpay.schemas import SettingsPatch
from webhooks.admin import bp, requires
from webhooks.admin.requests import actor, body
from webhooks.admin.serializers import facility_json, settings_json
from webhooks.transactions import in_transaction


@bp.get("/settings")
def show_settings() -> Response:
    return jsonify(in_transaction(lambda session: settings_json(get_global_settings(session))))


@bp.patch("/settings")
@requires(OperatorRole.ADMIN)
def change_settings() -> Response:
    patch = body(SettingsPatch)
    who = actor()
    return jsonify(
        in_transaction(
            lambda session: settings_json(update_global_settings(session, patch, actor=who))
        )
    )


def _facility(session: Session, facility: Facility) -> dict[str, Any]:
    return {**facility_json(session, facility), "timezone": facility.timezone}


@bp.get("/facilities")
def facilities() -> Response:
    return jsonify(
        facilities=in_transaction(
            lambda session: [_facility(session, f) for f in list_facilities(session)]
        )
    )


@bp.get("/facilities/<code>")
def show_facility(code: str) -> Response:
    return jsonify(in_transaction(lambda session: _facility(session, get_facility(session, code))))


@bp.put("/facilities/<code>")
@requires(OperatorRole.ADMIN)
def replace_facility(code: str) -> tuple[Response, int]:
    data = body(FacilityIn)
    who = actor()

    def work(session: Session) -> tuple[dict[str, Any], bool]:
        facility, created = put_facility(session, code, data, actor=who)
        return _facility(session, facility), created

    shown, created = in_transaction(work)
    return jsonify(shown), 201 if created else 200
