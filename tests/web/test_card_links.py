"""Card links on the sandbox (issue 13): a subscriber texts CARD, opens the link, picks a card,
and the card on file is replaced once, audited as the subscriber's, and confirmed by text; the
link refuses reuse, age, another number, a forged form, and odd paths; its token is never
stored nor logged."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import JSON, String, Text, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, col
from werkzeug.test import TestResponse

from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.twilio_client import TwilioClient
from textpay import card_links, logsafe, messages, outbox
from textpay.accounts import payment_method_of
from textpay.db import unit_of_work
from textpay.models import AuditLogEntry, CardLink, Message
from textpay.timeutil import utcnow

LINK = re.compile(r"http://localhost/card/([A-Za-z0-9_-]{43})")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DAD = "+13125550111"


def link_in(text: str) -> str:
    found = LINK.search(text)
    assert found, text
    return found.group(1)


def open_page(client: FlaskClient, token: str) -> TestResponse:
    return client.get(f"/card/{token}")


def choose(client: FlaskClient, token: str, card: str, csrf: str | None) -> TestResponse:
    form = {"card": card, **({"csrf": csrf} if csrf is not None else {})}
    return client.post(f"/card/{token}", data=form)


def csrf_of(page: TestResponse) -> str:
    found = CSRF.search(page.get_data(as_text=True))
    assert found
    return found.group(1)


def card_on_file(engine: Engine, account_id: int) -> tuple[str, str]:
    with unit_of_work(engine) as session:
        method = payment_method_of(session, account_id)
        assert method is not None
        return method.token, method.last4


def outbound(engine: Engine, kind: str) -> list[Message]:
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Message).where(Message.direction == "outbound", Message.kind == kind)
        ).all()
        return [r for (r,) in rows]


def assert_secure(response: TestResponse) -> None:
    csp = response.headers["Content-Security-Policy"]
    for part in ("default-src 'none'", "style-src 'self'", "form-action 'self'",
                 "frame-ancestors 'none'", "base-uri 'none'"):  # fmt: skip
        assert part in csp
    assert "script-src" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def mom(admin: AdminClient) -> dict[str, Any]:
    return admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")


def test_card_texts_a_link_whose_page_replaces_the_card_once(
    twilio: TwilioClient,
    client: FlaskClient,
    engine: Engine,
    mom: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = twilio.text(MOM, "CARD")
    assert answer.startswith("TextPay: update the card for acct ...4821 at http://localhost/card/")
    assert answer.endswith("(link works once, for 30 min).")
    token = link_in(answer)

    page = open_page(client, token)
    assert page.status_code == 200
    assert_secure(page)
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html
    for shown in ("...4821", "(Mom)", "Visa ...4242", "12/2030", "Mastercard ...4444", "<form"):
        assert shown in html
    assert "<script" not in html
    assert token not in html  # the form posts to its own URL: the token is not repeated

    done = choose(client, token, "tok_mastercard", csrf_of(page))
    assert done.status_code == 200, done.get_data(as_text=True)
    assert_secure(done)
    assert "Card ...4444 is now on file for account ...4821" in done.get_data(as_text=True)
    assert card_on_file(engine, mom["id"]) == ("tok_mastercard", "4444")

    [confirmation] = outbound(engine, "card_updated")
    assert confirmation.body == "TextPay: card ...4444 is now on file for acct ...4821 (Mom). " \
        "Text BAL anytime."  # fmt: skip
    assert confirmation.status == "pending"
    assert not confirmation.engine_initiated  # the answer to her own action: no quiet hours
    with unit_of_work(engine) as session:
        entry = session.exec(
            select(AuditLogEntry).where(AuditLogEntry.action == "account.card_link")
        ).one()[0]
        assert entry.actor == "subscriber"
        assert entry.entity_id == str(mom["id"])
        assert entry.before["payment_method"]["last4"] == "4242"
        assert entry.after["payment_method"]["last4"] == "4444"
        assert "token" not in entry.before["payment_method"]
        assert "token" not in entry.after["payment_method"]

    # Used: the page and the form both answer 410, and nothing changes again.
    again = open_page(client, token)
    assert again.status_code == 410
    assert_secure(again)
    assert "Text CARD to get a new one" in again.get_data(as_text=True)
    assert choose(client, token, "tok_visa", csrf_of(page)).status_code == 410
    assert card_on_file(engine, mom["id"]) == ("tok_mastercard", "4444")
    assert len(outbound(engine, "card_updated")) == 1

    assert_token_stored_nowhere(engine, token)
    assert not [r for r in caplog.records if token in r.getMessage()]
    # gunicorn's access log line for the page, as `textpay.logsafe` writes it.
    line = logsafe.scrub(f'10.0.0.7 "GET /card/{token}" 200 1532 3ms')
    assert token not in line
    assert line == '10.0.0.7 "GET /card/[link]" 200 1532 3ms'


def assert_token_stored_nowhere(engine: Engine, token: str) -> None:
    """Every text and JSON column of every table, read back: the raw token is in none."""
    found = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not columns:
                continue
            for row in connection.execute(select(*columns)):
                found += [(table.name, c.name) for c, v in zip(columns, row, strict=True)
                          if v is not None and token in str(v)]  # fmt: skip
    assert found == []
    with engine.connect() as connection:
        hashes = connection.execute(select(col(CardLink.token_hash))).scalars().all()
    assert card_links.hash_token(token) in hashes


def test_a_link_expires_after_thirty_minutes(
    twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    with freeze_time(utcnow()) as clock:
        token = link_in(twilio.text(MOM, "CARD"))
        clock.tick(timedelta(minutes=29))
        page = open_page(client, token)
        assert page.status_code == 200
        clock.tick(timedelta(minutes=1, seconds=1))
        assert open_page(client, token).status_code == 410
        late = choose(client, token, "tok_mastercard", csrf_of(page))
        assert late.status_code == 410
        assert_secure(late)
    assert card_on_file(engine, mom["id"]) == ("tok_visa", "4242")


def test_a_forged_or_missing_csrf_value_changes_nothing(
    twilio: TwilioClient, client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    token = link_in(twilio.text(MOM, "CARD"))
    page = open_page(client, token)
    for csrf in (None, "", "x" * 32, csrf_of(page)[:-1]):
        refused = choose(client, token, "tok_mastercard", csrf)
        assert refused.status_code == 400
        assert_secure(refused)
        assert "Nothing was changed" in refused.get_data(as_text=True)
    # A card that is not one of the sandbox's, or a card number, is refused the same way.
    for card in ("tok_nope", "4242424242424242", ""):
        assert choose(client, token, card, csrf_of(page)).status_code == 400
    assert card_on_file(engine, mom["id"]) == ("tok_visa", "4242")
    assert outbound(engine, "card_updated") == []
    # The link still works for the real form.
    assert choose(client, token, "tok_mastercard", csrf_of(page)).status_code == 200


def test_a_link_changes_only_its_own_account_and_only_from_its_number(
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    mom: dict[str, Any],
) -> None:
    dad = admin.enrol(account_number="ACCT-7730", phone=DAD, nickname="Dad")
    token = link_in(twilio.text(MOM, "CARD"))
    page = open_page(client, token)
    assert "...7730" not in page.get_data(as_text=True)
    # Naming Dad's account in the form changes nothing of his: the link is bound to Mom's.
    form = {"card": "tok_mastercard", "csrf": csrf_of(page), "account_id": str(dad["id"])}
    assert client.post(f"/card/{token}", data=form).status_code == 200
    assert card_on_file(engine, dad["id"]) == ("tok_visa", "4242")
    assert card_on_file(engine, mom["id"]) == ("tok_mastercard", "4444")

    # A link texted to a number the account has since left opens nothing.
    second = link_in(twilio.text(MOM, "CARD"))
    moved = admin.patch(f"/admin/accounts/{mom['id']}", json={"phone": DAD})
    assert moved.status_code == 200, moved.get_json()
    assert open_page(client, second).status_code == 404
    assert choose(client, second, "tok_visa", csrf_of(page)).status_code == 404
    assert card_on_file(engine, mom["id"]) == ("tok_mastercard", "4444")


@pytest.mark.parametrize(
    "path",
    [
        "/card/" + "A" * 10_000,
        "/card/%00",
        "/card/" + "A" * 42 + "%00",
        "/card/" + "A" * 43,  # well formed, never issued
        "/card/..%2Fadmin%2Faccounts",
        "/card/a/b/c",
        "/card/%E2%80%AE" + "A" * 40,
        "/card/%ff%fe",
        "/card/<script>",
    ],
)
def test_odd_links_are_not_found_and_never_a_server_error(
    client: FlaskClient, mom: dict[str, Any], path: str
) -> None:
    for method in ("GET", "POST"):
        response = client.open(path, method=method, data={"csrf": "x", "card": "tok_visa"})
        assert response.status_code == 404, (method, path)
        assert_secure(response)
        assert "Text CARD to get a new one" in response.get_data(as_text=True)


def test_a_declined_yes_carries_a_working_link_stored_masked(
    twilio: TwilioClient,
    client: FlaskClient,
    admin: AdminClient,
    engine: Engine,
    offer: Any,
) -> None:
    account = admin.enrol(
        account_number="ACCT-4821", payment_method={"token": "tok_chargeDeclined"}
    )
    admin.credit(account["id"], 310, "seed")
    offer(account["id"])
    answer = twilio.text(MOM, "YES")
    assert "card ...0002 was declined (refused by the bank)" in answer
    assert answer.endswith(" then reply YES.")
    token = link_in(answer)
    page = open_page(client, token)
    assert page.status_code == 200
    assert "Visa ...0002" in page.get_data(as_text=True)
    with unit_of_work(engine) as session:
        stored = session.exec(
            select(Message.reply_body).where(col(Message.reply_body).contains("declined"))
        ).one()[0]
    assert "/card/[link] then reply YES." in stored
    assert token not in stored
    assert choose(client, token, "tok_visa", csrf_of(page)).status_code == 200
    assert card_on_file(engine, account["id"]) == ("tok_visa", "4242")
    assert_token_stored_nowhere(engine, token)


def test_a_queued_text_gets_its_own_link_when_the_dispatcher_takes_it(
    client: FlaskClient, engine: Engine, mom: dict[str, Any]
) -> None:
    """AutoPay's decline texts wait for the subscriber's daytime: stored with the link masked,
    they get a fresh link when they leave, whose 30 minutes start then."""
    body = "TextPay: AutoPay couldn't charge card ...4242. New card: " + card_links.masked(
        card_links.placeholder_url("http://localhost")
    )
    with unit_of_work(engine) as session:
        messages.queue_outbound(session, phone=MOM, account_id=mom["id"], body=body,
                                kind="autopay_declined", now=utcnow())  # fmt: skip
    with freeze_time(utcnow() + timedelta(hours=10)):
        with unit_of_work(engine) as session:
            [item] = outbox.claim(session, now=utcnow(), limit=10)
        token = link_in(item.body)
        assert open_page(client, token).status_code == 200
    [stored] = outbound(engine, "autopay_declined")
    assert stored.body == body
    assert_token_stored_nowhere(engine, token)


def test_several_accounts_ask_which_and_card_4821_names_one(
    twilio: TwilioClient, client: FlaskClient, admin: AdminClient, mom: dict[str, Any]
) -> None:
    admin.enrol(account_number="ACCT-7730", phone="(212) 555-0147", nickname="Junior")
    which = twilio.text(MOM, "CARD")
    assert "which account? Reply CARD and the account number" in which
    assert "/card/" not in which
    token = link_in(twilio.text(MOM, "card 7730"))
    html = open_page(client, token).get_data(as_text=True)
    assert "...7730" in html
    assert "(Junior)" in html


def test_an_opted_out_number_gets_no_link(
    twilio: TwilioClient, engine: Engine, mom: dict[str, Any]
) -> None:
    twilio.text(MOM, "STOP")
    assert "Reply START" in twilio.text(MOM, "CARD")
    with unit_of_work(engine) as session:
        assert session.exec(select(CardLink)).all() == []


def test_yes_without_a_card_on_file_carries_a_link(
    twilio: TwilioClient, client: FlaskClient, admin: AdminClient, engine: Engine, offer: Any
) -> None:
    account = admin.enrol(account_number="ACCT-4821", payment_method=None)
    offer(account["id"])
    answer = twilio.text(MOM, "YES")
    assert "acct ...4821 has no card on file, so nothing was charged. Add one at" in answer
    token = link_in(answer)
    page = open_page(client, token)
    assert "No card on file yet." in page.get_data(as_text=True)
    assert choose(client, token, "tok_visa", csrf_of(page)).status_code == 200
    assert card_on_file(engine, account["id"]) == ("tok_visa", "4242")


def test_a_replayed_card_text_gets_a_fresh_working_link(
    twilio: TwilioClient, client: FlaskClient, mom: dict[str, Any]
) -> None:
    first = link_in(twilio.text(MOM, "CARD", sid="SM" + "c" * 32))
    again = link_in(twilio.text(MOM, "CARD", sid="SM" + "c" * 32))
    assert again != first
    assert open_page(client, again).status_code == 200


def test_spanish_link_page_and_confirmation(
    twilio: TwilioClient, client: FlaskClient, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(account_number="ACCT-4821", language="es", nickname="Mamá")
    answer = twilio.text(MOM, "TARJETA")
    assert "actualice la tarjeta de la cuenta ...4821 en http://localhost/card/" in answer
    assert "sirve una vez, por 30 min" in answer
    token = link_in(answer)
    page = open_page(client, token)
    html = page.get_data(as_text=True)
    assert '<html lang="es">' in html
    assert "Actualice su tarjeta" in html
    assert "Tarjeta registrada" in html
    done = choose(client, token, "tok_mastercard", csrf_of(page))
    assert "quedó registrada para la cuenta ...4821" in done.get_data(as_text=True)
    [confirmation] = outbound(engine, "card_updated")
    assert "tarjeta ...4444 qued" in confirmation.body
    assert "registrada para la cuenta ...4821" in confirmation.body
    assert open_page(client, token).status_code == 410
    assert card_on_file(engine, account["id"]) == ("tok_mastercard", "4444")
