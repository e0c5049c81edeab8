"""`/metrics` under gunicorn with two workers (prometheus_client's multiprocess mode): whichever
worker answers a scrape, it counts every worker's requests; with TEXTPAY_LOG_FORMAT=json every
line gunicorn and the app write is a JSON object, the access line carrying the request id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import BIN, ROOT, free_port, http, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "e2e-metrics-token-5b0c2d7e"
REQUESTS = 24


def healthz_count(base: str) -> float:
    status, text = http("GET", base + "/metrics", token=TOKEN)
    assert status == 200, text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "textpay_http_request_seconds_count"
        and sample.labels == {"route": "/healthz", "method": "GET"}
    )


def test_every_worker_s_requests_are_in_every_scrape(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTPAY_", "TWILIO_"))}
    env.update(DATABASE_URL=database_url, WEB_CONCURRENCY="2", TEXTPAY_METRICS_TOKEN=TOKEN,
               TEXTPAY_LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))  # fmt: skip
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind",
             f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http("GET", base + "/readyz", timeout=10)[0] == 200, timeout=120,
                 what="gunicorn to answer /readyz")  # fmt: skip
        # The arbiter listens from its start, so the first worker may answer before the second
        # is forked (the arbiter rehearses a text first: webhooks/rehearsal.py).
        wait_for(lambda: log_path.read_text().count("Booting worker") >= 2, timeout=120,
                 what="gunicorn to fork its second worker")  # fmt: skip
        with ThreadPoolExecutor(max_workers=8) as pool:  # at once: both workers get some
            answers = list(pool.map(lambda _: http("GET", base + "/healthz")[0], range(REQUESTS)))
        assert answers == [200] * REQUESTS
        status, _ = http("GET", base + "/healthz", headers={"X-Request-Id": "e2e-trace-1"})
        assert status == 200
        # Both workers served, each writing files of its own (the arbiter's, from loading the
        # app, hold nothing).
        pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("histogram_*.db")}
        assert len(pids - {str(process.pid)}) == 2, (process.pid, sorted(pids))
        # Every scrape (answered by either worker) sums them all.
        assert {healthz_count(base) for _ in range(6)} == {REQUESTS + 1}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    time.sleep(0.1)
    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    traced = [e for e in entries if e["request_id"] == "e2e-trace-1"]
    assert [e["logger"] for e in traced] == ["gunicorn.access"], traced
    assert all(set(e) >= {"time", "level", "logger", "message", "request_id"} for e in entries)
