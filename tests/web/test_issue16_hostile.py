"""Top up any time (issue 16), attacked by a hostile subscriber and by concurrency: digits of
other scripts, amounts the subscriber never typed, Twilio's retries, a payment in flight, the
scan making an offer at the same moment, a card or limit changed between the offer and the
YES, STOP and closed accounts. Whatever happens: no charge from the first text, no amount
never typed, at most one charge per offer, no 5xx."""

from __future__ import annotations

import threading
from datetime import timedelta

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from scheduler import scan
from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits
from tests.web.test_top_up_by_text import DAYTIME, READ, deposited, offers
from tests.web.twilio_client import TwilioClient, new_sid
from webhooks import create_app


def test_digits_of_other_scripts_are_the_amount_typed_and_only_that(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        assert "add $20.00 to acct ...4821" in twilio.text(MOM, "ADD ٢٠")  # Arabic-Indic
        assert "add $30.00 to acct ...4821" in twilio.text(
            MOM, "agregar \uff13\uff10"
        )  # full width 30
        for odd in ("ADD ²⁰", "ADD 1e3", "ADD 2O", "ADD 20.555", "ADD 20,00", "ADD -20",
                    "ADD $20 $30", "ADD 20 20"):  # fmt: skip
            answer = twilio.text(MOM, odd)
            assert "Reply YES to confirm" not in answer, odd
        assert [(s, a) for _, s, a in offers(engine)] == [("cancelled", 2000), ("pending", 3000)]
        clock.tick(READ)
        assert "added $30.00" in twilio.text(MOM, "YES")
    assert deposited(engine) == [(mom["id"], 3000)]


def test_a_twilio_retry_of_the_yes_that_asked_for_the_offer_never_accepts_it(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    """YES with no offer is answered with an offer. Twilio retries that same YES (its SID)
    after the reading moment: it is the same text, not the next YES, so nothing is charged."""
    with freeze_time(DAYTIME) as clock:
        admin.enrol()
        sid = new_sid()
        first = twilio.text(MOM, "YES", sid=sid)
        assert "Reply YES to confirm" in first
        clock.tick(READ + timedelta(minutes=5))
        assert twilio.text(MOM, "YES", sid=sid) == first
        assert (charges(engine), deposits(engine)) == (0, 0)
        add_sid = new_sid()
        twilio.text(MOM, "ADD 40", sid=add_sid)
        clock.tick(READ)
        twilio.text(MOM, "ADD 40", sid=add_sid)
        assert (charges(engine), deposits(engine)) == (0, 0)


def test_add_while_a_payment_is_in_flight_offers_nothing_and_charges_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    services = app.extensions["textpay"]
    hasty = create_app(
        services.settings.model_copy(
            update={"gateway_timeout_seconds": 0.1, "sandbox_slow_seconds": 30.0}
        )
    )
    twilio = TwilioClient(hasty.test_client())
    with freeze_time(DAYTIME) as clock:
        admin.enrol(payment_method={"token": "tok_slow"})
        assert "Reply YES to confirm" in twilio.text(MOM, "ADD 20")
        clock.tick(READ)
        assert "processing your payment of $20.00" in twilio.text(MOM, "YES")
        for body in ("ADD 20", "ADD 50", "YES", "YES 50", "AGREGAR 20"):
            answer = twilio.text(MOM, body)
            assert "already being processed" in answer, (body, answer)
        clock.tick(READ)
        for body in ("YES", "YES 50"):
            assert "already being processed" in twilio.text(MOM, body)
    assert charges(engine) == 1
    assert [s for _, s, _ in offers(engine)] == ["accepted"]


def test_the_offer_is_for_the_card_on_file_when_it_was_made(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    """ADD names card ...4242; the card is changed before the YES: the YES is not a charge of
    the new card, it gets a fresh offer naming it."""
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        assert "card ...4242" in twilio.text(MOM, "ADD 20")
        new_card = {"payment_method": {"token": "tok_mastercard", "exp_month": 1, "exp_year": 2031}}
        assert admin.patch(f"/admin/accounts/{mom['id']}", json=new_card).status_code == 200
        clock.tick(READ)
        again = twilio.text(MOM, "YES")
        assert "card ...4444" in again
        assert "added" not in again
        assert charges(engine) == 0
        clock.tick(READ)
        assert "added $25.00" in twilio.text(MOM, "YES")  # the fresh offer, at the preset
    assert charges(engine) == 1


def test_limits_lowered_after_the_offer_are_checked_at_the_yes(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        admin.enrol()
        assert "add $150.00" in twilio.text(MOM, "ADD 150")
        lowered = {"max_deposit_cents": 10000, "daily_deposit_limit_cents": 10000}
        assert admin.patch("/admin/settings", json=lowered).status_code == 200
        clock.tick(timedelta(seconds=6))  # past the settings cache
        clock.tick(READ)
        answer = twilio.text(MOM, "YES")
        assert "added" not in answer
    assert charges(engine) == 0


def test_stop_then_yes_is_an_opt_in_and_never_an_offer_or_a_charge(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        admin.enrol()
        assert "Reply YES to confirm" in twilio.text(MOM, "ADD 20")
        twilio.text(MOM, "STOP")
        clock.tick(READ)
        for body in ("ADD 20", "AGREGAR 20"):
            assert "you're unsubscribed" in twilio.text(MOM, body)
        assert charges(engine) == 0
        assert "you're subscribed" in twilio.text(MOM, "YES 20")  # an opt-in, never a payment
        clock.tick(READ)
        # Back in: the offer made before the STOP was withdrawn by it; a YES asks afresh.
        assert "Reply YES to confirm" in twilio.text(MOM, "YES")
    assert charges(engine) == 0
    assert [s for _, s, _ in offers(engine)] == ["cancelled", "pending"]


def test_textpay_off_or_suspended_accounts_are_never_offered_a_top_up(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    off = admin.enrol(textpay_enabled=False, autopay_enabled=True)
    for body in ("ADD 20", "YES", "YES 20"):
        assert "Reply YES to confirm" not in twilio.text(MOM, body), body
    admin.patch(f"/admin/accounts/{off['id']}", json={"textpay_enabled": True,
                                                      "status": "suspended"})  # fmt: skip
    for body in ("ADD 20", "YES", "YES 20"):
        assert "Reply YES to confirm" not in twilio.text(MOM, body), body
    assert offers(engine) == []


def test_add_naming_a_closed_account_among_two_offers_nothing_for_it(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME):
        admin.enrol()
        dad = admin.enrol(account_number="ACCT-7730", nickname="Dad")
        admin.patch(f"/admin/accounts/{dad['id']}", json={"status": "closed"})
        assert "can't be paid by text" in twilio.text(MOM, "ADD 7730 20")
        assert "can't be paid by text" in twilio.text(MOM, "YES 7730 20")
    assert offers(engine) == []


def test_adds_racing_the_scan_make_one_open_offer_and_no_server_error(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The scan offers a low account while its subscriber texts ADD: one open offer, every
    text answered, nothing charged."""
    services = app.extensions["textpay"]
    for round_ in range(4):
        account = admin.enrol(account_number=f"RACE-{round_}", phone=f"212555{round_:04d}")
        admin.credit(account["id"], 100, f"seed-race-{round_}")
    errors: list[BaseException] = []
    statuses: list[int] = []
    barrier = threading.Barrier(5)

    def texter(round_: int) -> None:
        client = app.test_client()
        barrier.wait()
        try:
            for body in ("ADD 20", "ADD 30", "ADD", "YES"):
                statuses.append(TwilioClient(client).sms(f"+1212555{round_:04d}", body).status_code)
        except BaseException as error:
            errors.append(error)

    def scanner() -> None:
        barrier.wait()
        try:
            for _ in range(3):
                scan.run(services.engine, services.gateway, services.engine_config)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=texter, args=(r,)) for r in range(4)]
    threads.append(threading.Thread(target=scanner))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert set(statuses) == {200}
    by_account: dict[int, list[str]] = {}
    for account_id, status, _ in offers(engine):
        by_account.setdefault(account_id, []).append(status)
    assert all(s.count("pending") <= 1 for s in by_account.values()), by_account
    assert charges(engine) == 0
