"""The console's sign-in in a real browser (issue 15): Debian's headless Chromium, JavaScript
off, types an operator's email and password into the form, submits it, and lands on a page
that names the operator; a wrong password shows the generic message; signing out returns to
the form. Under the page's strict CSP the stylesheet still applies, and the session cookie is
HttpOnly and SameSite=Lax as the browser stores it."""

from __future__ import annotations

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from sqlalchemy.engine import Engine

from tests.browser.test_card_link_page import page_text, wait_for
from tests.web.operators_helpers import make_operator
from webhooks.console import SIGN_IN_FAILED


def fill_and_submit(browser: Chrome, email: str, password: str) -> None:
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def test_an_operator_signs_in_through_the_form_and_sees_their_name(
    browser: Chrome, live_app: str, engine: Engine
) -> None:
    ann = make_operator(engine, "ann@example.org", "agent", name="Ann Agent")

    browser.get(live_app + "/console/")  # anonymous: sent to the sign-in form
    wait_for(browser, lambda b: b.current_url.startswith(live_app + "/console/sign-in"),
             "the sign-in form")  # fmt: skip
    fill_and_submit(browser, ann.email, "not-the-password")
    wait_for(browser, lambda b: SIGN_IN_FAILED in page_text(b), "the generic failure")

    browser.find_element(By.ID, "email").clear()
    fill_and_submit(browser, "Ann@Example.org", ann.password)
    wait_for(browser, lambda b: b.find_element(By.ID, "signed-in-as"), "the landing page")
    assert browser.current_url == live_app + "/console/"
    assert browser.find_element(By.ID, "operator-name").text == "Ann Agent"
    assert browser.find_element(By.ID, "operator-role").text.lower() == "agent"
    assert "Ann Agent" in browser.find_element(By.ID, "signed-in-as").text
    # The stylesheet applied (the CSP lets it in): the role badge is not the default inline.
    assert browser.find_element(By.ID, "operator-role").value_of_css_property("text-transform") \
        == "uppercase"  # fmt: skip
    # The session cookie is out of reach of page script.
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["textpay_console"]["httpOnly"] is True
    assert cookies["textpay_console"]["sameSite"] == "Lax"

    browser.find_element(By.CSS_SELECTOR, ".who form button").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "password"), "the sign-in form again")
    browser.get(live_app + "/console/")
    wait_for(browser, lambda b: "/console/sign-in" in b.current_url, "signed out")
