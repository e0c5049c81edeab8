"""Fixtures for browser tests: the real app served over HTTP, and Debian's headless Chromium.

`live_app` serves the test's app (`tests/conftest.py`: the sandbox gateway, SQLite or PostgreSQL)
with werkzeug in a thread on a free port, so a reply's card link points at a host a browser can
open. `browser` is the distribution's Chromium driven by Selenium through the distribution's
chromedriver (never a driver Selenium Manager would download): headless, JavaScript off, and a
phone's viewport (360 CSS pixels wide, device pixel ratio 2). Outside CI a missing Chromium or
chromedriver skips; under `CI=true` it fails (`.ci/run` installs Debian's `chromium` and
`chromium-driver`), as tests/e2e/test_proxy.py does for nginx.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from werkzeug.serving import make_server

from tests.conftest import IN_CI
from tests.web.conftest import offer  # noqa: F401 (the fixture, for the flows here)

PHONE_WIDTH = 360  # CSS pixels: a small Android phone
PHONE_HEIGHT = 740
WAIT_SECONDS = 60  # a busy two-core CI machine starts Chromium slowly


def _installed(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/lib/chromium")
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    browser = _installed("chromium", "chromium-browser")
    driver = _installed("chromedriver")
    if browser and driver:
        return browser, driver
    missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
    if IN_CI:
        pytest.fail(f"CI=true but {missing} is not installed: .ci/run installs Debian's "
                    "chromium and chromium-driver")  # fmt: skip
    pytest.skip(f"{missing} is not installed (apt-get install chromium chromium-driver); "
                "CI runs these tests")  # fmt: skip


@pytest.fixture
def browser(chromium_paths: tuple[str, str]) -> Iterator[webdriver.Chrome]:
    """Headless Chromium at a phone's size, with JavaScript switched off."""
    binary, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--window-size=500,900"):  # fmt: skip
        options.add_argument(argument)
    # The page must work with no script at all (its CSP forbids any): the browser runs none.
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    # Headless Chromium will not make a window under 500 px wide: a phone's screen is emulated
    # instead (DevTools' device mode), which honours the page's `<meta name="viewport">` as a
    # phone does. Not chromedriver's `mobileEmulation`: that taps with touch events, and a tap
    # never returns when JavaScript is off (chromedriver 156).
    phone = {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "deviceScaleFactor": 2, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def live_app(app: Flask) -> Iterator[str]:
    """The test's app over HTTP on 127.0.0.1 (a free port); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
