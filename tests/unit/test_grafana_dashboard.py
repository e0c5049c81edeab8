"""deploy/grafana-dashboard.json draws only what TextPay exports: every PromQL expression in it
names at least one metric, and each name it uses is one `textpay.metrics` registers (a renamed
counter would otherwise leave an empty panel nobody notices until an incident)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textpay import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"

# PromQL's functions, aggregations and keywords: every other bare name is a metric.
PROMQL_WORDS = frozenset(
    """abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max
    clamp_min count count_over_time count_values day_of_month day_of_week days_in_month delta
    deriv exp floor group histogram_quantile holt_winters hour idelta increase irate
    label_join label_replace last_over_time ln log10 log2 max max_over_time min min_over_time
    minute month predict_linear quantile quantile_over_time rate resets round scalar sgn sort
    sort_desc sqrt stddev stdvar sum sum_over_time time timestamp topk vector year by without
    on ignoring group_left group_right bool and or unless offset inf nan""".split()
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    bare = _RANGE.sub(" ", _GROUPING.sub(" ", _MATCHERS.sub(" ", _STRING.sub(" ", expr))))
    return {name for name in _NAME.findall(bare) if name.lower() not in PROMQL_WORDS}


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)


def test_the_name_reader_finds_metrics_and_only_metrics() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"/x|y"}[5m])))'
    ) == {"a_bucket"}
    assert metric_names("rate(a_sum[1h]) / rate(b_count[1h]) > bool 0") == {"a_sum", "b_count"}


def test_every_dashboard_query_names_only_metrics_textpay_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = metrics.exported_names()
    queries = list(expressions(dashboard["panels"]))
    assert len(queries) >= 10
    used: set[str] = set()
    for query in queries:
        names = metric_names(query)
        assert names, f"no metric in {query!r}"
        assert names <= exported, f"{sorted(names - exported)} in {query!r} are not exported"
        used |= names
    # Every metric TextPay exports is on the dashboard (by one of its sample names).
    families = {n.removesuffix(s) for n in exported for s in ("_total", "_bucket", "_sum",
                "_count", "_created") if n.endswith(s)} | {"textpay_outbox_messages",
                "textpay_clock_heartbeat_age_seconds"}  # fmt: skip
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert shown == families, sorted(families - shown)


def test_exported_names_are_those_a_scrape_shows() -> None:
    """`exported_names` is what /metrics writes (tests/web/test_operations.py scrapes it)."""
    exported = metrics.exported_names()
    for name in ("textpay_http_request_seconds_bucket", "textpay_inbound_texts_total",
                 "textpay_charges_total", "textpay_deposits_cents_total",
                 "textpay_outbox_messages", "textpay_sms_status_total",
                 "textpay_sms_dispatch_total", "textpay_scan_seconds_count",
                 "textpay_scan_accounts_total", "textpay_clock_heartbeat_age_seconds"):  # fmt: skip
        assert name in exported
    text = metrics.exposition(metrics.ScrapeTimeCollector(lambda: ({}, 3.0))).decode()
    written = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
               if line and not line.startswith("#")}  # fmt: skip
    assert written <= exported
