"""The `textpay` command: set up the database, serve, check the ledger, manage operators.

Each command is an edge: it reads settings, opens its own transactions and turns errors into one
clear line and an exit status that scripts can test.
"""

from __future__ import annotations

import io
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlmodel import Session
from werkzeug.serving import run_simple

from scheduler import card_expiry as card_expiry_job
from scheduler import clock
from scheduler import reconcile as reconcile_job
from scheduler import scan as scan_job
from textpay import ledger, logformat, logsafe, operators
from textpay.config import ConfigError, Settings, load_settings
from textpay.db import SchemaError, create_schema, make_engine, unit_of_work
from textpay.errors import TextPayError, ValidationFailed
from textpay.models import OperatorRole
from textpay.phones import to_e164
from textpay.schemas import OperatorIn
from textpay.sms import ConsoleSender, SmsSender
from textpay.timeutil import utcnow
from textpay.wiring import build, make_sender
from webhooks import chat, create_app
from webhooks import demo as demo_story
from webhooks.phone import Phone


def _settings() -> Settings:
    try:
        settings = load_settings()
        settings.check_production()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    return settings


@click.group(help="TextPay: keep prepaid calling accounts funded over SMS.")
def cli() -> None:
    pass


@cli.command("init-db")
def init_db() -> None:
    """Migrate the database to the newest schema and add default settings (safe to repeat)."""
    settings = _settings()
    try:
        create_schema(make_engine(settings.database_url))
    except SchemaError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"database ready: {_describe(settings.database_url)}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=lambda: int(os.environ.get("PORT", "5000")),
    show_default="$PORT or 5000",
    help="Port to listen on.",
)
def serve(host: str, port: int) -> None:
    """Run the development server on the embedded default (creates the database if needed)."""
    logsafe.install()  # the development server's request log and errors (textpay/logsafe.py)
    configured = _settings()
    if configured.log_format == "json":  # werkzeug's request lines and the jobs' too
        logformat.configure("json")
    settings = configured.with_development_secrets()
    create_schema(make_engine(settings.database_url))
    app = create_app(settings)
    click.echo(f"TextPay on http://{host}:{port} with {_describe(settings.database_url)}")
    if settings.admin_token != configured.admin_token:
        click.echo(f"admin API token (development): {settings.admin_token}")
    if settings.twilio_auth_token != configured.twilio_auth_token:
        click.echo("webhooks are checked against the development Twilio token; "
                   "`textpay chat` signs with it")  # fmt: skip
    jobs = clock.background(build(settings), _sender(settings))
    jobs.start()
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        jobs.shutdown(wait=False)


@cli.command("clock")
def clock_command() -> None:
    """Run the scheduled jobs (scan, AutoPay, expiry, reconciler, dispatcher) in this process."""
    _settings()
    clock.main()


@cli.command("scan")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be sent and charged; change nothing."
)
def scan_command(dry_run: bool) -> None:
    """Run the low-balance scan (and AutoPay) once, now."""
    parts = build(_settings())
    result = scan_job.run(
        parts.db,
        parts.gateway,
        parts.engine_config,
        gateway_timeout=parts.settings.gateway_timeout_seconds,
        dry_run=dry_run,
    )
    for planned in result.planned:
        when = planned.get("send_after") or "now"
        click.echo(f"{planned['kind']} to {planned['phone']} at {when}: {planned['body']}")
    if not result.leader:
        click.echo("another scan is running; this one stepped aside")
    counts = ", ".join(f"{name} {value}" for name, value in result.counts().items())
    click.echo(("would have: " if dry_run else "") + counts)


@cli.command("card-expiry")
def card_expiry_command() -> None:
    """Queue the texts warning of cards on file about to expire (the clock does it daily)."""
    parts = build(_settings())
    result = card_expiry_job.run(parts.db, parts.engine_config)
    if not result.leader:
        click.echo("another clock is sending card-expiry warnings; this one stepped aside")
    click.echo(", ".join(f"{name} {value}" for name, value in result.counts().items()))


@cli.command()
@click.option(
    "--grace-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Leave attempts younger than this to the request that started them.",
)
def reconcile(grace_seconds: float) -> None:
    """Settle card charges left pending by a slow gateway or a crash, and text the outcome."""
    parts = build(_settings())
    counts = reconcile_job.run(
        parts.db,
        parts.gateway,
        parts.engine_config,
        grace_seconds=grace_seconds,
        timeout_seconds=parts.settings.gateway_timeout_seconds,
    )
    click.echo(
        f"settled {counts.settled}, still pending {counts.still_pending}; card refunds settled "
        f"{counts.refunds_settled}, still pending {counts.refunds_pending}"
    )


@cli.command("chat")
@click.argument("phone")
@click.option(
    "--url",
    default=lambda: f"http://127.0.0.1:{os.environ.get('PORT', '5000')}",
    show_default="http://127.0.0.1:$PORT or 5000",
    help="The running TextPay to text.",
)
@click.option(
    "--in-process", is_flag=True, help="Run TextPay in this process instead, on DATABASE_URL."
)
def chat_command(phone: str, url: str, in_process: bool) -> None:
    """Be the subscriber texting from PHONE: type texts, see TextPay's answers and texts."""
    settings = _settings().with_development_secrets()
    try:
        number = to_e164(phone, default_region=settings.default_region)
    except ValidationFailed as error:
        raise click.ClickException(error.detail) from None
    assert settings.twilio_auth_token is not None
    assert settings.admin_token is not None
    if in_process:
        create_schema(make_engine(settings.database_url))
        app = create_app(settings)
        client = app.test_client()
        jobs = clock.background(build(settings), ConsoleSender(io.StringIO()))
        jobs.start()
        headers = {"Authorization": f"Bearer {settings.admin_token}"}
        sim = Phone(number, base_url="http://localhost", auth_token=settings.twilio_auth_token,
                    transport=demo_story.in_process(client))  # fmt: skip

        def admin_get(path: str) -> Any:
            return client.get(path, headers=headers).get_json()
    else:
        sim = Phone(number, base_url=url, auth_token=settings.twilio_auth_token)

        def admin_get(path: str) -> Any:
            return _get_json(url + path, settings.admin_token or "")

    try:
        chat.chat(
            sim,
            stdin=sys.stdin,
            stdout=sys.stdout,
            watcher_factory=lambda show: chat.Watcher(number, admin_get, show),
            interactive=sys.stdin.isatty(),
        )
    except (OSError, RuntimeError) as error:
        raise click.ClickException(f"could not reach TextPay at {url}: {error}") from None
    finally:
        if in_process:
            jobs.shutdown(wait=False)


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


@cli.command()
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the demo's SQLite file here (default: a throw-away temporary file).",
)
@click.option(
    "--payments",
    type=click.Choice(["sandbox", "stripe"]),
    default="sandbox",
    show_default=True,
    help="Charge cards in the sandbox, or through Stripe's API (a local Stripe stand-in, "
    "started by the demo; every request sent to it is printed).",
)
def demo(database: Path | None, payments: str) -> None:
    """Play a scripted story end to end on a throw-away SQLite file, as a chat transcript."""
    if database is not None and database.exists():
        raise click.ClickException(f"{database} exists; the demo starts from an empty database")
    try:
        sound = demo_story.run(sys.stdout, database, payments=payments)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    if not sound:
        sys.exit(1)


@cli.command("verify-ledger")
def verify_ledger() -> None:
    """Recompute every balance from the ledger; exit 1 if any account has drifted."""
    settings = _settings()
    with unit_of_work(make_engine(settings.database_url)) as session:
        drifts = ledger.verify(session)
    for drift in drifts:
        line = (
            f"DRIFT account {drift.account_id}: cached {drift.cached_balance_cents} cents, "
            f"ledger sum {drift.ledger_sum_cents} cents"
        )
        if drift.bad_entry_ids:
            line += f", entries with wrong balance_after: {list(drift.bad_entry_ids)}"
        click.echo(line)
    if drifts:
        click.echo(f"ledger drift on {len(drifts)} account(s)", err=True)
        sys.exit(1)
    click.echo("ledger ok: every balance equals the sum of its entries")


@cli.group("operators")
def operators_group() -> None:
    """Add, list and disable the people who use the console and the admin API."""


CLI_ACTOR = "cli"  # the audit trail's name for changes made with this command


@operators_group.command("add")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([role.value for role in OperatorRole]),
    required=True,
    help="viewer reads; agent also acts on accounts and money; admin also changes settings, "
    "facilities and operators.",
)
@click.option("--name", default="", help="How the console and the audit trail name them.")
def operators_add(email: str, role: str, name: str) -> None:
    """Create an operator and print their one-time password (shown once, never stored)."""
    try:
        data = OperatorIn.model_validate({"email": email, "role": role, "name": name})
    except ValidationError as error:
        fields = ", ".join(str(item["loc"][0]) for item in error.errors(include_input=False))
        raise click.ClickException(f"invalid {fields}") from None
    now = utcnow()
    with _operator_work() as session:
        operator, password = operators.create_operator(
            session, data.email, role=data.role, name=data.name, actor=CLI_ACTOR, now=now
        )
    # Printed, never logged: this line is the only place the password ever exists.
    click.echo(f"operator {operator.email} ({operator.role}) added")
    click.echo(f"one-time password: {password}")


@operators_group.command("list")
def operators_list() -> None:
    """Every operator: id, email, role, state and name."""
    now = utcnow()
    with _operator_work() as session:
        found = operators.list_operators(session)
    for operator in found:
        state = "disabled" if operator.disabled_at else "active"
        if operator.locked_until is not None and operator.locked_until > now:
            state += ", locked"
        click.echo(f"{operator.id}\t{operator.email}\t{operator.role}\t{state}\t{operator.name}")
    if not found:
        click.echo("no operators yet: textpay operators add EMAIL --role admin")


@operators_group.command("disable")
@click.argument("email")
def operators_disable(email: str) -> None:
    """Disable an operator: their sign-in and API tokens stop working at once."""
    with _operator_work() as session:
        operator = operators.find_by_email(session, email) if email.isprintable() else None
        if operator is None:
            raise click.ClickException(f"no operator with email {email}")
        operators.disable_operator(session, operator, actor=CLI_ACTOR, now=utcnow())
    click.echo(f"operator {operator.email} disabled")


@contextmanager
def _operator_work() -> Iterator[Session]:
    """One transaction on the configured database; a domain refusal is one line and exit 1."""
    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(engine) as session:
            yield session
    except TextPayError as error:
        raise click.ClickException(error.detail) from None
    finally:
        engine.dispose()


def _sender(settings: Settings) -> SmsSender:
    try:
        return make_sender(settings)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _describe(url: str) -> str:
    """The database URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    cli(prog_name="textpay")
