"""TextPay's web edge: the Flask application factory.

`create_app` wires settings, the database engine and the payment gateway into one Flask app with
its blueprints: health, the admin JSON API, Twilio's and Stripe's webhooks, the card link's
page, the operator console, and problem documents. Views open the transactions;
the domain core in `textpay/` does the work.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from textpay import logsafe
from textpay.config import Settings, load_settings
from textpay.models import ID_MAX
from textpay.wiring import build
from webhooks import card_page, console, health, operations, problems, stripe_webhook, twilio
from webhooks.admin import bp as admin_bp
from webhooks.services import Services

# Admin bodies are small JSON documents; anything larger is a mistake or an attack.
MAX_REQUEST_BYTES = 64 * 1024


def digits_up_to(limit: int) -> str:
    """A regular expression for the whole numbers 1 to `limit` in ASCII digits, without leading
    zeros: `[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|...|214748364[0-7]` for 2**31 - 1."""
    top = str(limit)
    options = [f"[1-9][0-9]{{0,{len(top) - 2}}}"] if len(top) > 1 else []
    for at, digit in enumerate(top):
        low = 1 if at == 0 else 0
        if int(digit) > low:
            rest = len(top) - at - 1
            options.append(
                f"{top[:at]}[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    options.append(top)
    return "(?:" + "|".join(options) + ")"


class IdConverter(IntegerConverter):
    """A row id in a path: 1 to `ID_MAX` (2**31 - 1, the range of the id columns) in ASCII
    digits. The pattern itself admits nothing else, so `0`, `007`, `2147483648`, `²` or another
    script's digits match no route, for any method, and are simply not found (404) on either
    database (a converter that refused them only after matching would answer 405 to a PATCH)."""

    regex = digits_up_to(ID_MAX)

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=ID_MAX)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    settings.check_production()
    # Written as `[secret]` should they ever reach a log line (where `logsafe` is installed:
    # gunicorn.conf.py, `textpay serve`).
    logsafe.register_secrets(
        settings.admin_token,
        settings.secret_key,
        settings.twilio_auth_token,
        settings.stripe_api_key,
        settings.stripe_webhook_secret,
        settings.metrics_token,
    )

    app = Flask(__name__)
    app.url_map.converters["id"] = IdConverter
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]

    parts = build(settings)
    app.extensions["textpay"] = Services(
        settings=settings,
        engine=parts.db,
        gateway=parts.gateway,
        engine_config=parts.engine_config,
    )
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    problems.register(app)
    operations.register(app)  # request ids, request times, /metrics, /readyz
    app.register_blueprint(health.bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(twilio.bp)
    app.register_blueprint(stripe_webhook.bp)
    card_page.register(app)
    console.register(app, settings)
    return app
