"""The long-lived objects a request needs (settings, engine, gateway), kept on the Flask app."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from flask import current_app, request
from sqlalchemy.engine import Engine
from werkzeug.sansio.utils import get_current_url

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


def request_engine_config() -> EngineConfig:
    """The engine config for this request: card links point at TEXTPAY_PUBLIC_URL when it is
    set, else at the host this request came to (development: `textpay serve`, a tunnel). On
    Twilio's webhook that host is covered by Twilio's signature, which is computed over it."""
    found = services()
    if found.settings.public_url:
        return found.engine_config
    return _linking_to(found.engine_config, request.scheme, request.host)


@lru_cache(maxsize=8)
def _linking_to(config: EngineConfig, scheme: str, host: str) -> EngineConfig:
    """`config` with card links on this scheme and host (`request.host_url`): made once per
    host, not on every webhook."""
    return replace(config, link_base=get_current_url(scheme, host).rstrip("/"))
