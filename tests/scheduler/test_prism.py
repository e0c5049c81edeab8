"""Every request the Twilio sender makes is one Twilio's own OpenAPI description accepts.

Stoplight Prism serves `fixtures/twilio/twilio_api_v2010.json` and validates each request
against it (answering 422 with the violations otherwise). Needs Node and the Prism package from
`tools/prism` (`npm ci` there); skipped with a reason when absent, except in CI, which installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from textpay.sms import SendOutcome, TwilioSender

ROOT = Path(__file__).resolve().parents[2]
PRISM = ROOT / "tools" / "prism" / "node_modules" / ".bin" / "prism"
SPEC = ROOT / "fixtures" / "twilio" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "a" * 32


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    if not (shutil.which("node") and PRISM.exists()):
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI must install Prism: run `npm ci` in tools/prism")
        pytest.skip("Prism is not installed (needs Node; run `npm ci` in tools/prism)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(PRISM), "mock", str(SPEC), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Prism did not start")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_prism_rejects_a_request_that_breaks_twilios_spec(prism: str) -> None:
    """The control: Prism really validates (a message without `To` is refused)."""
    data = urllib.parse.urlencode({"From": "+12125550100", "Body": "hi"}).encode()
    request = urllib.request.Request(
        f"{prism}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", data=data, method="POST"
    )
    request.add_header("Authorization", "Basic " + "QUM6dG9r")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422


@pytest.mark.parametrize(
    "sender",
    [{"from_number": "+12125550100"}, {"messaging_service_sid": "MG" + "b" * 32}],
    ids=["from-number", "messaging-service"],
)
def test_prism_accepts_every_message_the_sender_creates(prism: str, sender: dict[str, str]) -> None:
    twilio = TwilioSender(ACCOUNT_SID, "test-auth-token", api_url=prism, **sender)
    result = twilio.send(
        to="+12125550147",
        body="TextPay: acct ...4821 (Mom): balance $3.10. Reply YES to add $25.00.",
        status_callback="https://textpay.example.org/twilio/status",
    )
    assert result.outcome is SendOutcome.ACCEPTED, result
    assert result.sid is not None
    assert result.sid.startswith("SM")


def test_prism_rejects_a_list_request_that_breaks_twilios_spec(prism: str) -> None:
    """The control for lookups: query parameters are validated too (PageSize is 1 to 1000)."""
    request = urllib.request.Request(
        f"{prism}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?To=%2B12125550147&PageSize=0"
    )
    request.add_header("Authorization", "Basic " + "QUM6dG9r")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422


def test_prism_accepts_the_lookup_of_a_text_whose_send_was_unclear(prism: str) -> None:
    """The Messages list request (`To`, `DateSent>`, `PageSize`) that looks for a text before
    any resend. Prism answers with its example page, which holds no such text: not found, and
    not `unknown`, which a refused request would give."""
    twilio = TwilioSender(ACCOUNT_SID, "test-auth-token", api_url=prism,
                          from_number="+12125550100")  # fmt: skip
    found = twilio.find(to="+12125550147", body="TextPay: added $25.00", since=datetime.now(UTC))
    assert found is None
