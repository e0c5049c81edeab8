"""Over signed Twilio webhooks: a text charges the amount typed, on the account it names, or
nothing; and two accounts that share their last 4 digits can each be paid by text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits, prompt_status
from tests.web.twilio_client import TwilioClient
from textpay import labels
from textpay.db import unit_of_work
from textpay.models import LedgerEntry, SandboxCharge

PHONE = "(212) 555-0147"


def deposited(engine: Engine) -> list[tuple[int, int]]:
    """(account id, cents) of every deposit, in order."""
    with unit_of_work(engine) as session:
        entries = session.exec(
            select(LedgerEntry).where(LedgerEntry.kind == "deposit").order_by(col(LedgerEntry.id))
        ).all()
        return [(e.account_id, e.amount_cents) for e in entries]


def two_accounts(admin: AdminClient, *numbers: str) -> list[dict[str, Any]]:
    """Accounts on Mom's phone, each at $3.10, deposits allowed up to $5,000.00 (so that a
    number mistaken for dollars would be charged)."""
    assert (
        admin.patch(
            "/admin/settings",
            json={"max_deposit_cents": 500_000, "daily_deposit_limit_cents": 1_000_000},
        ).status_code
        == 200
    )
    made = []
    for number, nickname in zip(numbers, ("Mom", "Sis"), strict=True):
        account = admin.enrol(account_number=number, phone=PHONE, nickname=nickname)
        admin.credit(account["id"], 310, f"seed-{number}")
        made.append(account)
    return made


def test_naming_the_account_without_an_offer_charges_no_account(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    mom, sis = two_accounts(admin, "ACCT-4821", "ACCT-0050")
    prompt = offer(mom["id"])

    answer = twilio.text(MOM, "YES 0050")
    # ...0050 has no offer: it is offered a top-up of its preset (never $50), charged nothing.
    assert "add $25.00 to acct ...0050 (Sis)" in answer
    assert "Nothing is charged until you do" in answer
    assert charges(engine) == 0
    assert deposits(engine) == 0
    assert prompt_status(engine, prompt) == "pending"  # Mom's offer is still there

    receipt = twilio.text(MOM, "YES 4821")
    assert "added $25.00 to acct ...4821" in receipt
    assert deposited(engine) == [(mom["id"], 2500)]
    assert sis["id"] not in {account for account, _ in deposited(engine)}


def test_an_account_label_is_never_charged_as_dollars(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    mom, sis = two_accounts(admin, "ACCT-4821", "ACCT-0050")
    prompt = offer(sis["id"])  # the offer is for ...0050 this time

    answer = twilio.text(MOM, "YES 4821")
    assert "add $25.00 to acct ...4821 (Mom)" in answer  # a top-up offered, at the preset
    assert "Nothing is charged until you do" in answer
    assert "$4,821" not in answer
    assert charges(engine) == 0
    assert prompt_status(engine, prompt) == "pending"

    receipt = twilio.text(MOM, "YES 0050")
    assert "added $25.00 to acct ...0050" in receipt
    assert deposited(engine) == [(sis["id"], 2500)]
    assert mom["id"] not in {account for account, _ in deposited(engine)}


def test_two_accounts_with_the_same_last_4_are_each_paid_by_their_longer_label(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    mom, sis = two_accounts(admin, "CA-1014821", "TX-2024821")
    offer(mom["id"])
    offer(sis["id"])

    which = twilio.text(MOM, "YES")
    assert "...14821 (Mom)" in which
    assert "...24821 (Sis)" in which
    assert charges(engine) == 0

    # The old last 4 names neither account: nothing is charged, and the reply shows what to
    # type instead (it used to ask for the last 4 again, forever).
    again = twilio.text(MOM, "YES 4821")
    assert "nothing was charged" in again.lower()
    assert "e.g. YES 14821" in again
    assert charges(engine) == 0

    receipt = twilio.text(MOM, "YES 24821 $40")
    assert "added $40.00 to acct ...24821 (Sis)" in receipt
    assert deposited(engine) == [(sis["id"], 4000)]

    # Only Mom's offer is left: a plain YES now pays it.
    receipt = twilio.text(MOM, "YES")
    assert "added $25.00 to acct ...14821 (Mom)" in receipt
    assert deposited(engine) == [(sis["id"], 4000), (mom["id"], 2500)]


def test_money_that_is_not_a_clean_amount_charges_nothing_by_text(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    for text in ("YES .40", "YES 40¢", "YES -5", "YES 1,5", "SI 7,5", "YES 0000"):
        answer = twilio.text(MOM, text)
        assert "nothing was charged" in answer, text
        assert "Write amounts like 40, $40.50 or $1,000.00" in answer, text
    assert charges(engine) == 0
    assert prompt_status(engine, low_account["prompt_id"]) == "pending"

    receipt = twilio.text(MOM, "YES \u0664\u0660")  # ٤٠ in Arabic-Indic digits: $40.00
    assert "added $40.00 to acct ...4821" in receipt
    assert deposits(engine) == 1


def test_an_opt_out_word_anywhere_in_a_short_yes_wins(
    twilio: TwilioClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    answer = twilio.text(MOM, "YES 40 but please stop texting")
    assert "unsubscribed" in answer
    assert charges(engine) == 0
    assert prompt_status(engine, low_account["prompt_id"]) == "cancelled"


@pytest.mark.parametrize(
    "change",
    [{"status": "suspended"}, {"status": "closed"}, {"textpay_enabled": False}],
    ids=["suspended", "closed", "textpay-off"],
)
def test_an_account_that_may_not_be_paid_by_text_is_never_charged_by_text(
    twilio: TwilioClient,
    admin: AdminClient,
    engine: Engine,
    low_account: dict[str, Any],
    change: dict[str, Any],
) -> None:
    """An operator suspends or closes the account, or turns TextPay off, while its offer is
    live: a YES charges nothing and says why."""
    changed = admin.patch(f"/admin/accounts/{low_account['id']}", json=change)
    assert changed.status_code == 200, changed.get_json()
    answer = twilio.text(MOM, "YES")
    assert "can't be paid by text" in answer
    assert "nothing was charged" in answer
    assert "acct ...4821" in answer
    assert charges(engine) == 0
    assert deposits(engine) == 0
    assert "added" not in twilio.text(MOM, "YES 40")
    assert charges(engine) == 0


def _deposit_accounts(engine: Engine) -> list[int]:
    with unit_of_work(engine) as session:
        return [
            e.account_id
            for e in session.exec(select(LedgerEntry).where(LedgerEntry.kind == "deposit"))
        ]


def test_case_twin_account_numbers_never_charge_the_account_not_typed(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    """`acct-4821` and `ACCT-4821` are two accounts (account numbers are case-sensitive) on one
    phone, each with a live offer. `YES acct-4821` must charge acct-4821, or ask which one:
    never the other account."""
    lower = admin.enrol(account_number="acct-4821", phone=MOM, nickname="Mom")
    upper = admin.enrol(account_number="ACCT-4821", phone=MOM, nickname="Dad")
    for account in (lower, upper):
        admin.credit(account["id"], 310, f"seed-{account['id']}")
        offer(account["id"])
    twilio.text(MOM, "YES acct-4821")
    assert upper["id"] not in _deposit_accounts(engine), (
        "YES acct-4821 credited ACCT-4821 (the labels collide once upper-cased)"
    )


def test_yes_charges_only_the_card_its_offer_named(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    """The offer said 'with card ...4242'. An operator then puts another card on file. A YES to
    that offer charges nothing and gets a fresh offer naming the new card; a YES to that one
    charges the new card."""
    with freeze_time("2026-11-26 19:05:00") as clock:
        account = admin.enrol(account_number="ACCT-4821", phone=MOM)
        admin.credit(account["id"], 310, "seed")
        offer(account["id"])
        changed = admin.patch(
            f"/admin/accounts/{account['id']}",
            json={"payment_method": {"token": "tok_mastercard", "exp_month": 1, "exp_year": 2031}},
        )
        assert changed.status_code == 200, changed.get_json()
        fresh = twilio.text(MOM, "YES")
        assert "card ...4444" in fresh
        assert "Reply YES" in fresh
        assert charges(engine) == 0
        clock.tick(timedelta(seconds=30))
        assert "Card ...4444 charged $25.00" in twilio.text(MOM, "YES")
    with unit_of_work(engine) as session:
        tokens = [c.token for c in session.exec(select(SandboxCharge))]
    assert tokens == ["tok_mastercard"]


def test_a_label_already_texted_for_one_account_never_names_another(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    """Account 14821 is alone on Mom's phone: its offer went out as "acct ...4821". Then an
    operator enrols account 4821 on the same phone, and it gets an offer too ("acct ...4821"
    again: the whole number, since 4821 is a tail of 14821). Mom answers the first text with
    "YES 4821". Two offers were texted to her as ...4821: nothing should be charged without
    asking which (and certainly not the account she was offered second)."""
    older = admin.enrol(account_number="14821", phone=MOM, nickname="Mom")
    admin.credit(older["id"], 310, "seed-older")
    assert labels.unique_labels(["14821"]) == {"14821": "4821"}  # what its offer text said
    offer(older["id"])

    newer = admin.enrol(account_number="4821", phone=MOM, nickname="Dad")
    admin.credit(newer["id"], 310, "seed-newer")
    assert labels.unique_labels(["14821", "4821"])["4821"] == "4821"  # its offer text too
    offer(newer["id"])

    twilio.text(MOM, "YES 4821")
    with unit_of_work(engine) as session:
        credited = [
            e.account_id
            for e in session.exec(select(LedgerEntry).where(LedgerEntry.kind == "deposit"))
        ]
    assert credited == [], (
        "YES 4821 funded one of two accounts both texted as ...4821 "
        f"(credited account {credited}, older={older['id']}, newer={newer['id']})"
    )
