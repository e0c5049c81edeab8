"""TextPay as deployed, on one machine: gunicorn (2 workers), a clock process and the Twilio
stand-in, each a real subprocess on 127.0.0.1, driven only over HTTP and through the CLI. A stack
made with `stripe=True` charges cards through Stripe's gateway: the Stripe stand-in runs as a
process of its own too (log `e2e-stripe.log`), posting its signed events to gunicorn's
`/stripe/webhook`.

Deadlines are generous: the suite must pass on a busy 2-core machine, where gunicorn can take
many seconds to boot. Each stack logs to a directory of its own (`Stack.logs`, named in failure
messages), so a test never reads an earlier run's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN_TOKEN = "e2e-admin-token"
AUTH_TOKEN = "e2e-twilio-auth-token"
STRIPE_API_KEY = "sk_test_e2eStripeKey4f1c9a"
STRIPE_WEBHOOK_SECRET = "whsec_e2eWebhookSecret7b2d"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# What a request to a process that is starting, stopping or overloaded can raise: refused or
# reset connections and timeouts (OSError, which includes URLError and TimeoutError), a
# connection closed mid-answer (HTTPException), a half-written body (ValueError).
NOT_YET = (OSError, HTTPException, ValueError)


def wait_for(check: Callable[[], T], *, timeout: float = 60, what: str = "condition") -> T:
    """`check()`'s first truthy value, trying again every 0.2 s (and after any of `NOT_YET`)
    until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    failure: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except NOT_YET as error:
            failure = error
        if time.monotonic() > deadline:
            last = f" (last error: {failure!r})" if failure else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{last}")
        time.sleep(0.2)


def http(method: str, url: str, body: Any = None, *, token: str | None = None,
         form: dict[str, str] | None = None, timeout: float = 20,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read().decode()
            status = answer.status
    except urllib.error.HTTPError as failure:
        raw, status = failure.read().decode(), failure.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@dataclass
class Stack:
    database_url: str
    web_port: int = field(default_factory=free_port)
    standin_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="textpay-e2e-")))
    extra_env: dict[str, str] = field(default_factory=dict)
    stripe: bool = False  # charge through Stripe (the stand-in process) instead of the sandbox
    stripe_port: int = field(default_factory=free_port)

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def standin(self) -> str:
        return f"http://127.0.0.1:{self.standin_port}"

    @property
    def stripe_standin(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEXTPAY_", "TWILIO_", "STRIPE_"))
        }
        env.update(
            DATABASE_URL=self.database_url,
            PORT=str(self.web_port),
            TEXTPAY_ADMIN_TOKEN=ADMIN_TOKEN,
            TWILIO_ACCOUNT_SID="AC" + "e" * 32,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_FROM_NUMBER="+12125550100",
            TEXTPAY_SMS_BACKEND="twilio",
            TEXTPAY_TWILIO_API_URL=self.standin,
            TEXTPAY_PUBLIC_URL=self.web,
            TEXTPAY_SCAN_INTERVAL_SECONDS="10",
            TEXTPAY_SEND_RATE="0",
            PYTHONUNBUFFERED="1",
        )
        if self.stripe:
            env.update(
                TEXTPAY_PAYMENTS_BACKEND="stripe",
                STRIPE_API_KEY=STRIPE_API_KEY,
                STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
                TEXTPAY_STRIPE_API_URL=self.stripe_standin,
            )
        env.update(self.extra_env)  # a test's own settings win over these defaults
        return env

    def start(self, name: str) -> None:
        commands = {
            "standin": [sys.executable, "-m", "tests.standin.twilio", "--port",
                        str(self.standin_port), "--textpay-url", self.web],
            "web": [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind",
                    f"127.0.0.1:{self.web_port}", "wsgi:app"],
            "clock": [str(BIN / "textpay"), "clock"],
            "stripe": [sys.executable, "-m", "tests.standin.stripe", "--port",
                       str(self.stripe_port), "--webhook-url", self.web + "/stripe/webhook",
                       "--webhook-secret", STRIPE_WEBHOOK_SECRET],
        }  # fmt: skip
        with self._log_path(name).open("a") as log:  # a restart appends to the same log
            self.processes[name] = subprocess.Popen(
                commands[name], cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )  # fmt: skip
        if name == "web":
            self._wait_until_ready(name, self.web + "/healthz")
        if name == "standin":
            self._wait_until_ready(name, self.standin + "/_outbound")
        if name == "stripe":
            self._wait_until_ready(name, self.stripe_standin + "/_deliveries")

    def _wait_until_ready(self, name: str, url: str) -> None:
        """Until `url` answers 200 (generously: a loaded machine boots gunicorn slowly), failing
        at once, with the log, if the process exits instead."""
        process = self.processes[name]

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode} while starting")
            return http("GET", url, timeout=10)[0] == 200

        try:
            wait_for(ready, timeout=120, what=f"{name} to answer {url}")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self.tail(name)}") from None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal `name`'s process group and wait for it to exit (SIGKILL if a SIGTERM is not
        obeyed within 30 s, as a process manager would)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):  # already exited
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def _log_path(self, name: str) -> Path:
        return self.logs / f"e2e-{name}.log"

    def log(self, name: str) -> str:
        return self._log_path(name).read_text()

    def tail(self, name: str, lines: int = 60) -> str:
        """The end of `name`'s log, for failure messages."""
        path = self._log_path(name)
        text = path.read_text() if path.exists() else ""
        return f"--- last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])

    def up(self) -> Stack:
        subprocess.run([str(BIN / "textpay"), "init-db"], cwd=ROOT, env=self.env(), check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        try:
            if self.stripe:
                self.start("stripe")
            self.start("standin")
            self.start("web")
            self.start("clock")
        except BaseException:
            self.down()  # no process outlives a stack that failed to come up
            raise
        return self

    def down(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    def admin(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer = http(method, self.web + path, body, token=ADMIN_TOKEN, headers=headers)
        assert status < 300, (status, answer)
        return answer

    def text(self, phone: str, body: str) -> str:
        """A subscriber's text, posted by the stand-in as a signed webhook; TextPay's reply."""
        status, twiml = http("POST", self.standin + "/_inbound", form={"From": phone, "Body": body})
        assert status == 200, (status, twiml, self.tail("web"))
        start = twiml.find("<Message>")
        if start < 0:
            return ""
        return str(twiml[start + 9 : twiml.index("</Message>")]).replace("&amp;", "&")

    def outbound(self, to: str | None = None) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = http("GET", self.standin + "/_outbound")[1]["messages"]
        return [m for m in messages if to is None or m.get("To") == to]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "textpay"), *args], cwd=ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
