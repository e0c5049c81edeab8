"""The console's overview chart and settings preview in a real browser (issue 15): Debian's
headless Chromium, with JavaScript on (the console's charts need it; its CSP allows scripts from
/static only), signs in, opens the overview and finds the conversion chart drawn by Chart.js
with one point per day for 30 days and pixels on its canvas, and no CSP violation in the
console; then changes a setting through its preview and saves it.

With `TEXTPAY_SCREENSHOTS=1` the SQLite run saves docs/screenshots/console-overview.png and
console-settings.png (and, from the second test, console-scans.png and console-consent.png):

    TEXTPAY_SCREENSHOTS=1 python -m pytest tests/browser/test_console_overview.py -k sqlite
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from selenium import webdriver
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.browser.conftest import WAIT_SECONDS
from tests.browser.test_card_link_page import screenshot, wait_for
from tests.browser.test_console_sign_in import fill_and_submit
from tests.db.test_overview import charge, offer, text_row
from tests.web.operators_helpers import make_operator
from textpay import consent
from textpay.models import Account, ConsentKind, GlobalSettings
from textpay.timeutil import utcnow

# Does the conversion chart hold 30 points, and has anything been painted on its canvas?
CHART_STATE = """
const canvas = document.getElementById('conversion-chart');
const chart = window.Chart && window.Chart.getChart(canvas);
if (!chart) { return null; }
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0;
for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { painted++; } }
return {labels: chart.data.labels.length, points: chart.getDatasetMeta(0).data.length,
        values: chart.data.datasets[0].data, painted: painted,
        funnel: window.Chart.getChart(document.getElementById('funnel-chart')) ? 1 : 0,
        state: document.body.getAttribute('data-charts')};
"""


@pytest.fixture
def desktop_browser(chromium_paths: tuple[str, str]) -> Iterator[Chrome]:
    """Headless Chromium at a desk's size with JavaScript on, its console log kept."""
    binary, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def seed_recent(engine: Engine) -> None:
    """Yesterday: two offers sent, one funded after a YES, one card declined; today: one sent.
    (Real time: the browser drops a session cookie whose expiry a frozen clock put in the past.)"""
    now = utcnow()
    yesterday = now - timedelta(days=1)
    with Session(engine) as session:
        account = Account(account_number="A1", phone="+12125550147")
        # $6.00: above today's $5.00 threshold, below the $8.00 the test previews.
        healthy = Account(account_number="A2", phone="+12125550148", balance_cents=600)
        session.add_all([account, healthy])
        session.flush()
        assert account.id is not None
        session.add_all([
            text_row("+12125550101", status="delivered", sent_at=yesterday),
            text_row("+12125550102", status="delivered", sent_at=yesterday),
            text_row("+12125550103", status="sent", sent_at=now - timedelta(minutes=5)),
        ])  # fmt: skip
        funded = offer(account.id, "funded", created=yesterday, expires=now)
        failed = offer(account.id, "failed", created=yesterday, expires=now)
        session.add_all([funded, failed])
        session.flush()
        session.add_all([
            charge(account.id, status="succeeded", created=yesterday, settled=yesterday,
                   prompt_id=funded.id),
            charge(account.id, status="declined", created=yesterday, settled=yesterday,
                   prompt_id=failed.id, reason="insufficient_funds"),
        ])  # fmt: skip
        session.commit()


def sign_in(browser: Chrome, live_app: str, engine: Engine) -> None:
    made = make_operator(engine, "ada@example.org", "admin", name="Ada Admin")
    browser.get(live_app + "/console/sign-in")
    fill_and_submit(browser, made.email, made.password)
    wait_for(browser, lambda b: b.find_element(By.ID, "signed-in-as"), "the landing page")


def test_the_overview_chart_is_drawn_and_a_setting_is_previewed_then_saved(
    desktop_browser: Chrome, live_app: str, engine: Engine, database_url: str
) -> None:
    browser = desktop_browser
    # Saved once (the SQLite run), when asked for, as tests/browser/test_card_link_page.py does.
    screenshots = os.environ.get("TEXTPAY_SCREENSHOTS") == "1" and database_url.startswith("sqlite")
    seed_recent(engine)
    sign_in(browser, live_app, engine)
    browser.get(live_app + "/console/overview")
    state = wait_for(browser, lambda b: b.execute_script(CHART_STATE), "the chart")
    assert state["state"] == "drawn"
    assert state["labels"] == 30
    assert state["points"] == 30
    assert state["values"][-2] == 50  # yesterday: 1 funded of 2 offers, in percent
    assert state["painted"] > 500  # a line, axes and labels: not a blank canvas
    assert state["funnel"] == 1
    problems = [entry["message"] for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
                ]  # fmt: skip
    assert problems == [], problems  # no CSP violation, no failed fetch
    screenshot(browser, "console-overview.png", save=screenshots)

    browser.get(live_app + "/console/settings")
    box = browser.find_element(By.ID, "global-low_balance_threshold_cents")
    box.clear()
    box.send_keys("800")
    browser.find_element(By.ID, "global-preview").click()
    preview = wait_for(browser, lambda b: b.find_element(By.ID, "preview"), "the preview")
    assert "Preview, nothing saved" in preview.text
    assert browser.find_element(By.ID, "preview-newly-eligible").text == "+1"
    with Session(engine) as session:
        row = session.get(GlobalSettings, 1)
        assert row is not None
        assert row.low_balance_threshold_cents == 500
    screenshot(browser, "console-settings.png", save=screenshots)
    assert (
        browser.find_element(By.ID, "global-low_balance_threshold_cents").get_attribute("value")
        == "800"
    )
    browser.find_element(By.ID, "global-save").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "saved"), "the saved notice")
    with Session(engine) as session:
        row = session.get(GlobalSettings, 1)
        assert row is not None
        assert row.low_balance_threshold_cents == 800


def test_an_admin_queues_a_scan_and_reads_a_numbers_consent_record(
    desktop_browser: Chrome, live_app: str, engine: Engine, database_url: str
) -> None:
    """The Scans page queues a scan from its button (the clock, not running here, would take
    it); the Consent page finds a number's STOP and START typed another way, and links its CSV."""
    browser = desktop_browser
    screenshots = os.environ.get("TEXTPAY_SCREENSHOTS") == "1" and database_url.startswith("sqlite")
    with Session(engine) as session:
        for kind, words in ((ConsentKind.OPT_OUT, "STOP please"), (ConsentKind.OPT_IN, "START")):
            consent.record(session, phone="+12125550147", kind=kind, words=words, source="sms",
                           now=utcnow())  # fmt: skip
        session.commit()
    sign_in(browser, live_app, engine)
    browser.get(live_app + "/console/scans")
    browser.find_element(By.ID, "queue-scan").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "queued"), "the queued notice")
    rows = browser.find_elements(By.CSS_SELECTOR, "#scans tr[data-scan]")
    assert [row.find_element(By.CSS_SELECTOR, "[data-status]").text for row in rows] == ["queued"]
    screenshot(browser, "console-scans.png", save=screenshots)

    browser.get(live_app + "/console/consent")
    box = browser.find_element(By.ID, "phone")
    box.send_keys("(212) 555-0147")
    box.submit()
    wait_for(browser, lambda b: "+12125550147" in b.find_element(By.ID, "events-heading").text,
             "the number's record")  # fmt: skip
    changes = browser.find_elements(By.CSS_SELECTOR, "#consent-events tr[data-event]")
    assert len(changes) == 2
    assert "STOP please" in changes[-1].text or "STOP please" in changes[0].text
    assert (
        browser.find_element(By.ID, "consent-csv")
        .get_attribute("href")
        .endswith("/console/consent.csv")
    )
    screenshot(browser, "console-consent.png", save=screenshots)
