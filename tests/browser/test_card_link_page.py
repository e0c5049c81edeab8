"""The card link in a real browser (issue 13): Debian's headless Chromium, at a phone's width and
with JavaScript off, opens the link a declined YES texted, sees whose account and which card it
is, picks another card and submits the form; the confirmation page shows, the confirmation text
is queued, the used link says to text CARD for a new one, and YES (to the offer made again,
naming the new card) pays with it. No page is wider than the phone.

With `TEXTPAY_SCREENSHOTS=1` the SQLite run saves each step as a PNG under docs/screenshots/ (for
the README; a plain CI run leaves the committed files alone):

    TEXTPAY_SCREENSHOTS=1 python -m pytest tests/browser -k sqlite
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tests.browser.conftest import PHONE_WIDTH, WAIT_SECONDS
from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.twilio_client import TWILIO_AUTH_TOKEN
from textpay import offers
from textpay.db import unit_of_work
from textpay.models import LedgerEntry, Message, SandboxCharge
from textpay.timeutil import travel, utcnow
from webhooks.phone import Phone

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def wait_for(browser: Chrome, condition: Callable[[Chrome], Any], what: str) -> Any:
    """Poll `condition` until it holds (a page still being replaced by the next is retried)."""
    waiting = WebDriverWait(
        browser,
        WAIT_SECONDS,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    return waiting.until(lambda b: _while_the_page_is_replaced(condition, b), what)


def _while_the_page_is_replaced(condition: Callable[[Chrome], Any], browser: Chrome) -> Any:
    """`condition`, or False when Chrome read an element of the page a submitted form was
    replacing: it says so with an 'unknown error' ("Node with given id does not belong to the
    document"), not as a stale element, on a busy machine. Any other error is raised."""
    try:
        return condition(browser)
    except WebDriverException as error:
        if "does not belong to the document" in str(error.msg):
            return False
        raise


def heading(browser: Chrome) -> str:
    return str(browser.find_element(By.TAG_NAME, "h1").text)


def page_text(browser: Chrome) -> str:
    return " ".join(str(browser.find_element(By.TAG_NAME, "body").text).split())


def assert_fits_the_phone(browser: Chrome) -> None:
    """No horizontal scroll: the page is no wider than the phone's viewport."""
    inner, scroll = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]"
    )
    assert inner == PHONE_WIDTH  # the page's viewport meta is honoured: a phone's width
    assert scroll <= inner, f"{browser.current_url}: {scroll}px wide on a {inner}px screen"


def screenshot(browser: Chrome, name: str, *, save: bool) -> None:
    """The whole page (not only the first screenful) as a PNG, when screenshots are asked for."""
    if not save:
        return
    metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })  # fmt: skip
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / name).write_bytes(base64.b64decode(shot["data"]))


def texts(engine: Engine, kind: str) -> list[str]:
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Message.body).where(Message.direction == "outbound", Message.kind == kind)
        ).all()
        return list(rows)


@pytest.fixture
def screenshots(database_url: str) -> bool:
    """Whether to save the steps' screenshots: asked for, and once (the SQLite run)."""
    return os.environ.get("TEXTPAY_SCREENSHOTS") == "1" and database_url.startswith("sqlite")


@pytest.fixture
def declined_mom(admin: AdminClient, offer: Callable[[int], int]) -> dict[str, Any]:
    """Mom's account ...4821 at $3.10, a $25.00 offer waiting, and a card that declines."""
    account = admin.enrol(
        account_number="ACCT-4821",
        nickname="Mom",
        payment_method={"token": "tok_chargeDeclined", "exp_month": 1, "exp_year": 2027},
    )
    admin.credit(account["id"], 310, "seed-4821")
    offer(account["id"])
    return account


def test_a_declined_card_is_replaced_from_the_link_in_chromium_then_yes_pays(
    browser: Chrome,
    live_app: str,
    engine: Engine,
    declined_mom: dict[str, Any],
    screenshots: bool,
) -> None:
    save = screenshots
    account = declined_mom
    phone = Phone(MOM, base_url=live_app, auth_token=TWILIO_AUTH_TOKEN)

    declined = phone.text("YES")
    assert "card ...0002 was declined" in declined
    found = re.search(re.escape(live_app) + r"/card/[A-Za-z0-9_-]{43}", declined)
    assert found, declined
    link = found.group(0)

    # 1. The page the link opens: whose account, which card, a choice of sandbox cards.
    browser.get(link)
    wait_for(browser, lambda b: heading(b) == "Update your card", "the card page")
    shown = page_text(browser)
    assert "...4821 (Mom)" in shown
    assert "Visa ...0002 expires 01/2027" in shown
    assert "Mastercard ...4444" in shown
    assert_fits_the_phone(browser)
    browser.find_element(By.CSS_SELECTOR, "input[name=card][value=tok_mastercard]").click()
    screenshot(browser, "card-link-1-page.png", save=save)

    # 2. Submitted without any script: the confirmation page, and the confirmation text.
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda b: heading(b) == "Card saved", "the confirmation page")
    assert "Card ...4444 is now on file for account ...4821" in page_text(browser)
    assert_fits_the_phone(browser)
    screenshot(browser, "card-link-2-confirmed.png", save=save)
    [confirmation] = texts(engine, "card_updated")
    assert "card ...4444 is now on file for acct ...4821" in confirmation

    # 3. The link again (a reload, a second tap on the text): used, and says what to do.
    browser.get(link)
    wait_for(browser, lambda b: "no longer works" in heading(b), "the used-link page")
    assert "Text CARD to get a new one" in page_text(browser)
    assert_fits_the_phone(browser)
    screenshot(browser, "card-link-3-used.png", save=save)

    # 4. YES again: the declined offer is offered again (a failed offer is never charged on
    # its own say-so), naming the new card; the YES to that pays with it.
    again = phone.text("YES")
    assert "Reply YES to add $25.00" in again, again
    assert "with card ...4444" in again
    with travel(utcnow() + offers.READING_TIME + timedelta(seconds=1)):  # read, then answered
        paid = phone.text("YES")
    assert "added $25.00 to acct ...4821" in paid, paid
    with unit_of_work(engine) as session:
        charged = session.exec(
            select(SandboxCharge.token, SandboxCharge.status).order_by(col(SandboxCharge.id))
        ).all()
        deposits = session.exec(
            select(LedgerEntry.amount_cents).where(
                LedgerEntry.account_id == account["id"], LedgerEntry.kind == "deposit"
            )
        ).all()
    assert [tuple(c) for c in charged] == [
        ("tok_chargeDeclined", "declined"),
        ("tok_mastercard", "succeeded"),
    ]
    assert list(deposits) == [2500]
