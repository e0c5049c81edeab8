"""gunicorn.conf.py's trust in proxies follows TEXTPAY_TRUSTED_PROXIES (tests/e2e/test_proxy.py
shows the effect on a running gunicorn)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from gunicorn.config import Config

ROOT = Path(__file__).resolve().parents[2]


def trust(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str
) -> tuple[list[str], dict[str, str]]:
    """gunicorn's forwarded_allow_ips and secure_scheme_headers, as gunicorn reads them from
    gunicorn.conf.py under `env` (and no `.env` file)."""
    monkeypatch.chdir(tmp_path)
    for name in ("TEXTPAY_TRUSTED_PROXIES", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    config = Config()
    for name in ("forwarded_allow_ips", "secure_scheme_headers"):
        config.set(name, namespace[name])
    return config.forwarded_allow_ips, config.secure_scheme_headers


@pytest.mark.parametrize(
    ("env", "allowed", "headers"),
    [
        ({}, [], {}),
        ({"TEXTPAY_TRUSTED_PROXIES": "0"}, [], {}),
        # The app's setting wins over gunicorn's own variable: no proxy, nobody believed.
        ({"TEXTPAY_TRUSTED_PROXIES": "0", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, [], {}),
        # Invalid: the app will refuse to start; gunicorn believes nobody meanwhile.
        ({"TEXTPAY_TRUSTED_PROXIES": "9"}, [], {}),
        (
            {"TEXTPAY_TRUSTED_PROXIES": "1"},
            ["127.0.0.1", "::1"],
            {"X-FORWARDED-PROTO": "https"},
        ),
        (
            {"TEXTPAY_TRUSTED_PROXIES": "2", "FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.7"},
            ["10.0.0.0/8", "192.0.2.7"],
            {"X-FORWARDED-PROTO": "https"},
        ),
    ],
)
def test_gunicorn_believes_only_the_proxies_the_app_trusts(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    allowed: list[str],
    headers: dict[str, str],
) -> None:
    assert trust(monkeypatch, tmp_path, **env) == (allowed, headers)


def test_a_dotenv_file_counts_as_the_app_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("TEXTPAY_TRUSTED_PROXIES=1\n")
    assert trust(monkeypatch, tmp_path)[0] == ["127.0.0.1", "::1"]
