"""Building the long-lived parts from settings: database engine, payment gateway, engine config.

The web app, the CLI and the clock process all start the same way through `build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from textpay.config import Settings
from textpay.db import make_engine
from textpay.engine import EngineConfig
from textpay.payments import PaymentGateway, SandboxGateway


@dataclass(frozen=True)
class Parts:
    settings: Settings
    db: Engine
    gateway: PaymentGateway
    engine_config: EngineConfig


def build(settings: Settings) -> Parts:
    db = make_engine(settings.database_url)
    return Parts(
        settings=settings,
        db=db,
        gateway=SandboxGateway(db, slow_seconds=settings.sandbox_slow_seconds),
        engine_config=EngineConfig(
            program=settings.program_name,
            support=settings.support_contact,
            carrier_answers_keywords=settings.twilio_handles_opt_out,
            default_region=settings.default_region,
        ),
    )
