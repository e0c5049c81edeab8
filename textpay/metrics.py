"""TextPay's Prometheus metrics: what is counted, under which names, and how a scrape reads them.

The counters and histograms live here so that every process (web workers, the clock, `textpay
serve`) counts under the same names. Who increments what:

- the edges count what only they see: a web request's latency by route (webhooks/), an inbound
  text's intent once its transaction committed and a delivery status as Twilio reports it
  (webhooks/twilio.py), the dispatcher's sends and a scan's duration and counts (scheduler/);
- the domain counts money, at its one choke point whoever the caller is (a YES, AutoPay, the
  reconciler, Stripe's webhook): a charge's answer from the gateway in `funding.call_gateway`
  (outside any transaction) and a deposit in `funding.settle`, applied only when the
  transaction that posted it commits (`on_commit`), so a rolled-back deposit is never counted.

An increment is a few hundred nanoseconds and no I/O (a shared memory-mapped file in
multiprocess mode): the webhook's hot path stays as cheap as it was. Gauges that describe the
database (outbox depth, clock heartbeat age) are not kept in processes at all: they are read
at scrape time (`ScrapeTimeCollector`), so that a dead process never reports a stale depth.

Multiprocess mode (gunicorn's workers, and a clock beside them on the same host) is
prometheus_client's: PROMETHEUS_MULTIPROC_DIR must be set before this module is imported
(gunicorn.conf.py does it), and a scrape sums every process's files (`registry_for_scrape`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session

PREFIX = "textpay_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Twilio answers a webhook within its 15 s timeout or gives up; most answers take milliseconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
_SCAN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

HTTP_REQUEST_SECONDS = Histogram(
    "textpay_http_request_seconds",
    "Time to answer a web request, by route (the URL rule, not the path) and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
INBOUND_TEXTS = Counter(
    "textpay_inbound_texts",
    "Inbound texts recorded, by the intent read from their words (`replay`: a retried webhook, "
    "`flood`: over the per-number limit, recorded and not answered).",
    ["intent"],
)
CHARGES = Counter(
    "textpay_charges",
    "Card charges answered by the gateway, by backend and outcome (`pending`: no answer yet).",
    ["backend", "outcome"],
)
DEPOSITS_CENTS = Counter(
    "textpay_deposits_cents", "Cents deposited by settled card charges (committed)."
)
DEPOSITS = Counter("textpay_deposits", "Card charges settled as deposits (committed).")
SMS_STATUS = Counter(
    "textpay_sms_status",
    "Delivery statuses Twilio reported for our texts, by status and error code (`` for none).",
    ["status", "error_code"],
)
SMS_DISPATCH = Counter(
    "textpay_sms_dispatch",
    "Texts the dispatcher handed to Twilio, by outcome and Twilio error code (`` for none).",
    ["outcome", "error_code"],
)
SCAN_SECONDS = Histogram(
    "textpay_scan_seconds",
    "Time a low-balance scan took (the leader's; a scanner that stepped aside is not timed).",
    buckets=_SCAN_BUCKETS,
)
SCAN_ACCOUNTS = Counter(
    "textpay_scan_accounts",
    "What scans did, by result (prompted, autopay_charged, held, skipped, errors, ...).",
    ["result"],
)
SCANS = Counter("textpay_scans", "Low-balance scans run, by who ran them.", ["role"])

# Labels whose values come from outside are kept to a known set, so that a stranger cannot make
# Prometheus store a series per value.
_KNOWN_STATUSES = frozenset(
    "queued accepted scheduled sending sent delivered undelivered failed canceled read "
    "receiving received partially_delivered".split()
)
_ERROR_CODE_DIGITS = 10
# A request's method is whatever token the caller sent (`PROBE1`, `X2`, ...): HTTP's own
# methods are kept, any other is `other`.
_KNOWN_METHODS = frozenset("GET HEAD POST PUT PATCH DELETE OPTIONS".split())


def status_label(status: str) -> str:
    return status if status in _KNOWN_STATUSES else "other"


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "other"


def error_code_label(code: str | None) -> str:
    if not code:
        return ""
    return (
        code if code.isascii() and code.isdigit() and len(code) <= _ERROR_CODE_DIGITS else "other"
    )


def backend_label(gateway: object) -> str:
    """`sandbox` or `stripe` for TextPay's gateways (their module's name), else the class's."""
    module = type(gateway).__module__
    if module.startswith("textpay.payments."):
        return module.rsplit(".", 1)[-1]
    return type(gateway).__name__


# --- counting when a transaction commits ---------------------------------------------------

_PENDING_KEY = "textpay.metrics.pending"


def on_commit(session: Session, count: Callable[[], None]) -> None:
    """Run `count` when `session`'s transaction commits; forget it if it rolls back."""
    session.info.setdefault(_PENDING_KEY, []).append(count)


@event.listens_for(Session, "after_commit")
def _apply_pending(session: Session) -> None:
    for count in session.info.pop(_PENDING_KEY, ()):
        count()


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


# --- scrape time -----------------------------------------------------------------------------

OUTBOX_STATES = ("queued", "deferred", "dispatching", "unknown")


class ScrapeTimeCollector(Collector):
    """Gauges read from the database when Prometheus scrapes: the outbox's depth by state and
    the clock's heartbeat age. `read` returns (outbox counts by state, seconds since the last
    heartbeat or None) and is given by the web edge; it is called once per scrape."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], float | None]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return [*self._families({}, None)]

    def collect(self) -> Iterable[Metric]:
        depth, age = self._read()
        return [*self._families(depth, age)]

    @staticmethod
    def _families(depth: dict[str, int], age: float | None) -> Iterator[Metric]:
        outbox = GaugeMetricFamily(
            "textpay_outbox_messages",
            "Outbound texts not yet with Twilio, by state (`deferred`: waiting for quiet hours "
            "or the daily cap to pass; `unknown`: sent with no answer, left for an operator).",
            labels=["state"],
        )
        for state in OUTBOX_STATES:
            outbox.add_metric([state], depth.get(state, 0))
        yield outbox
        heartbeat = GaugeMetricFamily(
            "textpay_clock_heartbeat_age_seconds",
            "Seconds since a clock process last wrote its heartbeat (absent: never).",
        )
        if age is not None:
            heartbeat.add_metric([], age)
        yield heartbeat


# Whether this process's metrics were made in multiprocess mode: decided once, when
# prometheus_client was imported, by PROMETHEUS_MULTIPROC_DIR then (not by its value now).
MULTIPROCESS = values.ValueClass is not values.MutexValue


def registry_for_scrape(*extra: Collector) -> CollectorRegistry:
    """The registry a scrape reads: every process's files in multiprocess mode (this process's
    own metrics are in them too), else this process's registry; with `extra` collectors."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    for collector in extra:
        registry.register(collector)
    return registry


class _ProcessMetrics(Collector):
    """TextPay's metrics in this process's default registry (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return [m for m in REGISTRY.collect() if m.name.startswith(PREFIX)]


def exposition(*extra: Collector) -> bytes:
    """The text Prometheus scrapes."""
    return generate_latest(registry_for_scrape(*extra))


def exported_names() -> set[str]:
    """Every sample name TextPay can export (`textpay_charges_total`, `..._bucket`, ...), for
    checking dashboards and alerts against."""
    names: set[str] = set()
    families: list[Any] = [m for m in REGISTRY.collect() if m.name.startswith(PREFIX)]
    families += ScrapeTimeCollector(lambda: ({}, None)).describe()
    for family in families:
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }[family.type]
        names.update(family.name + suffix for suffix in suffixes)
    return names


def heartbeat_age(last_beat: datetime | None, now: datetime) -> float | None:
    return None if last_beat is None else max(0.0, (now - last_beat).total_seconds())
