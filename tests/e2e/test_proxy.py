"""TextPay behind its front: who gunicorn believes about the scheme (TEXTPAY_TRUSTED_PROXIES),
run as a deployment runs it (gunicorn.conf.py, a real socket)."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.e2e.stack import AUTH_TOKEN, BIN, ROOT, Stack, http

pytestmark = pytest.mark.e2e

_sids = itertools.count(1)


@dataclass
class WebOnly(Stack):
    """gunicorn alone (no stand-in, no clock), with the environment a deployment gives it:
    `public_url` is TEXTPAY_PUBLIC_URL (None: unset, so signatures are checked over the URL the
    app sees) and `extra_env` the rest (TEXTPAY_TRUSTED_PROXIES)."""

    public_url: str | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        del env["TEXTPAY_PUBLIC_URL"]
        env.pop("FORWARDED_ALLOW_IPS", None)  # gunicorn's own variable: not from the test's shell
        if self.public_url:
            env["TEXTPAY_PUBLIC_URL"] = self.public_url
        return env

    def up(self) -> WebOnly:
        subprocess.run([str(BIN / "textpay"), "init-db"], cwd=ROOT, env=self.env(), check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        try:
            self.start("web")
        except BaseException:
            self.down()
            raise
        return self


def signed_text(url: str, sender: str, body: str) -> tuple[dict[str, str], dict[str, str]]:
    """A text as Twilio posts it to `url`: the form and the headers, signed over `url`."""
    form = {
        "MessageSid": f"SM{os.getpid():08x}{next(_sids):024x}",
        "AccountSid": "AC" + "e" * 32,
        "From": sender,
        "To": "+12125550100",
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
    return form, {"X-Twilio-Signature": signature}


def post_text(base: str, signed_for: str, sender: str, body: str = "BAL", **headers: str) -> Any:
    """Post a text to `base`/twilio/sms, signed over `signed_for`/twilio/sms; the status."""
    form, signature = signed_text(signed_for + "/twilio/sms", sender, body)
    status, answer = http("POST", base + "/twilio/sms", form=form, headers={**signature, **headers})
    return status, answer


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # Who gunicorn believes is the same on either database: SQLite is enough.
    return f"sqlite:///{tmp_path}/textpay.db"


@pytest.fixture(params=["0", "1"], ids=["no-proxy", "one-proxy"])
def web(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[WebOnly]:
    running = WebOnly(sqlite_url, extra_env={"TEXTPAY_TRUSTED_PROXIES": request.param}).up()
    yield running
    running.down()


def test_only_a_trusted_proxy_can_say_https(web: WebOnly) -> None:
    """A client on 127.0.0.1 claiming https (X-Forwarded-Proto) changes the URL the app sees,
    and so the URL Twilio signatures are checked over, only when TEXTPAY_TRUSTED_PROXIES says a
    proxy is in front (gunicorn by default believes any loopback peer)."""
    proxied = web.extra_env["TEXTPAY_TRUSTED_PROXIES"] != "0"
    https = web.web.replace("http://", "https://")
    claims_https = {"X-Forwarded-Proto": "https"}

    over_https = post_text(web.web, https, "+13125550101", **claims_https)
    over_http = post_text(web.web, web.web, "+13125550102", **claims_https)
    if proxied:
        assert over_https[0] == 200, (over_https, web.tail("web"))
        assert over_http[0] == 403, over_http
    else:
        assert over_https[0] == 403, ("an untrusted client made the app see https", over_https)
        assert over_http[0] == 200, (over_http, web.tail("web"))
    # Without the claim, the URL is the one the client called, proxy or not.
    assert post_text(web.web, web.web, "+13125550103")[0] == 200
