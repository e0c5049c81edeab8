"""The clock process: runs TextPay's jobs on a schedule (`python -m scheduler.clock`).

APScheduler 3 in UTC with `coalesce=True` and `max_instances=1`, so a slow run is never doubled
and missed runs collapse into one. Jobs: the heartbeat (every 15 s, `textpay.heartbeat`), the
low-balance scan with AutoPay (every TEXTPAY_SCAN_INTERVAL_SECONDS), the scans operators queue
with `POST /admin/scan` (looked for every few seconds), offer expiry and the reconciler (every
minute), the outbox dispatcher (every second), and the card-expiry warnings (daily, and once at
start). Never run inside gunicorn workers: run one or
more clock processes beside them (on PostgreSQL several are safe), or `textpay serve` for the
embedded default.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.engine import Engine

from scheduler import card_expiry, dispatch, expire, queued_scans, reconcile, scan
from textpay import heartbeat, logformat, logsafe
from textpay.config import load_settings
from textpay.db import unit_of_work
from textpay.sms import SmsSender
from textpay.timeutil import utcnow
from textpay.wiring import Parts, build, make_sender

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}


def add_jobs(scheduler: BaseScheduler, parts: Parts, sender: SmsSender) -> None:
    settings = parts.settings
    pacer = dispatch.Pacer(settings.send_rate)
    batch = max(1, int(settings.send_rate * 2)) if settings.send_rate else 100
    soon = datetime.now(UTC) + timedelta(seconds=2)
    scheduler.add_job(
        lambda: scan.run(
            parts.db,
            parts.gateway,
            parts.engine_config,
            gateway_timeout=settings.gateway_timeout_seconds,
        ),
        "interval",
        seconds=settings.scan_interval_seconds,
        id="scan",
        next_run_time=soon,
    )
    scheduler.add_job(
        lambda: queued_scans.run(
            parts.db,
            parts.gateway,
            parts.engine_config,
            gateway_timeout=settings.gateway_timeout_seconds,
        ),
        "interval",
        seconds=queued_scans.POLL_SECONDS,
        id="queued_scans",
        next_run_time=soon,
    )
    scheduler.add_job(
        lambda: beat(parts.db),
        "interval",
        seconds=heartbeat.BEAT_SECONDS,
        id="heartbeat",
        next_run_time=datetime.now(UTC),
    )
    scheduler.add_job(lambda: expire.run(parts.db), "interval", seconds=60, id="expire")
    # Daily, and once soon after the clock starts (a day it was down is caught up; a rerun
    # sends nothing twice).
    scheduler.add_job(
        lambda: card_expiry.run(parts.db, parts.engine_config),
        "cron",
        **card_expiry.RUN_AT,
        id="card_expiry",
        next_run_time=soon + timedelta(seconds=30),
    )
    scheduler.add_job(
        lambda: reconcile.run(
            parts.db,
            parts.gateway,
            parts.engine_config,
            timeout_seconds=settings.gateway_timeout_seconds,
        ),
        "interval",
        seconds=60,
        id="reconcile",
    )
    scheduler.add_job(
        lambda: dispatch.run(
            parts.db,
            sender,
            pacer=pacer,
            batch=batch,
            status_callback=settings.status_callback_url,
            workers=settings.send_workers,
        ),
        "interval",
        seconds=1,
        id="dispatch",
    )


def beat(db: Engine) -> None:
    """The clock's heartbeat (`textpay.heartbeat`): a job of its own, so that it says the
    scheduler runs jobs, and is not held up by a long scan or a draining outbox."""
    with unit_of_work(db) as session:
        heartbeat.beat(session, now=utcnow())


def background(parts: Parts, sender: SmsSender) -> BackgroundScheduler:
    """A scheduler in a thread of this process (for `textpay serve`)."""
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    add_jobs(scheduler, parts, sender)
    return scheduler


def main() -> None:
    logsafe.install()  # no number, card or token in any line, one line each (textpay/logsafe.py)
    settings = load_settings()
    logformat.configure(settings.log_format)  # text, or one JSON object a line
    # A dispatcher still draining a long queue makes APScheduler warn every second that the
    # next run is skipped (max_instances=1, as intended): only errors are worth a line.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    settings.check_production()
    logsafe.register_secrets(
        settings.admin_token,
        settings.twilio_auth_token,
        settings.stripe_api_key,
        settings.stripe_webhook_secret,
        settings.metrics_token,
    )
    parts = build(settings)
    scheduler = BlockingScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)
    add_jobs(scheduler, parts, make_sender(settings))
    log.info("clock started: scan every %ss", settings.scan_interval_seconds)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("clock stopped")


if __name__ == "__main__":
    main()
