"""The support desk in a real browser (issue 15): Debian's headless Chromium, JavaScript off, at
a phone's width. An agent signs in, finds an account by a phone typed in another spelling than
it was enrolled with, reads its thread, credits it and sees the new balance; a viewer sees no
credit form, and a credit forged with the viewer's own session and CSRF value is refused (403).

With `TEXTPAY_SCREENSHOTS=1` the SQLite run saves the Find and Account pages under
docs/screenshots/ (console-find.png, console-account.png), as tests/browser/test_card_link_page.py
does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from sqlalchemy.engine import Engine

from tests.browser.test_card_link_page import (
    assert_fits_the_phone,
    heading,
    page_text,
    screenshot,
    screenshots,  # noqa: F401 (the fixture)
    wait_for,
)
from tests.browser.test_console_sign_in import fill_and_submit
from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.operators_helpers import make_operator
from tests.web.twilio_client import TwilioClient
from textpay.db import unit_of_work
from textpay.models import Account


def _seed(admin: AdminClient, client: Any, offer: Callable[[int], int]) -> int:
    """Mom's account at $3.10 who said YES to a $25.00 offer."""
    account = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")
    admin.credit(account["id"], 310, "seed-4821")
    offer(account["id"])
    assert "TP-" in TwilioClient(client).text(MOM, "YES")
    return int(account["id"])


def _sign_in(browser: Chrome, live_app: str, email: str, password: str) -> None:
    browser.delete_all_cookies()
    browser.get(live_app + "/console/find")
    wait_for(browser, lambda b: b.find_element(By.ID, "password"), "the sign-in form")
    fill_and_submit(browser, email, password)
    wait_for(browser, lambda b: b.find_element(By.ID, "q"), "the Find page")


def test_an_agent_finds_an_account_reads_its_thread_and_credits_it(  # noqa: PLR0917 (fixtures)
    browser: Chrome,
    live_app: str,
    engine: Engine,
    admin: AdminClient,
    offer: Callable[[int], int],
    screenshots: bool,  # noqa: F811 (the fixture)
) -> None:
    account_id = _seed(admin, admin.client, offer)
    ann = make_operator(engine, "ann@example.org", "agent", name="Ann Agent")
    _sign_in(browser, live_app, ann.email, ann.password)
    assert heading(browser) == "Find an account"
    browser.find_element(By.ID, "q").send_keys("212.555.0147")  # enrolled as (212) 555-0147
    screenshot(browser, "console-find.png", save=screenshots)
    browser.find_element(By.CSS_SELECTOR, "form.find button[type=submit]").click()

    wait_for(browser, lambda b: b.find_element(By.ID, "balance"), "the Account page")
    assert browser.current_url == f"{live_app}/console/accounts/{account_id}"
    assert heading(browser) == "Account ACCT-4821"
    assert browser.find_element(By.ID, "balance").text == "$28.10"
    thread = browser.find_element(By.ID, "thread").text
    assert "YES" in thread
    assert "TP-" in thread  # the receipt, in reply
    assert_fits_the_phone(browser)
    screenshot(browser, "console-account.png", save=screenshots)

    browser.find_element(By.ID, "credit-amount").send_keys("12.50")
    browser.find_element(By.ID, "credit-reason").send_keys("dropped call")
    browser.find_element(By.CSS_SELECTOR, "#credit button[type=submit]").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "notice"), "the notice")
    assert "The credit was posted." in page_text(browser)
    assert browser.find_element(By.ID, "balance").text == "$40.60"
    with unit_of_work(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        assert found.balance_cents == 4060


def test_a_viewer_sees_no_credit_form_and_a_forged_one_is_refused(
    browser: Chrome,
    live_app: str,
    engine: Engine,
    admin: AdminClient,
    offer: Callable[[int], int],
) -> None:
    account_id = _seed(admin, admin.client, offer)
    vic = make_operator(engine, "vic@example.org", "viewer", name="Vic Viewer")
    _sign_in(browser, live_app, vic.email, vic.password)
    browser.get(f"{live_app}/console/accounts/{account_id}")
    wait_for(browser, lambda b: b.find_element(By.ID, "balance"), "the Account page")
    assert browser.find_elements(By.ID, "credit") == []
    assert browser.find_elements(By.ID, "actions") == []

    # A forged credit: the viewer's own page gives a form that posts with its session and CSRF
    # value (the sign-out form carries it), pointed at the credit action.
    form = browser.find_element(By.CSS_SELECTOR, ".who form")
    browser.execute_script(
        "arguments[0].action = arguments[1];"
        "for (const [n, v] of [['amount', '12.50'], ['reason', 'forged'],"
        " ['key', 'kkkkkkkkkkkkkkkkkkkk']]) {"
        "  const i = document.createElement('input'); i.type = 'hidden'; i.name = n;"
        "  i.value = v; arguments[0].appendChild(i); }",
        form,
        f"/console/accounts/{account_id}/credit",
    )
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(browser, lambda b: "Not allowed" in heading(b), "the refusal")
    assert "This needs the agent role" in page_text(browser)
    with unit_of_work(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        assert found.balance_cents == 2810
