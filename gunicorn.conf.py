"""gunicorn settings for TextPay's web process (`gunicorn -c gunicorn.conf.py wsgi:app`).

Workers and class come from measurements on the 2-core machine this project targets (DESIGN §6;
`bench/webhook.py` reruns them): sync workers kept p99 at 7-16 ms on SQLite, where threaded
workers reached 33-120 ms from lock contention, and were as good as threads on PostgreSQL. Two
workers per core is the usual ceiling for CPU-bound Flask; override with WEB_CONCURRENCY.
"""

from __future__ import annotations

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# Below Twilio's 15 s webhook timeout: a stuck worker is replaced before Twilio gives up, and a
# YES never waits for a card longer than TEXTPAY_GATEWAY_TIMEOUT_SECONDS (8 s) anyway.
timeout = 12
graceful_timeout = 10
keepalive = 5
max_requests = 5000  # recycle workers now and then; jitter keeps them from restarting together
max_requests_jitter = 500
accesslog = "-"
# The path without its query string: `/admin/accounts?phone=...` must not put phone numbers in
# the log. No headers either: the admin token is never logged.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
