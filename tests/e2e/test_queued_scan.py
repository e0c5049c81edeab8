"""`POST /admin/scan` as deployed: gunicorn queues the scan and answers at once; the clock
process runs it, however long its AutoPay charges take, and no web worker is killed for it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.stack import ADMIN_TOKEN, Stack, http, wait_for
from tests.e2e.test_story import deposits, low_account

pytestmark = pytest.mark.e2e

# gunicorn.conf.py kills a sync worker after 12 s. Each tok_slow charge takes longer than that,
# and the gateway timeout is long enough for the scan to see it succeed.
SLOW = {
    "TEXTPAY_SANDBOX_SLOW_SECONDS": "12.5",
    "TEXTPAY_GATEWAY_TIMEOUT_SECONDS": "13.5",
    # The clock's own scan runs once, at start, before the accounts exist; after that only the
    # scan the operator queues runs.
    "TEXTPAY_SCAN_INTERVAL_SECONDS": "3600",
}


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    running = Stack(database_url, extra_env=SLOW).up()
    yield running
    running.down()


def test_a_queued_scan_with_slow_autopay_charges_runs_in_the_clock(stack: Stack) -> None:
    wait_for(lambda: "scheduler.scan INFO scan: {" in stack.log("clock"), timeout=120,
             what="the clock's first periodic scan")  # fmt: skip
    slow_card = {"autopay_enabled": True, "payment_method": {"token": "tok_slow"}}
    accounts = [
        low_account(stack, "4821", "(212) 555-0147", "Mom", **slow_card),
        low_account(stack, "5566", "(305) 555-0123", "Abuela", **slow_card),
    ]
    workers_booted = stack.log("web").count("Booting worker")

    request = urllib.request.Request(
        stack.web + "/admin/scan",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-TextPay-Actor": "e2e"},
    )
    asked = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as answer:
        took = time.monotonic() - asked
        status, location, queued = answer.status, answer.headers["Location"], json.load(answer)
    assert status == 202
    assert took < 5, f"the answer took {took:.1f} s"
    assert location == f"/admin/scans/{queued['id']}"
    assert queued["status"] == "queued"

    def finished() -> dict[str, object] | None:
        code, found = http("GET", stack.web + location, token=ADMIN_TOKEN)
        assert code == 200, (code, found)
        return found if found["status"] in ("done", "failed") else None

    try:
        result = wait_for(finished, timeout=240, what="the queued scan to finish")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{stack.tail('clock')}") from None
    assert result["status"] == "done", (result, stack.tail("clock"))
    assert (result["autopay_charged"], result["errors"]) == (2, 0), result
    assert result["requested_by"] == "e2e"
    assert all(deposits(stack, account) == [2500] for account in accounts)

    # The web worker that took the request was never killed and replaced.
    web_log = stack.log("web")
    assert "WORKER TIMEOUT" not in web_log, stack.tail("web")
    assert web_log.count("Booting worker") == workers_booted, stack.tail("web")
    listed = stack.admin("GET", "/admin/scans")["scans"]
    assert [s["id"] for s in listed] == [queued["id"]]
    assert stack.cli("verify-ledger").returncode == 0
