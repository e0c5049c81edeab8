"""Building the long-lived parts from settings: database engine, payment gateway, SMS sender,
engine config.

The web app, the CLI and the clock process all start the same way through `build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from textpay.config import DEVELOPMENT_LINK_BASE, ConfigError, Settings
from textpay.db import make_engine
from textpay.engine_config import EngineConfig
from textpay.payments import PaymentGateway, SandboxGateway
from textpay.sms import ConsoleSender, SmsSender, TwilioSender


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
        gateway=make_gateway(settings, db),
        engine_config=EngineConfig(
            program=settings.program_name,
            support=settings.support_contact,
            carrier_answers_keywords=settings.twilio_handles_opt_out,
            default_region=settings.default_region,
            autopay_retry_days=settings.autopay_retry_schedule,
            inbound_per_minute=settings.inbound_per_minute,
            link_base=settings.public_url or DEVELOPMENT_LINK_BASE,
        ),
    )


def make_gateway(settings: Settings, db: Engine) -> PaymentGateway:
    """Stripe when configured so (with a key no environment refuses), else the sandbox."""
    settings.check_payments()
    if settings.payments_backend == "stripe":
        assert settings.stripe_api_key is not None  # check_payments refused it missing
        # Imported only here: Stripe's SDK (and the HTTP clients it loads) is a fifth of a web
        # worker's start-up, and a sandbox never needs it.
        from textpay.payments.stripe import StripeGateway  # noqa: PLC0415

        return StripeGateway(
            settings.stripe_api_key,
            api_url=settings.stripe_api_url,
            statement_descriptor_suffix=settings.stripe_statement_descriptor_suffix,
        )
    return SandboxGateway(db, slow_seconds=settings.sandbox_slow_seconds)


def make_sender(settings: Settings) -> SmsSender:
    """Twilio when configured (or asked for), else the console."""
    if settings.effective_sms_backend == "console":
        return ConsoleSender()
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise ConfigError(
            "TEXTPAY_SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    if not (settings.twilio_from_number or settings.twilio_messaging_service_sid):
        raise ConfigError(
            "TEXTPAY_SMS_BACKEND=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
        )
    return TwilioSender(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        api_url=settings.twilio_api_url,
    )
