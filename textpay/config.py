"""Typed settings read from the environment (and an optional `.env` file).

Owns the names of every environment variable in the public contract (README, Configuration),
their defaults, the normalisation of database URLs, and the production start-up check that
refuses to run without secrets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///textpay.db"
# Used by `textpay serve` and `textpay chat` in development when no secret is configured, so that
# the embedded default works out of the box. Never used in production (`check_production`).
DEVELOPMENT_ADMIN_TOKEN = "dev-token"  # noqa: S105
DEVELOPMENT_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"  # noqa: S105
# Signs the console's session cookie in development when TEXTPAY_SECRET_KEY is unset (anyone can
# read this line, so anyone could forge a development session: production refuses to start
# without a key of its own).
DEVELOPMENT_SECRET_KEY = "textpay-development-secret-key-not-for-production"  # noqa: S105
SECRET_KEY_MIN_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming the variable."""


def normalize_database_url(url: str) -> str:
    """Accept the URL spellings hosting providers hand out and pin PostgreSQL to psycopg 3.

    Heroku-style `postgres://` and bare `postgresql://` would otherwise select psycopg2, which we
    do not install.
    """
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The longest TEXTPAY_PUBLIC_URL: texts carry card links under it and must stay two segments
# (tests/unit/test_replies.py renders them with a base this long).
PUBLIC_URL_MAX = 60
DEVELOPMENT_LINK_BASE = "http://localhost:5000"


class Settings(BaseSettings):
    """Everything an operator configures through the environment."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    env: Literal["development", "production"] = Field(
        default="development", validation_alias=AliasChoices("TEXTPAY_ENV", "env")
    )
    admin_token: str | None = Field(
        default=None, validation_alias=AliasChoices("TEXTPAY_ADMIN_TOKEN", "admin_token")
    )
    secret_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TEXTPAY_SECRET_KEY", "secret_key"),
        description="Signs the operator console's session cookies (and their CSRF values); "
        "at least 32 random characters, required in production.",
    )
    twilio_account_sid: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
    )
    twilio_auth_token: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "twilio_auth_token")
    )
    twilio_from_number: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_FROM_NUMBER", "twilio_from_number")
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "TWILIO_MESSAGING_SERVICE_SID", "twilio_messaging_service_sid"
        ),
    )
    sms_backend: Literal["twilio", "console"] | None = Field(
        default=None, validation_alias=AliasChoices("TEXTPAY_SMS_BACKEND", "sms_backend")
    )
    twilio_api_url: str = Field(
        default="https://api.twilio.com",
        validation_alias=AliasChoices("TEXTPAY_TWILIO_API_URL", "twilio_api_url"),
    )
    public_url: str | None = Field(
        default=None,
        # Card links (`/card/<token>`) are texted under it: a longer base would not leave the
        # texts that carry one room to fit in two SMS segments.
        max_length=PUBLIC_URL_MAX,
        validation_alias=AliasChoices("TEXTPAY_PUBLIC_URL", "public_url"),
    )
    validate_signatures: bool = Field(
        default=True,
        validation_alias=AliasChoices("TEXTPAY_VALIDATE_SIGNATURES", "validate_signatures"),
    )
    payments_backend: Literal["sandbox", "stripe"] = Field(
        default="sandbox",
        validation_alias=AliasChoices("TEXTPAY_PAYMENTS_BACKEND", "payments_backend"),
        description="`sandbox` (deterministic test tokens, the embedded default) or `stripe`.",
    )
    stripe_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_API_KEY", "stripe_api_key")
    )
    stripe_webhook_secret: str | None = Field(
        default=None,
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret"),
    )
    stripe_api_url: str = Field(
        default="https://api.stripe.com",
        validation_alias=AliasChoices("TEXTPAY_STRIPE_API_URL", "stripe_api_url"),
        description="Base URL of Stripe's API (a local stand-in in tests and the demo).",
    )
    stripe_statement_descriptor_suffix: str | None = Field(
        default=None,
        # Stripe's rules: Latin characters (printable ASCII here), at least one letter, none of
        # < > \ ' " *; and what the card holder sees is the account's prefix (2 to 10
        # characters), "* " and the suffix, 22 at most: a longer suffix than 18 fits no prefix,
        # and Stripe would refuse every charge (each YES told its charge failed).
        pattern=r"^[ !#-&(-)+-;=?-\[\]-~]*[A-Za-z][ !#-&(-)+-;=?-\[\]-~]*$",
        max_length=18,
        validation_alias=AliasChoices(
            "TEXTPAY_STRIPE_STATEMENT_DESCRIPTOR_SUFFIX", "stripe_statement_descriptor_suffix"
        ),
        description="Added to the merchant's statement descriptor on each card charge, so "
        "the family recognises the charge on their statement.",
    )
    default_region: str = Field(
        default="US",
        validation_alias=AliasChoices("TEXTPAY_DEFAULT_REGION", "default_region"),
        description="Region assumed for phone numbers written without a country code.",
    )
    sandbox_slow_seconds: float = Field(
        default=20.0,
        ge=0,
        validation_alias=AliasChoices("TEXTPAY_SANDBOX_SLOW_SECONDS", "sandbox_slow_seconds"),
        description="How long the sandbox's tok_slow card takes to answer.",
    )

    gateway_timeout_seconds: float = Field(
        default=8.0,
        gt=0,
        lt=14,
        validation_alias=AliasChoices("TEXTPAY_GATEWAY_TIMEOUT_SECONDS", "gateway_timeout_seconds"),
        description="How long a YES waits for the card charge before answering 'processing'; "
        "below Twilio's 15 s webhook timeout.",
    )
    twilio_handles_opt_out: bool = Field(
        default=False,
        validation_alias=AliasChoices("TEXTPAY_TWILIO_HANDLES_OPT_OUT", "twilio_handles_opt_out"),
        description="Twilio's own opt-out handling answers STOP/START/HELP for the sender: "
        "TextPay then records them without a second reply.",
    )
    program_name: str = Field(
        default="TextPay",
        validation_alias=AliasChoices("TEXTPAY_PROGRAM_NAME", "program_name"),
    )
    support_contact: str = Field(
        default="textpay.example/help",
        validation_alias=AliasChoices("TEXTPAY_SUPPORT_CONTACT", "support_contact"),
        description="Where subscribers get help (a phone number or short URL), named in HELP.",
    )
    inbound_per_minute: int = Field(
        default=20,
        ge=1,
        validation_alias=AliasChoices("TEXTPAY_INBOUND_PER_MINUTE", "inbound_per_minute"),
        description="Texts one number may send per minute before TextPay stops answering it "
        "(STOP always works).",
    )
    trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=5,
        validation_alias=AliasChoices("TEXTPAY_TRUSTED_PROXIES", "trusted_proxies"),
        description="How many reverse proxies set X-Forwarded-* headers in front of TextPay.",
    )
    metrics_token: str | None = Field(
        default=None,
        min_length=16,
        validation_alias=AliasChoices("TEXTPAY_METRICS_TOKEN", "metrics_token"),
        description="Bearer token Prometheus sends to scrape `GET /metrics`; unset, the "
        "endpoint is not there (404).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        validation_alias=AliasChoices("TEXTPAY_LOG_FORMAT", "log_format"),
        description="`text`, or `json`: one JSON object per log line, with the request id.",
    )

    scan_interval_seconds: int = Field(
        default=300,
        ge=10,
        validation_alias=AliasChoices("TEXTPAY_SCAN_INTERVAL_SECONDS", "scan_interval_seconds"),
        description="How often the clock runs the low-balance scan and AutoPay.",
    )
    send_rate: float = Field(
        default=1.0,
        ge=0,
        validation_alias=AliasChoices("TEXTPAY_SEND_RATE", "send_rate"),
        description="Texts per second the dispatcher sends through one sender; 0 for no limit.",
    )
    send_workers: int = Field(
        default=4,
        ge=1,
        le=32,
        validation_alias=AliasChoices("TEXTPAY_SEND_WORKERS", "send_workers"),
        description="Sends the dispatcher keeps in flight at once (still within the send rate).",
    )
    autopay_retry_days: str = Field(
        default="1,3",
        pattern=r"^\d{1,2}(,\d{1,2}){0,4}$",
        validation_alias=AliasChoices("TEXTPAY_AUTOPAY_RETRY_DAYS", "autopay_retry_days"),
        description="Days after each AutoPay decline to try again; after the last, AutoPay "
        "turns off.",
    )

    @property
    def autopay_retry_schedule(self) -> tuple[int, ...]:
        return tuple(int(days) for days in self.autopay_retry_days.split(","))

    @property
    def status_callback_url(self) -> str | None:
        """Where Twilio should post delivery statuses: only knowable from the public URL."""
        return self.public_url.rstrip("/") + "/twilio/status" if self.public_url else None

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def effective_sms_backend(self) -> Literal["twilio", "console"]:
        """`twilio` when credentials are configured, else `console`, unless set explicitly."""
        if self.sms_backend is not None:
            return self.sms_backend
        if self.twilio_account_sid and self.twilio_auth_token:
            return "twilio"
        return "console"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def session_secret(self) -> str:
        """The key that signs console sessions: TEXTPAY_SECRET_KEY, or in development a fixed
        well-known one (`check_production` keeps production from starting without its own)."""
        if self.secret_key:
            return self.secret_key
        if self.is_production:
            raise ConfigError("TEXTPAY_SECRET_KEY is required when TEXTPAY_ENV=production")
        return DEVELOPMENT_SECRET_KEY

    def with_development_secrets(self) -> Settings:
        """These settings, with the well-known development tokens filled in where none is set
        (development only: production settings are returned unchanged)."""
        if self.is_production:
            return self
        return self.model_copy(
            update={
                "admin_token": self.admin_token or DEVELOPMENT_ADMIN_TOKEN,
                "twilio_auth_token": self.twilio_auth_token or DEVELOPMENT_TWILIO_AUTH_TOKEN,
            }
        )

    def check_production(self) -> None:
        """Refuse to start a production process with anything a deployment must not lack.

        Raises `ConfigError` whose message is one line naming the first missing variable.
        """
        if not self.is_production:
            return
        required = {
            "TEXTPAY_ADMIN_TOKEN": self.admin_token,
            "TEXTPAY_SECRET_KEY": self.secret_key,
            "TWILIO_ACCOUNT_SID": self.twilio_account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
        }
        for variable, value in required.items():
            if not value:
                raise ConfigError(f"{variable} is required when TEXTPAY_ENV=production")
        if len(self.secret_key or "") < SECRET_KEY_MIN_LENGTH:
            raise ConfigError(
                f"TEXTPAY_SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters "
                "when TEXTPAY_ENV=production"
            )
        if not (self.twilio_from_number or self.twilio_messaging_service_sid):
            raise ConfigError(
                "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required "
                "when TEXTPAY_ENV=production"
            )
        if not self.validate_signatures:
            raise ConfigError(
                "TEXTPAY_VALIDATE_SIGNATURES=false is not allowed when TEXTPAY_ENV=production"
            )
        if self.payments_backend == "stripe":
            for variable, value in {
                "STRIPE_API_KEY": self.stripe_api_key,
                "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            }.items():
                if not value:
                    raise ConfigError(
                        f"{variable} is required when TEXTPAY_PAYMENTS_BACKEND=stripe "
                        "and TEXTPAY_ENV=production"
                    )

    def check_payments(self) -> None:
        """Refuse payment settings no process may run with, in any environment: Stripe without
        a key, or a live key outside production (a developer's laptop must never move real
        money)."""
        if self.payments_backend != "stripe":
            return
        if not self.stripe_api_key:
            raise ConfigError("STRIPE_API_KEY is required when TEXTPAY_PAYMENTS_BACKEND=stripe")
        if self.stripe_api_key.startswith(("sk_live_", "rk_live_")) and not self.is_production:
            raise ConfigError(
                "STRIPE_API_KEY is a live key; live keys are refused unless TEXTPAY_ENV=production"
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (tests and the CLI use them)."""
    return Settings(**overrides)  # type: ignore[arg-type]
