"""The WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from __future__ import annotations

import sys

from textpay.config import ConfigError
from webhooks import create_app

try:
    app = create_app()
except ConfigError as error:
    # One line naming the missing variable, instead of a traceback per worker.
    print(f"textpay: {error}", file=sys.stderr)
    raise SystemExit(1) from None
