"""The long-lived objects a request needs (settings, engine, gateway), kept on the Flask app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.engine import Engine

from textpay.config import Settings
from textpay.engine_config import EngineConfig
from textpay.payments import PaymentGateway


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    gateway: PaymentGateway
    engine_config: EngineConfig


def services() -> Services:
    found = current_app.extensions["textpay"]
    assert isinstance(found, Services)
    return found
