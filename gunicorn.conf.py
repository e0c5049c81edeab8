"""gunicorn settings for TextPay's web process (`gunicorn -c gunicorn.conf.py wsgi:app`).

Workers and class come from `bench/webhook.py` on the 2-core machine this project targets (see
docs/performance.md). Sync workers: on SQLite, threaded workers only queue for the one write
lock (they measured a p99 of 33-120 ms). Two workers on either database: on PostgreSQL they use
both cores (four gained 14% throughput for a doubled p99); on SQLite, where every webhook
writes and writers take turns, the second worker does the rest of its request (parsing,
signature, answer) while the first holds the lock, and they hand the lock over through the
writers' queue (textpay/writer_queue.py): about 45% more texts a second and a p99 of 47 ms
against 61-66 for one worker (three gained nothing more). Override with WEB_CONCURRENCY.

Sync workers are one request at a time, so a client that sends slowly holds a worker until the
timeout kills it: in production they sit behind a buffering proxy (deploy/nginx.conf), which is
the only peer gunicorn then believes about the scheme (`forwarded_allow_ips` below).
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from textpay import logformat, logsafe
from textpay.config import Settings


def _settings() -> Settings | None:
    """The app's settings (`.env` included), so that gunicorn and the app never disagree; None
    when they are invalid (the app then refuses to start and names the variable)."""
    try:
        return Settings()
    except ValueError:
        return None


def _trusted_proxies() -> int:
    """TEXTPAY_TRUSTED_PROXIES as the app reads it (its ProxyFix), 0 when the settings are
    invalid."""
    settings = _settings()
    return settings.trusted_proxies if settings else 0


# Prometheus' multiprocess mode (textpay/metrics.py): every worker writes its counts to files in
# PROMETHEUS_MULTIPROC_DIR and a scrape of any worker sums them all. It must be set before the
# app (and prometheus_client) is imported, hence here, at the top of the arbiter. Set it
# yourself to a directory the clock shares (same host: the clock's scan, AutoPay and dispatch
# counts then show in the web's /metrics too) and have it emptied at boot (a tmpfs such as
# /run); unset, gunicorn makes a private one and removes it when it exits.
_OWN_METRICS_DIR: str | None = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="textpay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server: Any) -> None:
    """Forget the live gauges of processes that died before this start (a crash, a kill -9):
    what `child_exit` below would have done for them. Their counters stay, summed as before."""
    from prometheus_client import multiprocess  # noqa: PLC0415 (after the directory is set)

    for path in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        found = _PID_IN_NAME.search(path.name)
        if found and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)))


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (recycled, killed by the timeout, crashed): its live gauges go with it."""
    from prometheus_client import multiprocess  # noqa: PLC0415 (after the directory is set)

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """The request id is the request's: cleared once gunicorn has written the access line that
    carries it (webhooks/operations.py sets it)."""
    logformat.set_request_id(None)


bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# Below Twilio's 15 s webhook timeout: a stuck worker is replaced before Twilio gives up, and a
# YES never waits for a card longer than TEXTPAY_GATEWAY_TIMEOUT_SECONDS (8 s) anyway.
timeout = 12
graceful_timeout = 10
keepalive = 5
# Recycle workers now and then; the jitter keeps them from restarting together.
max_requests = 50_000
max_requests_jitter = 5_000

# The app is loaded once, in the arbiter, and every worker is forked from it: a new worker
# (recycled above, killed by the timeout, or at start) answers its first webhook 0.1-0.3 s
# after its fork instead of 1.5 s of importing the app (`bench/boot.py`), and the workers share
# the app's memory until they write to it. The price: `kill -HUP` starts workers from the code
# already loaded, so new code (or a changed .env) needs a restart of gunicorn. An app that
# cannot start (a missing variable) stops gunicorn itself, with one line saying why.
preload_app = True


def when_ready(server: Any) -> None:
    """The app is loaded (above) and the workers are about to be forked from it.

    First a YES and a BAL are rehearsed in a transaction that is rolled back
    (`webhooks.rehearsal`): their statements are compiled here, once, instead of in each worker
    on its first YES (30-70 ms with every queued text waiting; docs/performance.md).

    Then every object the app made moves into the garbage collector's permanent generation
    (`gc.freeze`). A worker's collector then never walks them: a full collection walked about
    150,000 objects of the loaded libraries and took about 110 ms, with every queued webhook
    waiting behind it (at 16 connections, the slowest 1% of texts). Frozen objects stay shared
    with the arbiter instead of being copied into each worker when the collector touches them."""
    app = server.app.wsgi() if server.cfg.preload_app else None
    if "textpay" in getattr(app, "extensions", {}):  # not the benchmarks' floors
        from webhooks.rehearsal import rehearse  # noqa: PLC0415 (loaded with the app already)

        rehearse(app)
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    """A forked worker starts with an empty connection pool of its own: a connection the
    arbiter opened must never be used by two processes (two workers' queries interleaved on one
    PostgreSQL socket, or SQLite's locks on a handle inherited across fork). `close=False`:
    those connections are the arbiter's, and closing one from a worker ends it for the arbiter
    too (a PostgreSQL connection says goodbye to the server). The app opens none while it loads
    today; this keeps that harmless whatever loading does one day. (Another app served with
    this file, such as the benchmarks' floors, has no TextPay engine to reset.)"""
    if not server.cfg.preload_app:
        return
    services = getattr(worker.app.wsgi(), "extensions", {}).get("textpay")
    if services is not None:
        services.engine.dispose(close=False)


accesslog = "-"
# TEXTPAY_LOG_FORMAT=json: gunicorn's lines and the app's, one JSON object each, with the
# request id (textpay/logformat.py); text: gunicorn's own format, as before.
_LOG_FORMAT = (_settings() or Settings.model_construct()).log_format
logconfig_dict = logformat.gunicorn_logconfig(_LOG_FORMAT)
# The path without its query string: `/admin/accounts?phone=...` must not put phone numbers in
# the log. No headers either: the admin token is never logged. A card link's path
# (`/card/<token>`) is written `/card/[link]` by `textpay.logsafe`, installed below.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

# Who may say a request came over https (`X-Forwarded-Proto`; gunicorn then sets the scheme the
# app sees, and Twilio signatures are checked over that URL when TEXTPAY_PUBLIC_URL is unset).
# gunicorn's own default believes any process on 127.0.0.1, even with no proxy in front. Here
# the app's setting decides: TEXTPAY_TRUSTED_PROXIES=0 believes nobody, on a port or a unix
# socket alike (hence no scheme headers at all: gunicorn trusts every unix-socket peer); N > 0
# believes the proxy on this host (deploy/nginx.conf proxies from loopback), or the addresses in
# gunicorn's own FORWARDED_ALLOW_IPS (comma-separated addresses or networks) when the proxies are
# elsewhere, and only about X-Forwarded-Proto, the one header the proxy sets and the app's
# ProxyFix reads (a client's X-Forwarded-Ssl passes through nginx untouched).
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
if _trusted_proxies():
    forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# Every line gunicorn and the app write is scrubbed (textpay/logsafe.py): no phone or card
# number, no token, and control characters escaped, so that a `%0a` in a URL cannot forge an
# access-log line nor a `%1b` write terminal escapes (gunicorn itself escapes only `"`, and
# `%(U)s` is the decoded path). Installed here, in the arbiter, so workers inherit it.
logsafe.install()
logsafe.register_secrets(
    *(
        os.environ.get(name)
        for name in (
            "TEXTPAY_ADMIN_TOKEN",
            "TEXTPAY_SECRET_KEY",
            "TWILIO_AUTH_TOKEN",
            "STRIPE_API_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "TEXTPAY_METRICS_TOKEN",
        )
    )
)
