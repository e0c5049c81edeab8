"""Settings from the environment: URL spellings, backends, and the production start-up check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from textpay.config import ConfigError, Settings, normalize_database_url
from webhooks.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/textpay", "postgresql+psycopg://u:p@db:5432/textpay"),
        ("postgresql://u:p@db/textpay", "postgresql+psycopg://u:p@db/textpay"),
        ("postgresql+psycopg://u@db/textpay", "postgresql+psycopg://u@db/textpay"),
        ("sqlite:///textpay.db", "sqlite:///textpay.db"),
    ],
)
def test_database_urls_are_normalised_to_psycopg3(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert settings(database_url=given).database_url == expected


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://h/db")
    monkeypatch.setenv("TEXTPAY_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("TEXTPAY_VALIDATE_SIGNATURES", "false")
    loaded = Settings(_env_file=None)  # type: ignore[call-arg]
    assert loaded.database_url == "postgresql+psycopg://h/db"
    assert loaded.admin_token == "s3cret"
    assert loaded.validate_signatures is False


def test_sms_backend_follows_credentials_unless_set() -> None:
    assert settings().effective_sms_backend == "console"
    with_creds = settings(twilio_account_sid="AC1", twilio_auth_token="t")
    assert with_creds.effective_sms_backend == "twilio"
    assert (
        settings(
            twilio_account_sid="AC1", twilio_auth_token="t", sms_backend="console"
        ).effective_sms_backend
        == "console"
    )


COMPLETE = {
    "env": "production",
    "admin_token": "a",
    "secret_key": "s" * 32,
    "twilio_account_sid": "AC1",
    "twilio_auth_token": "t",
    "twilio_from_number": "+12125550100",
}


@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("admin_token", "TEXTPAY_ADMIN_TOKEN"),
        ("secret_key", "TEXTPAY_SECRET_KEY"),
        ("twilio_account_sid", "TWILIO_ACCOUNT_SID"),
        ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
        ("twilio_from_number", "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"),
    ],
)
def test_production_refuses_to_start_without_a_secret(missing: str, variable: str) -> None:
    values = {k: v for k, v in COMPLETE.items() if k != missing}
    with pytest.raises(ConfigError) as raised:
        settings(**values).check_production()
    message = str(raised.value)
    assert message.startswith(variable + " is required")
    assert "\n" not in message


def test_production_accepts_a_messaging_service_and_refuses_unsigned_webhooks() -> None:
    values = {k: v for k, v in COMPLETE.items() if k != "twilio_from_number"}
    settings(**values, twilio_messaging_service_sid="MG1").check_production()
    with pytest.raises(ConfigError, match="TEXTPAY_VALIDATE_SIGNATURES"):
        settings(**COMPLETE, validate_signatures=False).check_production()
    settings(validate_signatures=False).check_production()  # fine in development


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(ConfigError, match="TEXTPAY_SECRET_KEY must be at least 32"):
        settings(**{**COMPLETE, "secret_key": "short"}).check_production()


def test_cli_in_production_without_secrets_prints_one_line() -> None:
    result = CliRunner().invoke(
        cli,
        ["init-db"],
        env={"TEXTPAY_ENV": "production", "TEXTPAY_ADMIN_TOKEN": "", "DATABASE_URL": "sqlite://"},
    )
    assert result.exit_code != 0
    assert (
        result.output.strip()
        == "Error: TEXTPAY_ADMIN_TOKEN is required when TEXTPAY_ENV=production"
    )


def test_wsgi_in_production_without_secrets_exits_with_one_line(tmp_path: Path) -> None:
    env = {"TEXTPAY_ENV": "production", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "textpay: TEXTPAY_ADMIN_TOKEN is required when TEXTPAY_ENV=production"
    )


STRIPE = {"payments_backend": "stripe", "stripe_api_key": "sk_live_1",
          "stripe_webhook_secret": "whsec_1"}  # fmt: skip


@pytest.mark.parametrize(
    ("missing", "variable"),
    [("stripe_api_key", "STRIPE_API_KEY"), ("stripe_webhook_secret", "STRIPE_WEBHOOK_SECRET")],
)
def test_production_with_stripe_refuses_to_start_without_its_secrets(
    missing: str, variable: str
) -> None:
    values = {**COMPLETE, **{k: v for k, v in STRIPE.items() if k != missing}}
    with pytest.raises(ConfigError) as raised:
        settings(**values).check_production()
    message = str(raised.value)
    assert message.startswith(variable + " is required when TEXTPAY_PAYMENTS_BACKEND=stripe")
    assert "\n" not in message
    settings(**COMPLETE, **STRIPE).check_production()  # complete: starts
    settings(**COMPLETE, **STRIPE).check_payments()  # a live key is for production


def test_wsgi_in_production_with_stripe_and_no_key_exits_naming_it(tmp_path: Path) -> None:
    env = {"TEXTPAY_ENV": "production", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "TEXTPAY_ADMIN_TOKEN": "a", "TEXTPAY_SECRET_KEY": "s" * 32,
           "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
           "TWILIO_FROM_NUMBER": "+12125550100", "TEXTPAY_PAYMENTS_BACKEND": "stripe",
           "STRIPE_WEBHOOK_SECRET": "whsec_1", "DATABASE_URL": "sqlite://"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("textpay: STRIPE_API_KEY is required")


@pytest.mark.parametrize("key", ["sk_live_abc", "rk_live_abc"])
def test_a_live_stripe_key_is_refused_outside_production(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(payments_backend="stripe", stripe_api_key=key).check_payments()
    assert str(raised.value).startswith("STRIPE_API_KEY is a live key")
    settings(payments_backend="stripe", stripe_api_key="sk_test_abc").check_payments()


def test_the_app_will_not_start_with_a_live_key_in_development() -> None:
    from webhooks import create_app  # noqa: PLC0415 (the web app, only for this check)

    values = {"database_url": "sqlite://", "payments_backend": "stripe",
              "stripe_api_key": "sk_live_abc"}  # fmt: skip
    with pytest.raises(ConfigError, match="STRIPE_API_KEY is a live key"):
        create_app(settings(**values))
    with pytest.raises(ConfigError, match="STRIPE_API_KEY is required"):
        create_app(settings(**{**values, "stripe_api_key": None}))


@pytest.mark.parametrize(
    "suffix",
    [
        "X" * 19,  # with "* " and the shortest prefix (2), past Stripe's 22
        "X" * 22,
        "CALLS\nNOW",  # not Latin characters: refused by Stripe on every charge
        "LLAMADAS Ñ",
        "CALLS\x00",
        "1234",  # no letter
        'SAY "HI"',
    ],
)
def test_a_statement_descriptor_suffix_stripe_would_refuse_on_every_charge_is_refused(
    suffix: str,
) -> None:
    with pytest.raises(ValueError, match="stripe_statement_descriptor_suffix"):
        Settings(_env_file=None, stripe_statement_descriptor_suffix=suffix)  # type: ignore[call-arg]


@pytest.mark.parametrize("suffix", ["CALLS", "X" * 18, "TOP-UP #42", "a[b]c_d"])
def test_a_statement_descriptor_suffix_that_fits_any_prefix_is_kept(suffix: str) -> None:
    settings = Settings(_env_file=None, stripe_statement_descriptor_suffix=suffix)  # type: ignore[call-arg]
    assert settings.stripe_statement_descriptor_suffix == suffix
