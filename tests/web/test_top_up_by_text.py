"""A top-up on demand over signed Twilio webhooks (issue 16): `ADD 20` / `AGREGAR 20`, or a YES
with no live offer, is answered with an offer (amount, fee, total, card, account) and charges
nothing; the next YES, once the subscriber could have read the offer, funds exactly that amount
once, whatever is retried or repeated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, count, deposits, prompt_status
from tests.web.test_amounts_by_text import deposited
from tests.web.test_statement_budget import app_engine, counted
from tests.web.twilio_client import TwilioClient, new_sid, texts_at_once
from textpay.db import unit_of_work
from textpay.models import Message, Prompt

DAYTIME = "2026-11-26 19:05:00"  # 2:05pm in New York
READ = timedelta(seconds=30)  # past the reading moment (`offers.READING_TIME`)
TOP_UP_BUDGET = 10  # SQL statements an ADD may cost, both databases


def offers(engine: Engine) -> list[tuple[int, str, int]]:
    """(account id, status, amount) of every offer, oldest first."""
    with unit_of_work(engine) as session:
        rows = session.exec(select(Prompt).order_by(col(Prompt.id))).all()
        return [(p.account_id, p.status, p.amount_cents) for p in rows]


def texts_queued(engine: Engine) -> int:
    """Texts TextPay sends on its own (the outbox); answers to a text are not among them."""
    return count(engine, Message, Message.direction == "outbound")


def test_add_is_answered_with_an_offer_and_the_next_yes_funds_it_once(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()  # $0.00: no scan has run, nothing offered yet
        offer = twilio.text(MOM, "ADD 20")
        for part in ("add $20.00 to acct ...4821 (Mom)", "card ...4242", "Fee $0.00",
                     "total $20.00", "Balance $0.00", "Reply YES to confirm",
                     "Nothing is charged until you do", "Offer ends 2:05pm tomorrow"):  # fmt: skip
            assert part in offer
        assert (charges(engine), deposits(engine)) == (0, 0)
        assert offers(engine) == [(mom["id"], "pending", 2000)]
        assert texts_queued(engine) == 0  # the offer was the answer, not a text of its own

        # A YES sent together with the ADD comes before the offer could be read: it is shown
        # again (in the words of a low-balance offer) and nothing is charged.
        clock.tick(timedelta(seconds=2))
        assert "Reply YES to add $20.00 (fee $0.00, total $20.00)" in twilio.text(MOM, "YES")
        assert charges(engine) == 0

        clock.tick(READ)
        sid = new_sid()
        receipts = [twilio.text(MOM, "YES", sid=sid) for _ in range(3)]  # Twilio retries
        assert len(set(receipts)) == 1
        assert "added $20.00 to acct ...4821 (Mom)" in receipts[0]
        assert "New balance $20.00" in receipts[0]
        assert deposited(engine) == [(mom["id"], 2000)]
        assert charges(engine) == 1
        assert offers(engine) == [(mom["id"], "funded", 2000)]

        # The same YES sent again (another SID) is not a second charge, nor an offer a third
        # tap would pay: it says the payment went through and how to add more.
        again = twilio.text(MOM, "YES")
        assert "payment for acct ...4821 already went through" in again
        assert "ADD and an amount" in again
        assert offers(engine) == [(mom["id"], "funded", 2000)]
        # Ten minutes on, a plain YES asks for a top-up again (an ADD would at once).
        clock.tick(timedelta(minutes=10))
        assert "add $25.00 to acct ...4821" in twilio.text(MOM, "YES")
        assert charges(engine) == 1


def test_agregar_in_spanish_offers_and_si_funds(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        abuela = admin.enrol(nickname="Abuela", language="es")
        offer = twilio.text(MOM, "agregar $20")
        for part in ("agregar $20.00 a la cuenta ...4821 (Abuela)", "tarjeta ...4242",
                     "total $20.00", "Responda SI para confirmar", "No se cobra nada"):  # fmt: skip
            assert part in offer
        assert charges(engine) == 0
        clock.tick(READ)
        receipt = twilio.text(MOM, "Sí")
        assert "se agregaron $20.00 a la cuenta ...4821" in receipt
        assert deposited(engine) == [(abuela["id"], 2000)]


def test_yes_with_no_offer_asks_for_a_top_up_and_the_next_yes_funds_it(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        offer = twilio.text(MOM, "YES")
        assert "add $25.00 to acct ...4821 (Mom)" in offer  # the preset
        assert "Reply YES to confirm" in offer
        assert charges(engine) == 0
        clock.tick(READ)
        assert "added $25.00" in twilio.text(MOM, "YES")
        # YES 20 with no offer asks for $20.00 (an amount typed is a new request even right
        # after a payment), and only the YES after it charges that.
        offer = twilio.text(MOM, "YES 20")
        assert "add $20.00 to acct ...4821" in offer
        clock.tick(READ)
        assert "added $20.00" in twilio.text(MOM, "YES")
        assert deposited(engine) == [(mom["id"], 2500), (mom["id"], 2000)]


def test_a_retried_add_makes_one_offer(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    admin.enrol()
    sid = new_sid()
    answers = {twilio.text(MOM, "ADD 20", sid=sid) for _ in range(3)}
    assert len(answers) == 1
    assert len(offers(engine)) == 1


def test_add_for_another_amount_replaces_the_live_offer(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    with freeze_time() as clock:
        # The same amount, or no amount: the live offer is given again, nothing new is made.
        assert "add $25.00 to acct ...4821" in twilio.text(MOM, "ADD")
        assert "add $25.00 to acct ...4821" in twilio.text(MOM, "ADD 25")
        assert len(offers(engine)) == 1
        # Another amount: the $25.00 offer is withdrawn, and a YES at once accepts neither.
        assert "add $40.00 to acct ...4821" in twilio.text(MOM, "ADD 40")
        assert prompt_status(engine, low_account["prompt_id"]) == "cancelled"
        assert "add $40.00 (fee $0.00, total $40.00)" in twilio.text(MOM, "YES")
        assert charges(engine) == 0
        clock.tick(READ)
        assert "added $40.00 to acct ...4821" in twilio.text(MOM, "YES")
        assert deposited(engine) == [(low_account["id"], 4000)]
        assert [status for _, status, _ in offers(engine)] == ["cancelled", "funded"]


def test_amounts_out_of_limits_are_refused_before_anything_is_offered(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    admin.enrol()
    for text in ("ADD 500", "ADD 2", "YES 500", "ADD $0"):
        answer = twilio.text(MOM, text)
        assert "deposits must be $5.00 to $200.00" in answer, text
        assert "nothing was offered or charged" in answer
        assert "ADD $25.00" in answer
    assert "didn't understand that amount" in twilio.text(MOM, "ADD twenty")
    assert "didn't understand that amount" in twilio.text(MOM, "ADD 1000")  # no acct ...1000
    assert offers(engine) == []
    assert charges(engine) == 0


def test_the_daily_limit_counts_what_was_deposited_today(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    limits = {"max_deposit_cents": 5000, "daily_deposit_limit_cents": 6000}
    assert admin.patch("/admin/settings", json=limits).status_code == 200
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        assert "add $50.00" in twilio.text(MOM, "ADD 50")
        clock.tick(READ)
        assert "added $50.00" in twilio.text(MOM, "YES")
        answer = twilio.text(MOM, "ADD 20")
        assert "daily limit of $60.00 ($10.00 left today)" in answer
        assert "add $10.00" in twilio.text(MOM, "ADD 10")
        assert [(status, amount) for _, status, amount in offers(engine)] == [
            ("funded", 5000),
            ("pending", 1000),
        ]
        assert deposited(engine) == [(mom["id"], 5000)]


def test_a_number_that_labels_an_account_is_never_the_amount(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        tio = admin.enrol(account_number="20", nickname="Tio")  # labelled ...20 on the phone
        answer = twilio.text(MOM, "ADD 20")
        assert "add $25.00 to acct ...20 (Tio)" in answer  # ...20's preset, not $20.00
        answer = twilio.text(MOM, "ADD 20 $20")
        assert "add $20.00 to acct ...20 (Tio)" in answer
        which = twilio.text(MOM, "ADD $30")
        assert "which account?" in which
        assert "acct" not in which.split("which account?")[0]
        clock.tick(READ)
        assert "added $20.00 to acct ...20 (Tio)" in twilio.text(MOM, "YES")
        assert deposited(engine) == [(tio["id"], 2000)]
        assert mom["id"] not in {account for account, _ in deposited(engine)}


def test_no_card_closed_and_opted_out_accounts_are_offered_nothing(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    account = admin.enrol(payment_method=None)
    assert "has no card on file" in twilio.text(MOM, "ADD 20")
    assert "/card/" in twilio.text(MOM, "ADD 20")
    admin.patch(f"/admin/accounts/{account['id']}", json={"status": "closed"})
    assert "can't be paid by text" in twilio.text(MOM, "ADD 20")
    twilio.text(MOM, "STOP")
    assert "you're unsubscribed" in twilio.text(MOM, "ADD 20")
    assert offers(engine) == []
    assert charges(engine) == 0


def test_add_at_night_is_answered_at_once(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    # 3:00am in New York: TextPay's own texts wait for the morning; an answer does not.
    with freeze_time("2026-11-27 08:00:00") as clock:
        mom = admin.enrol()
        assert "add $20.00 to acct ...4821" in twilio.text(MOM, "ADD 20")
        assert texts_queued(engine) == 0
        clock.tick(READ)
        assert "added $20.00" in twilio.text(MOM, "YES")
        assert deposited(engine) == [(mom["id"], 2000)]


def test_fifty_adds_make_at_most_one_live_offer_and_twenty_answers(
    twilio: TwilioClient, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(DAYTIME) as clock:
        mom = admin.enrol()
        answers = [twilio.text(MOM, f"ADD {20 + n}") for n in range(50)]
        answered = [a for a in answers if a]
        assert len(answered) == 20  # the flood limit: the rest are recorded, not answered
        statuses = [status for _, status, _ in offers(engine)]
        assert statuses.count("pending") == 1
        assert len(statuses) <= len(answered)
        assert texts_queued(engine) == 0
        # The same ADD over and over makes no new offer at all.
        clock.tick(timedelta(minutes=2))
        made = len(offers(engine))
        for _ in range(20):
            assert "add $39.00" in twilio.text(MOM, "ADD 39")
        assert len(offers(engine)) == made
        clock.tick(timedelta(minutes=1, seconds=1))  # out of the flood window
        # The next YES funds the last amount offered, once.
        assert "added $39.00" in twilio.text(MOM, "YES")
        assert deposited(engine) == [(mom["id"], 3900)]


def test_adds_and_yeses_at_once_charge_one_offered_amount_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    mom = admin.enrol()
    bodies = ["ADD 20", "ADD 30", "YES", "YES 40", "ADD", "YES", "ADD 20", "YES"]
    texts_at_once(app, MOM, bodies, timeout=60)
    assert charges(engine) == 0  # no offer could be read yet: nothing accepted
    assert [s for _, s, _ in offers(engine)].count("pending") == 1
    with freeze_time() as clock:
        clock.tick(READ)
        (_, _, amount) = next(o for o in offers(engine) if o[1] == "pending")
        TwilioClient(app.test_client()).text(MOM, "YES")
        assert deposited(engine) == [(mom["id"], amount)]


def test_an_add_stays_lean(app: Flask, admin: AdminClient, twilio: TwilioClient) -> None:
    # Not the hot path's budget (tests/web/test_statement_budget.py), but held all the same: a
    # fresh offer is 7 statements (8 on PostgreSQL, with the number's lock, and the account's
    # lock that also loads it), replacing an open one 2 more.
    admin.enrol()
    engine = app_engine(app)
    for text in ("ADD 20", "ADD 30", "ADD 30"):
        with counted(engine) as seen:
            assert "Reply YES to confirm" in twilio.text(MOM, text)
        assert len(seen.ours) <= TOP_UP_BUDGET, seen.listing()
