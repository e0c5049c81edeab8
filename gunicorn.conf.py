"""gunicorn settings for TextPay's web process (`gunicorn -c gunicorn.conf.py wsgi:app`).

Workers and class come from `bench/webhook.py` on the 2-core machine this project targets (see
docs/performance.md). Sync workers: on SQLite, threaded workers only queue for the one write
lock (they measured a p99 of 33-120 ms). On SQLite one worker carries as much as two
(every webhook writes, and writers take turns) with a far shorter tail, so it gets one; on
PostgreSQL two workers use both cores (four gained 14% throughput for a doubled p99). Override
with WEB_CONCURRENCY.
"""

from __future__ import annotations

import os

from textpay import logsafe

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
_SQLITE = os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite")
workers = int(os.environ.get("WEB_CONCURRENCY", "1" if _SQLITE else "2"))
worker_class = "sync"
# Below Twilio's 15 s webhook timeout: a stuck worker is replaced before Twilio gives up, and a
# YES never waits for a card longer than TEXTPAY_GATEWAY_TIMEOUT_SECONDS (8 s) anyway.
timeout = 12
graceful_timeout = 10
keepalive = 5
# Recycle workers now and then (a worker takes about 1.5 s to start, so not too often); the
# jitter keeps them from restarting together.
max_requests = 50_000
max_requests_jitter = 5_000
accesslog = "-"
# The path without its query string: `/admin/accounts?phone=...` must not put phone numbers in
# the log. No headers either: the admin token is never logged.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

# Every line gunicorn and the app write is scrubbed (textpay/logsafe.py): no phone or card
# number, no token, and control characters escaped, so that a `%0a` in a URL cannot forge an
# access-log line nor a `%1b` write terminal escapes (gunicorn itself escapes only `"`, and
# `%(U)s` is the decoded path). Installed here, in the arbiter, so workers inherit it.
logsafe.install()
logsafe.register_secrets(
    *(os.environ.get(name) for name in ("TEXTPAY_ADMIN_TOKEN", "TWILIO_AUTH_TOKEN"))
)
