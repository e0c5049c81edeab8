"""TextPay's web edge: the Flask application factory.

`create_app` wires settings, the database engine and the payment gateway into one Flask app with
its blueprints: health, the admin JSON API, and problem documents. Views open the transactions;
the domain core in `textpay/` does the work.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from textpay import logsafe
from textpay.config import Settings, load_settings
from textpay.wiring import build
from webhooks import health, problems, twilio
from webhooks.admin import bp as admin_bp
from webhooks.services import Services

# Admin bodies are small JSON documents; anything larger is a mistake or an attack.
MAX_REQUEST_BYTES = 64 * 1024


class IdConverter(IntegerConverter):
    """A row id in a path: a positive integer no database would overflow on (2**53 - 1 at most,
    which also survives JSON); anything else is simply not found."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=2**53 - 1)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    settings.check_production()
    # Written as `[secret]` should they ever reach a log line (where `logsafe` is installed:
    # gunicorn.conf.py, `textpay serve`).
    logsafe.register_secrets(settings.admin_token, settings.twilio_auth_token)

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
    app.register_blueprint(health.bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(twilio.bp)
    return app
