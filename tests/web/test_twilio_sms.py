"""Conversations over signed Twilio webhooks: money moves exactly once, and only on a live YES."""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool
from sqlmodel import SQLModel, select

from scheduler import reconcile
from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits, prompt_status
from tests.web.twilio_client import TWILIO_AUTH_TOKEN, TwilioClient, new_sid, reply_text, sign
from textpay.db import is_postgresql, unit_of_work
from textpay.models import Account, ConsentEvent, Message, Prompt
from textpay.timeutil import utcnow
from webhooks import create_app


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def test_the_same_yes_delivered_five_times_charges_once(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    sid = new_sid()
    answers = [twilio.text(MOM, "YES", sid=sid) for _ in range(5)]
    assert len(set(answers)) == 1
    receipt = answers[0]
    assert "added $25.00 to acct ...4821 (Mom)" in receipt
    assert "New balance $28.10" in receipt
    assert re.search(r"Confirmation TP-[0-9A-Z]{6}", receipt)
    assert deposits(engine) == 1
    assert charges(engine) == 1
    assert balance(admin, low_account["id"]) == 2810
    assert prompt_status(engine, low_account["prompt_id"]) == "funded"
    # A second YES (a new message) for the funded offer charges nothing more, and makes no
    # new offer a third YES would pay: it says the payment went through.
    again = twilio.text(MOM, "YES")
    assert "payment for acct ...4821 already went through, so nothing more was charged" in again
    assert deposits(engine) == 1
    assert charges(engine) == 1


def test_twenty_concurrent_yes_messages_charge_once(
    app: Flask, engine: Engine, admin: AdminClient, low_account: dict[str, Any]
) -> None:
    barrier = threading.Barrier(20)
    answers: list[str] = []
    lock = threading.Lock()

    def subscriber() -> None:
        client = TwilioClient(app.test_client())
        barrier.wait()
        answer = client.text(MOM, "YES")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=subscriber) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 20
    assert sum("added $25.00" in a for a in answers) == 1
    # The others: "processing", or (sent after the charge) an offer of another top-up that only
    # a later YES could accept.
    assert all("added $25.00" in a or "charged" in a or "Reply YES" in a for a in answers)
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert balance(admin, low_account["id"]) == 2810


def test_yes_after_the_offer_expired_charges_nothing_and_offers_again(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00") as clock:  # 2:05pm in New York
        account = admin.enrol(account_number="ACCT-4821", nickname="Mom")
        admin.credit(account["id"], 310, "seed")
        first = offer(account["id"])
        clock.tick(timedelta(hours=24, minutes=1))
        answer = twilio.text(MOM, "yes")
        assert "Reply YES to add $25.00" in answer
        assert "balance $3.10" in answer
        assert charges(engine) == 0
        assert deposits(engine) == 0
        assert prompt_status(engine, first) == "expired"
        # A second YES sent with the first comes before the subscriber could have read the
        # fresh offer: it is shown again, and nothing is charged.
        clock.tick(timedelta(seconds=2))
        again = twilio.text(MOM, "YES")
        assert "Reply YES to add $25.00" in again
        assert charges(engine) == 0
        # Once read, the fresh offer is live: accepting it funds the account.
        clock.tick(timedelta(seconds=30))
        receipt = twilio.text(MOM, "YES")
        assert "added $25.00" in receipt
    assert deposits(engine) == 1


def test_stop_then_yes_opts_back_in_and_charges_nothing(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    stopped = twilio.text(MOM, "STOP")
    assert "unsubscribed" in stopped
    assert prompt_status(engine, low_account["prompt_id"]) == "cancelled"
    assert twilio.text(MOM, "STOP") == ""  # one confirmation only

    answer = twilio.text(MOM, "YES")
    assert "subscribed" in answer
    assert "unsubscribed" not in answer
    assert charges(engine) == 0
    assert deposits(engine) == 0
    with unit_of_work(engine) as session:
        account = session.get(Account, low_account["id"])
        assert account is not None
        assert account.opted_out is False
        events = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
        assert [(e.kind, e.words, e.source) for e in events] == [
            ("opt_out", "STOP", "sms"),
            ("opt_in", "YES", "sms"),
        ]
    # YES again: the offer was cancelled by STOP, so there is still nothing to charge; a
    # top-up is offered instead.
    assert "Nothing is charged until you do" in twilio.text(MOM, "YES")
    assert charges(engine) == 0


def test_yes_with_no_offer_offers_a_top_up_and_charges_nothing(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    admin.enrol()
    answer = twilio.text(MOM, "YES")
    assert "add $25.00 to acct ...4821" in answer
    assert "Reply YES to confirm" in answer
    assert charges(engine) == 0


def test_a_card_number_sent_by_sms_is_not_in_the_database_or_the_logs(
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A SID without the card's digits, so that finding "4111" anywhere means the card leaked.
    answer = twilio.text(MOM, "my new card is 4111 1111 1111 1111 exp 09/29", sid="SM" + "c" * 32)
    assert "never text a card number" in answer
    assert "4111" not in answer
    assert charges(engine) == 0
    assert "4111" not in caplog.text
    assert "4111111111111111" not in caplog.text

    with unit_of_work(engine) as session:
        dump = " ".join(
            str(row)
            for table in SQLModel.metadata.sorted_tables
            for row in session.connection().execute(table.select())
        )
    assert "4111 1111" not in dump
    assert "4111111111111111" not in dump
    assert "[card number removed]" in dump  # the message itself was kept, masked


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, {"X-Twilio-Signature": ""}],
)
def test_missing_or_bad_signature_is_403(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any], headers: dict[str, str]
) -> None:
    params = {"MessageSid": new_sid(), "From": MOM, "To": "+12125550100", "Body": "YES"}
    response = twilio.client.post("/twilio/sms", data=params, headers=headers)
    assert response.status_code == 403
    assert charges(engine) == 0
    with unit_of_work(engine) as session:
        assert session.exec(select(Message).where(Message.direction == "inbound")).all() == []


@pytest.mark.parametrize("signature", ["\u00e9" * 28, "abc\u00e9", "\u00e9"])
def test_a_signature_that_is_not_ascii_is_403_not_a_server_error(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any], signature: str
) -> None:
    params = {"MessageSid": new_sid(), "From": MOM, "To": "+12125550100", "Body": "YES"}
    response = twilio.client.post(
        "/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    assert charges(engine) == 0


def test_tampered_body_with_a_valid_looking_signature_is_403(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    signed = {"MessageSid": new_sid(), "From": MOM, "To": "+12125550100", "Body": "BAL"}
    signature = sign("http://localhost/twilio/sms", signed)
    tampered = {**signed, "Body": "YES 200"}
    response = twilio.client.post(
        "/twilio/sms", data=tampered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    assert charges(engine) == 0
    # The untouched request with the same signature is accepted.
    ok = twilio.client.post("/twilio/sms", data=signed, headers={"X-Twilio-Signature": signature})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("signed_url", "token", "status"),
    [
        ("http://localhost/twilio/sms", TWILIO_AUTH_TOKEN, 200),  # the URL as we see it
        ("http://localhost:80/twilio/sms", TWILIO_AUTH_TOKEN, 200),  # Twilio added the port
        ("http://localhost:8080/twilio/sms", TWILIO_AUTH_TOKEN, 403),  # another URL
        ("http://localhost/twilio/sms", "another account's token", 403),
    ],
)
def test_a_signature_over_the_url_with_or_without_its_port_is_accepted(
    twilio: TwilioClient, low_account: dict[str, Any], signed_url: str, token: str, status: int
) -> None:
    """Twilio signs the URL it called with its port or without it; both are Twilio's, and the
    one-HMAC check of the URL as seen falls back to the SDK's check of both."""
    params = {"MessageSid": new_sid(), "From": MOM, "To": "+12125550100", "Body": "BAL"}
    response = twilio.client.post(
        "/twilio/sms", data=params, headers={"X-Twilio-Signature": sign(signed_url, params, token)}
    )
    assert response.status_code == status
    if status == 200:
        assert "acct ...4821" in response.get_data(as_text=True)


def test_signatures_are_checked_against_the_public_url_behind_a_proxy(
    app: Flask, low_account: dict[str, Any]
) -> None:
    services = app.extensions["textpay"]
    public = "https://sms.textpay.example.org"
    proxied = create_app(services.settings.model_copy(update={"public_url": public}))
    client = TwilioClient(proxied.test_client(), base_url=public)
    assert "acct ...4821" in client.text(MOM, "BAL")
    direct = TwilioClient(proxied.test_client())  # signed for http://localhost: wrong URL
    assert direct.sms(MOM, "BAL").status_code == 403
    proxied.extensions["textpay"].engine.dispose()


def test_malformed_but_signed_requests_are_400(twilio: TwilioClient) -> None:
    assert twilio.post("/twilio/sms", {"Body": "YES", "From": MOM}).status_code == 400
    assert twilio.post("/twilio/sms", {"MessageSid": new_sid(), "Body": "YES"}).status_code == 400
    bad_from = twilio.post(
        "/twilio/sms", {"MessageSid": new_sid(), "From": "not-a-number", "Body": "YES"}
    )
    assert bad_from.status_code == 400
    assert twilio.post("/twilio/status", {"MessageSid": new_sid()}).status_code == 400


def test_a_number_with_no_account_learns_nothing(
    twilio: TwilioClient, admin: AdminClient, low_account: dict[str, Any]
) -> None:
    stranger = "+13125550199"
    for body in ("BAL", "YES", "hello", "YES 4821"):
        answer = twilio.text(stranger, body)
        assert answer.startswith("TextPay: this number isn't enrolled")
        assert "4821" not in answer
        assert "$" not in answer
    assert "Msg&data rates may apply" in twilio.text(stranger, "HELP")


@pytest.mark.parametrize(
    "body",
    ["", "   ", "x" * 1600, "😀🎉🙏" * 100, "¿Qué pasa? ñ ü ß 漢字", "YES " * 400, "\x00\x01"],
)
def test_odd_bodies_never_cause_a_500(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any], body: str
) -> None:
    response = twilio.sms(MOM, body)
    assert response.status_code == 200
    assert reply_text(response)  # never silence


def test_media_only_message_gets_the_help_line(
    twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    answer = reply_text(twilio.sms(MOM, "", NumMedia="1", MediaUrl0="https://example.org/a.jpg"))
    assert "Msg&data rates may apply" in answer
    assert "STOP" in answer


def test_two_offers_on_one_phone_ask_which_and_a_bare_yes_charges_nothing(
    twilio: TwilioClient,
    admin: AdminClient,
    engine: Engine,
    offer: Callable[[int], int],
) -> None:
    mom = admin.enrol(account_number="ACCT-4821", nickname="Mom")
    dad = admin.enrol(account_number="ACCT-7730", nickname="Dad")
    for account in (mom, dad):
        admin.credit(account["id"], 200, f"seed-{account['id']}")
        offer(account["id"])
    answer = twilio.text(MOM, "YES")
    assert "...4821 (Mom)" in answer
    assert "...7730 (Dad)" in answer
    assert "YES 4821" in answer
    assert charges(engine) == 0

    receipt = twilio.text(MOM, "YES 7730")
    assert "added $25.00 to acct ...7730 (Dad)" in receipt
    assert balance(admin, dad["id"]) == 2700
    assert balance(admin, mom["id"]) == 200
    # Now only Mom's offer is live: a bare YES is no longer ambiguous.
    assert "...4821" in twilio.text(MOM, "YES")
    assert balance(admin, mom["id"]) == 2700


def test_yes_with_an_amount_funds_that_amount_within_the_limits(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    refused = twilio.text(MOM, "YES 500")
    assert "deposits must be $5.00 to $200.00" in refused
    assert charges(engine) == 0
    assert "we didn't understand that amount" in twilio.text(MOM, "yes forty")
    assert charges(engine) == 0
    receipt = twilio.text(MOM, "yes $40")
    assert "added $40.00" in receipt
    assert "New balance $43.10" in receipt
    assert balance(admin, low_account["id"]) == 4310


def test_a_declined_card_moves_no_money_and_says_what_to_do(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    account = admin.enrol(payment_method={"token": "tok_insufficientFunds"})
    admin.credit(account["id"], 310, "seed")
    prompt_id = offer(account["id"])
    answer = twilio.text(MOM, "YES")
    assert "card ...9995 was declined (insufficient funds)" in answer
    assert "Nothing was charged" in answer
    assert "New card: http://localhost/card/" in answer  # a card link (issue 13)
    assert answer.endswith(" then reply YES.")
    assert deposits(engine) == 0
    assert balance(admin, account["id"]) == 310
    assert prompt_status(engine, prompt_id) == "failed"
    # YES again gets a fresh offer, not a charge.
    assert "Reply YES to add $25.00" in twilio.text(MOM, "YES")
    assert charges(engine) == 1


def test_a_slow_card_answers_processing_and_the_reconciler_sends_the_receipt(
    app: Flask, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    services = app.extensions["textpay"]
    # The card answers 30 s after the charge; the test moves the clock there rather than waiting,
    # so a busy machine cannot make the card answer before the "not yet" check.
    hasty = create_app(
        services.settings.model_copy(
            update={"gateway_timeout_seconds": 0.1, "sandbox_slow_seconds": 30.0}
        )
    )
    twilio = TwilioClient(hasty.test_client())
    account = admin.enrol(payment_method={"token": "tok_slow"})
    admin.credit(account["id"], 310, "seed")
    prompt_id = offer(account["id"])

    sid = new_sid()
    started = time.monotonic()
    first = twilio.text(MOM, "YES", sid=sid)
    assert time.monotonic() - started < 5
    assert "processing your payment of $25.00" in first
    # Twilio retries while the charge is in flight: same answer, nothing more charged.
    assert twilio.text(MOM, "YES", sid=sid) == first
    assert "already being processed" in twilio.text(MOM, "YES")
    assert charges(engine) == 1
    assert deposits(engine) == 0
    assert prompt_status(engine, prompt_id) == "accepted"

    parts = hasty.extensions["textpay"]
    early = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
    assert early.settled == 0  # the card has not answered yet
    with freeze_time(utcnow() + timedelta(seconds=31)):
        done = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
        assert (done.settled, done.still_pending) == (1, 0)
        again = reconcile.run(engine, parts.gateway, parts.engine_config, grace_seconds=0)
        assert again.settled == 0
    assert deposits(engine) == 1
    assert charges(engine) == 1
    assert balance(admin, account["id"]) == 2810
    assert prompt_status(engine, prompt_id) == "funded"
    with unit_of_work(engine) as session:
        [receipt] = session.exec(select(Message).where(Message.direction == "outbound")).all()
    assert receipt.kind == "receipt"
    assert receipt.status == "pending"
    assert "New balance $28.10" in receipt.body
    hasty.extensions["textpay"].engine.dispose()


def test_bal_lists_each_account_with_its_offer(
    twilio: TwilioClient, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00"):
        mom = admin.enrol(account_number="ACCT-4821", nickname="Mom")
        admin.enrol(account_number="ACCT-7730", nickname="Dad")
        admin.credit(mom["id"], 310, "seed")
        offer(mom["id"])
        answer = twilio.text(MOM, "BAL")
    assert "acct ...4821 (Mom) $3.10 as of 2:05pm, offer of $25.00 waiting" in answer
    assert "acct ...7730 (Dad) $0.00" in answer


def test_help_names_the_program_frequency_rates_and_stop(
    twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    answer = twilio.text(MOM, "HELP")
    assert answer.startswith("TextPay:")
    assert "Up to 3 msgs/day" in answer
    assert "Msg&data rates may apply" in answer
    assert "textpay.example/help" in answer
    assert "STOP" in answer


def test_spanish_subscribers_get_spanish(
    twilio: TwilioClient, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    account = admin.enrol(language="es", nickname="Mamá")
    admin.credit(account["id"], 310, "seed")
    offer(account["id"])
    receipt = twilio.text(MOM, "sí 40")
    # Accents are folded where they would double the segments (as Twilio's Smart Encoding does).
    assert "se agregaron $40.00 a la cuenta ...4821 (Mama)" in receipt
    assert "Nuevo saldo $43.10" in receipt
    assert "Envie AYUDA" in twilio.text(MOM, "SALDO")
    assert "we'll text you in English" in twilio.text(MOM, "ENGLISH")
    assert "Text HELP" in twilio.text(MOM, "BAL")
    assert "le escribiremos en español" in twilio.text(MOM, "Español")


def test_the_admin_api_shows_the_open_offer(
    admin: AdminClient, twilio: TwilioClient, low_account: dict[str, Any]
) -> None:
    shown = admin.get(f"/admin/accounts/{low_account['id']}").get_json()["pending_prompt"]
    assert shown["id"] == low_account["prompt_id"]
    assert (shown["status"], shown["amount_cents"], shown["fee_cents"]) == ("pending", 2500, 0)
    twilio.text(MOM, "YES")
    assert admin.get(f"/admin/accounts/{low_account['id']}").get_json()["pending_prompt"] is None


def test_no_declines_the_offer(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    assert "no top-up for acct ...4821 (Mom)" in twilio.text(MOM, "No thanks")
    assert prompt_status(engine, low_account["prompt_id"]) == "declined"
    # A YES after it charges nothing: it asks for a top-up, answered with an offer.
    assert "Reply YES to confirm" in twilio.text(MOM, "YES")
    assert charges(engine) == 0


def test_autopay_on_and_off_by_text_are_recorded_as_consent(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    on = twilio.text(MOM, "AUTOPAY ON 40")
    assert "AutoPay is on for acct ...4821" in on
    assert "we'll add $40.00 with card ...4242" in on
    shown = admin.get(f"/admin/accounts/{low_account['id']}").get_json()
    assert shown["autopay_enabled"] is True
    assert shown["preset_amount_cents"] == 4000
    assert "AutoPay is off for acct ...4821" in twilio.text(MOM, "autopay off")
    assert admin.get(f"/admin/accounts/{low_account['id']}").get_json()["autopay_enabled"] is False
    with unit_of_work(engine) as session:
        events = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()  # type: ignore[arg-type]
    assert [(e.kind, e.words) for e in events] == [
        ("autopay_on", "AUTOPAY ON 40"),
        ("autopay_off", "autopay off"),
    ]
    assert charges(engine) == 0


def test_when_twilio_answers_stop_the_engine_records_it_silently(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    services = app.extensions["textpay"]
    delegated = create_app(services.settings.model_copy(update={"twilio_handles_opt_out": True}))
    twilio = TwilioClient(delegated.test_client())
    assert twilio.text(MOM, "STOP") == ""
    assert prompt_status(engine, low_account["prompt_id"]) == "cancelled"
    assert twilio.text(MOM, "START") == ""
    assert twilio.text(MOM, "HELP") == ""
    assert "acct ...4821" in twilio.text(MOM, "BAL")  # our own keywords still answer
    with unit_of_work(engine) as session:
        kinds = [e.kind for e in session.exec(select(ConsentEvent)).all()]
    assert kinds == ["opt_out", "opt_in"]
    delegated.extensions["textpay"].engine.dispose()


def test_inbound_messages_are_recorded_once_per_sid(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    sid = new_sid()
    for _ in range(3):
        twilio.text(MOM, "BAL", sid=sid)
    with unit_of_work(engine) as session:
        rows = session.exec(select(Message).where(Message.twilio_sid == sid)).all()
    assert len(rows) == 1
    assert rows[0].reply_body is not None
    assert "acct ...4821" in rows[0].reply_body


def transactions_open(app_engine: Engine, probe: Engine) -> list[str]:
    """Whatever is inside a database transaction right now, other than this probe: connections
    checked out of the app's pool (a session holds one from its first statement until it commits
    or rolls back), and, seen from the database, other sessions in a transaction (PostgreSQL) or
    holding the write lock, which every TextPay transaction takes at BEGIN (SQLite)."""
    pool = app_engine.pool
    assert isinstance(pool, QueuePool)
    out = pool.checkedout()
    found = [f"{out} connection(s) out of the app's pool"] if out else []
    if is_postgresql(probe):
        with probe.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pid, state, query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                )
            ).all()
        return found + [f"backend {pid} {state}: {query}" for pid, state, query in rows]
    database = probe.url.database
    assert database
    raw = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")  # fails at once if another connection holds the lock
        raw.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        found.append(f"the SQLite write lock is held ({error})")
    finally:
        raw.close()
    return found


def test_the_transaction_probe_sees_a_transaction_held_open(app: Flask, engine: Engine) -> None:
    """The probe below can fail: a transaction the app holds shows up both ways."""
    app_engine = app.extensions["textpay"].engine
    assert transactions_open(app_engine, engine) == []
    with unit_of_work(app_engine) as session:
        session.exec(select(Account)).all()
        held = transactions_open(app_engine, engine)
    assert len(held) == 2, held
    assert transactions_open(app_engine, engine) == []


def test_no_transaction_is_open_while_the_card_is_charged(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    """The gateway is called between two commits: while it runs, the app holds no connection
    and the database sees no transaction, and another connection can write (on SQLite a held
    write transaction would block it)."""
    services = app.extensions["textpay"]
    seen: list[str] = []
    open_while_charging: list[list[str]] = []

    class Observing:
        def __getattr__(self, name: str) -> Any:
            return getattr(services.gateway, name)

        def charge(self, *args: Any, **kwargs: Any) -> Any:
            open_while_charging.append(transactions_open(services.engine, engine))
            try:
                with engine.begin() as connection:
                    connection.execute(text("UPDATE account SET nickname = nickname"))
                seen.append("wrote while charging")
            except OperationalError as error:
                seen.append(f"could not write: {error}")
            return services.gateway.charge(*args, **kwargs)

    app.extensions["textpay"] = dataclasses.replace(services, gateway=Observing())
    response = TwilioClient(app.test_client()).sms(MOM, "YES")
    assert open_while_charging == [[]]
    assert seen == ["wrote while charging"]
    assert "added $25.00" in reply_text(response)
    with unit_of_work(engine) as session:
        prompt = session.get(Prompt, low_account["prompt_id"])
        assert prompt is not None
        assert prompt.status == "funded"
