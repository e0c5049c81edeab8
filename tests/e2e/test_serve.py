"""The service as an operator starts it: `textpay serve` and gunicorn, over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
READY_SECONDS = 120  # for the server to answer /healthz after starting
REQUEST_SECONDS = 30  # for any one answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server process and yield its base URL once `/healthz` answers 200. Generous with
    time (a busy 2-core machine can take many seconds to boot gunicorn): every way a request to a
    server that is still starting can fail (refused, reset, timed out, cut short, 503) means
    "not yet", until the deadline or until the process exits."""
    with tempfile.TemporaryFile("w+") as output:  # a file, not a pipe nobody reads
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        )

        def printed() -> str:
            output.seek(0)
            return output.read()

        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                if process.poll() is not None:
                    pytest.fail(f"{command[0]} exited with {process.returncode}:\n{printed()}")
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=10) as answer:
                        if answer.status == 200:
                            break
                except (OSError, http.client.HTTPException):  # URLError and TimeoutError too
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{command} did not answer /healthz within {READY_SECONDS} s:\n{printed()}"
                    )
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def server_env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTPAY_", "TWILIO_"))}
    env.update(DATABASE_URL=database_url, PORT=str(port), TEXTPAY_ADMIN_TOKEN="e2e-token")
    return env


def test_textpay_serve_answers_healthz_and_the_admin_api(database_url: str) -> None:
    port = free_port()
    command = [str(BIN / "textpay"), "serve", "--port", str(port)]
    with running(command, server_env(database_url, port), port) as base:
        # `textpay serve` runs the jobs too: its clock beats at once.
        wait_for_clock = time.monotonic() + READY_SECONDS
        while (health := call("GET", base + "/healthz"))[1]["clock"] != "ok":
            assert time.monotonic() < wait_for_clock, health
            time.sleep(0.2)
        status, health = health
        assert (status, health["status"], health["database"]) == (200, "ok", "ok")
        assert 0 <= health["clock_age_seconds"] < 30
        status, account = call(
            "POST",
            base + "/admin/accounts",
            {"account_number": "E2E-1", "phone": "(212) 555-0147"},
            token="e2e-token",
        )
        assert status == 201
        assert account["phone"] == "+12125550147"
        status, _ = call("GET", base + "/admin/accounts", token="wrong")
        assert status == 401


def test_gunicorn_serves_the_wsgi_app(database_url: str) -> None:
    port = free_port()
    subprocess.run(
        [str(BIN / "textpay"), "init-db"],
        cwd=ROOT,
        env=server_env(database_url, port),
        check=True,
        capture_output=True,
        timeout=120,
    )
    command = [
        str(BIN / "gunicorn"),
        "wsgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
    ]
    with running(command, server_env(database_url, port), port) as base:
        status, health = call("GET", base + "/healthz")
        # No clock runs beside this gunicorn: the web stays healthy and says so.
        assert (status, health) == (200, {"status": "ok", "database": "ok", "clock": "never",
                                          "clock_age_seconds": None})  # fmt: skip
        status, settings = call("GET", base + "/admin/settings", token="e2e-token")
        assert status == 200
        assert settings["max_deposit_cents"] >= 5000
