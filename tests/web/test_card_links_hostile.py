"""Card links attacked (issue 13): what a hostile holder of a link, or of a phone, can try on
`/card/...` on the sandbox: two posts at once, the last instant of the 30 minutes, a link whose
account was closed or whose number opted out, every HTTP method, odd tokens on `/done`, a flood
of CARD texts, and CARD from nowhere. Each answer is a 4xx (or the page), never a 5xx, and each
carries the card pages' security headers."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.test_card_links import (
    assert_secure,
    card_on_file,
    choose,
    csrf_of,
    link_in,
    open_page,
    outbound,
)
from tests.web.twilio_client import TwilioClient
from textpay.db import unit_of_work
from textpay.models import AuditLogEntry, CardLink
from textpay.timeutil import utcnow

STRANGER = "+13125550199"


@pytest.fixture
def mom(admin: AdminClient) -> dict[str, Any]:
    return admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")


def links(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return session.execute(select(func.count()).select_from(CardLink)).scalar_one()


def test_two_posts_at_once_change_the_card_once_and_text_once(
    app: Flask, twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    csrf = csrf_of(open_page(client, token))
    posts = 6
    start = threading.Barrier(posts)
    statuses: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def post(card: str) -> None:
        own = app.test_client()
        try:
            start.wait(timeout=30)
            status = choose(own, token, card, csrf).status_code
            with lock:
                statuses.append(status)
        except BaseException as failure:  # reported by the test, not lost in the thread
            failures.append(failure)

    cards = ["tok_mastercard", "tok_visa"] * (posts // 2)
    threads = [threading.Thread(target=post, args=(card,)) for card in cards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(statuses) == [200] + [410] * (posts - 1)
    assert len(outbound(engine, "card_updated")) == 1
    with unit_of_work(engine) as session:
        audited = session.execute(
            select(func.count()).where(AuditLogEntry.action == "account.card_link")
        ).scalar_one()
    assert audited == 1


def test_the_link_is_dead_at_exactly_thirty_minutes(
    twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    with freeze_time(utcnow()) as clock:
        token = link_in(twilio.text(MOM, "CARD"))
        clock.tick(timedelta(minutes=30) - timedelta(microseconds=1))
        page = open_page(client, token)
        assert page.status_code == 200
        clock.tick(timedelta(microseconds=1))
        assert open_page(client, token).status_code == 410
        assert choose(client, token, "tok_mastercard", csrf_of(page)).status_code == 410
    assert card_on_file(engine, mom["id"]) == ("tok_visa", "4242")


def test_a_closed_account_s_link_opens_nothing(
    twilio: TwilioClient, client: FlaskClient, admin: AdminClient, engine: Engine,
    mom: dict[str, Any],
) -> None:  # fmt: skip
    token = link_in(twilio.text(MOM, "CARD"))
    page = open_page(client, token)
    closed = admin.patch(f"/admin/accounts/{mom['id']}", json={"status": "closed"})
    assert closed.status_code == 200, closed.get_json()
    assert open_page(client, token).status_code == 404
    refused = choose(client, token, "tok_mastercard", csrf_of(page))
    assert refused.status_code == 404
    assert_secure(refused)
    assert card_on_file(engine, mom["id"]) == ("tok_visa", "4242")


def test_after_stop_the_link_still_saves_the_card_but_texts_nothing(
    twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    """The link is the card holder's own credential: STOP ends texts, not the holder's right to
    finish what they started. The confirmation is kept, withheld, never sent."""
    token = link_in(twilio.text(MOM, "CARD"))
    twilio.text(MOM, "STOP")
    page = open_page(client, token)
    assert page.status_code == 200
    assert choose(client, token, "tok_mastercard", csrf_of(page)).status_code == 200
    assert card_on_file(engine, mom["id"]) == ("tok_mastercard", "4444")
    [confirmation] = outbound(engine, "card_updated")
    assert confirmation.status == "withheld"


PATHS = ["/card", "/card/", "/card/{token}", "/card/{token}/done", "/card/{token}/x",
         "/card/{token}/done/x", "/card/static"]  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "POST",
                                    "TRACE"])  # fmt: skip
def test_every_method_on_every_card_path_is_a_clean_answer_with_the_headers(
    twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any], method: str
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    for path in PATHS:
        response = client.open(path.format(token=token), method=method)
        assert response.status_code < 500, (method, path, response.status_code)
        assert_secure(response)
        assert token not in response.get_data(as_text=True), (method, path)
    # None of it used the link.
    page = open_page(client, token)
    assert page.status_code == 200
    assert card_on_file(engine, mom["id"]) == ("tok_visa", "4242")


@pytest.mark.parametrize(
    "token",
    ["A" * 43, "A" * 44, "A" * 10_000, "%00" * 3, "%ff%fe", "%E2%80%AE" + "A" * 40, "..",
     "<script>"],
)  # fmt: skip
def test_odd_tokens_on_done_are_not_found(
    client: FlaskClient, mom: dict[str, Any], token: str
) -> None:
    response = client.get(f"/card/{token}/done")
    assert response.status_code == 404
    assert_secure(response)


def test_a_card_flood_makes_no_more_links_than_the_inbound_limit(
    twilio: TwilioClient, engine: Engine, mom: dict[str, Any]
) -> None:
    with freeze_time(utcnow()):
        for _ in range(60):
            twilio.text(MOM, "CARD")
    assert links(engine) <= 20  # EngineConfig.inbound_per_minute's default


def test_card_from_a_stranger_or_naming_no_account_links_nothing_it_should_not(
    twilio: TwilioClient, client: FlaskClient, admin: AdminClient, engine: Engine,
    mom: dict[str, Any],
) -> None:  # fmt: skip
    assert "/card/" not in twilio.text(STRANGER, "CARD")
    assert links(engine) == 0
    # With one account on the number, figures that name no account are ignored (as for every
    # command): the link is for that account, and its page says which.
    token = link_in(twilio.text(MOM, "CARD 9999"))
    assert "...4821" in open_page(client, token).get_data(as_text=True)
    # With several, a figure naming none of them asks which, and makes no link.
    admin.enrol(account_number="ACCT-7730", phone="(212) 555-0147", nickname="Junior")
    assert "/card/" not in twilio.text(MOM, "CARD 9999")
    assert links(engine) == 1
