"""gunicorn.conf.py's trust in proxies follows TEXTPAY_TRUSTED_PROXIES (tests/e2e/test_proxy.py
shows the effect on a running gunicorn), and its workers are forked from the loaded app."""

from __future__ import annotations

import gc
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from gunicorn.config import Config

from textpay.config import Settings
from webhooks import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _metrics_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR for the process it runs in: set it here
    so that it is undone after each test."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))


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


def test_workers_are_forked_from_the_loaded_app_each_with_a_pool_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """preload_app: gunicorn loads the app once and forks workers ready to serve. Its
    `post_fork` gives each worker an empty connection pool, so no connection the arbiter
    opened is ever used from two processes, and leaves the arbiter's connections open."""
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert namespace["preload_app"] is True
    app = create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/boot.db"))
    engine = app.extensions["textpay"].engine
    held = engine.connect()  # the arbiter's, in use
    with engine.connect() as idle:  # the arbiter's, back in the pool
        pooled = idle.connection.dbapi_connection
    server = SimpleNamespace(cfg=SimpleNamespace(preload_app=True))
    worker = SimpleNamespace(app=SimpleNamespace(wsgi=lambda: app))

    namespace["post_fork"](server, worker)

    with engine.connect() as mine:
        assert mine.connection.dbapi_connection is not pooled
    assert pooled is not None
    assert pooled.execute("SELECT 1").fetchone() == (1,)  # still open for the arbiter
    assert held.exec_driver_sql("SELECT 1").scalar_one() == 1
    held.close()


def test_the_loaded_app_is_kept_out_of_the_workers_garbage_collections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Once the app is loaded, the arbiter freezes what it made (`when_ready`): a worker's full
    collection no longer walks every object of the libraries (about 110 ms with webhooks
    queued behind it), and a worker forked later inherits that."""
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    app = create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/gc.db"))
    assert gc.get_freeze_count() == 0
    try:
        namespace["when_ready"](_arbiter(app))
        assert gc.get_freeze_count() > 10_000  # the app and the libraries it loaded
        assert gc.is_tracked(app)
        assert not any(o is app for o in gc.get_objects())  # frozen, out of every walk
    finally:
        gc.unfreeze()


def _arbiter(app: Flask) -> SimpleNamespace:
    """What `when_ready` reads of gunicorn's arbiter: its config and the app it loaded."""
    return SimpleNamespace(cfg=SimpleNamespace(preload_app=True),
                           app=SimpleNamespace(wsgi=lambda: app))  # fmt: skip


def test_the_arbiter_rehearses_a_text_before_forking_only_for_textpay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`when_ready` hands TextPay's app to `webhooks.rehearsal` (tests/web/test_rehearsal.py:
    a worker's first YES then compiles nothing), and a floor's plain Flask app to nobody."""
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    rehearsed: list[tuple[Flask, int]] = []
    # Before `gc.freeze`: what the rehearsal compiles is frozen with the rest of the app.
    monkeypatch.setattr("webhooks.rehearsal.rehearse",
                        lambda app: rehearsed.append((app, gc.get_freeze_count())))  # fmt: skip
    app = create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/ready.db"))
    try:
        namespace["when_ready"](_arbiter(app))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    try:
        namespace["when_ready"](_arbiter(Flask("floor")))
    finally:
        gc.unfreeze()
    assert rehearsed == [(app, 0)]


def test_another_app_served_with_the_same_file_boots(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The benchmarks serve their floors (plain Flask apps) with this file too: a worker of an
    app without TextPay's engine boots (its `post_fork` once failed every such worker)."""
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    other = Flask("floor")
    server = SimpleNamespace(cfg=SimpleNamespace(preload_app=True))
    worker = SimpleNamespace(app=SimpleNamespace(wsgi=lambda: other))
    namespace["post_fork"](server, worker)  # no error


def test_a_dead_worker_s_live_gauges_are_forgotten_and_its_counts_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`child_exit` (and `on_starting`, for workers that died before a restart) mark the worker
    dead for prometheus_client's multiprocess mode: its live gauges go, its counters stay in
    the sums a scrape reads."""
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    directory = Path(namespace["os"].environ["PROMETHEUS_MULTIPROC_DIR"])
    assert directory == tmp_path / "metrics"
    assert directory.is_dir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that existed and is no more
    for name in ("gauge_livesum_4242.db", "counter_4242.db", f"gauge_livesum_{gone.pid}.db",
                 f"gauge_livesum_{os.getpid()}.db"):  # fmt: skip
        (directory / name).write_bytes(b"")
    namespace["child_exit"](SimpleNamespace(), SimpleNamespace(pid=4242))
    assert "gauge_livesum_4242.db" not in {p.name for p in directory.iterdir()}
    namespace["on_starting"](SimpleNamespace())  # the dead process's live gauge goes too
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["counter_4242.db", f"gauge_livesum_{os.getpid()}.db"])  # fmt: skip
