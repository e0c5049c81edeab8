"""Passcodes over signed Twilio webhooks: a YES that needs the passcode charges nothing, the
right passcode within 10 minutes funds the offer once, wrong ones count and the third locks,
and the digits are never stored or logged."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits, prompt_status
from tests.web.twilio_client import TwilioClient, new_sid
from textpay.db import unit_of_work
from textpay.models import Account, AuditLogEntry, Message

PASSCODE = "2468"
WRONG = "1357"


def guard(admin: AdminClient, account_id: int, **settings: Any) -> None:
    """Deposits over $50.00 need the passcode (or what `settings` say), and the account has
    one."""
    changed = admin.patch("/admin/settings", json={"passcode_over_cents": 5000, **settings})
    assert changed.status_code == 200, changed.get_json()
    put = admin.put(f"/admin/accounts/{account_id}/passcode", json={"passcode": PASSCODE})
    assert put.status_code == 200, put.get_json()


def mom(admin: AdminClient, offer: Callable[[int], int], **fields: Any) -> dict[str, Any]:
    """Mom's guarded account ...4821 at $3.10 with a $25.00 offer waiting, made at the time
    the test has frozen."""
    account = admin.enrol(account_number="ACCT-4821", nickname="Mom", **fields)
    admin.credit(account["id"], 310, "seed")
    account["prompt_id"] = offer(account["id"])
    guard(admin, account["id"])
    return account


@pytest.fixture
def guarded(admin: AdminClient, low_account: dict[str, Any]) -> dict[str, Any]:
    guard(admin, low_account["id"])
    return low_account


def stored_bodies(engine: Engine) -> list[str]:
    with unit_of_work(engine) as session:
        rows = session.exec(select(Message)).all()
        return [f"{m.body}|{m.reply_body or ''}" for m in rows]


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def test_over_the_amount_the_passcode_funds_the_offer_once(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, guarded: dict[str, Any]
) -> None:
    asked = twilio.text(MOM, "YES 100")
    assert "reply with your 4-digit passcode to add $100.00 to acct ...4821" in asked
    assert charges(engine) == 0
    assert prompt_status(engine, guarded["prompt_id"]) == "pending"

    sid = new_sid()
    receipt = twilio.text(MOM, PASSCODE, sid=sid)
    assert "added $100.00 to acct ...4821 (Mom)" in receipt
    assert "New balance $103.10" in receipt
    assert prompt_status(engine, guarded["prompt_id"]) == "funded"
    # Twilio retries the same text: the same receipt, nothing more.
    assert twilio.text(MOM, PASSCODE, sid=sid) == receipt
    # The subscriber sends the passcode again: done already, nothing more.
    again = twilio.text(MOM, PASSCODE)
    assert "already done, so nothing more was charged" in again
    # A YES now asks for a new top-up (the offer was funded): it charges nothing.
    assert "Reply YES to confirm" in twilio.text(MOM, "YES 100")
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert balance(admin, guarded["id"]) == 10_310


def test_under_the_amount_a_yes_pays_as_before(
    twilio: TwilioClient, engine: Engine, guarded: dict[str, Any]
) -> None:
    assert "added $25.00" in twilio.text(MOM, "YES")
    assert deposits(engine) == 1


def test_an_account_without_a_passcode_pays_on_its_yes(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, low_account: dict[str, Any]
) -> None:
    admin.patch("/admin/settings", json={"passcode_over_cents": 5000})
    assert "added $100.00" in twilio.text(MOM, "YES 100")
    assert deposits(engine) == 1


def test_a_wrong_passcode_says_how_many_tries_are_left_and_the_right_one_still_works(
    twilio: TwilioClient, engine: Engine, guarded: dict[str, Any]
) -> None:
    twilio.text(MOM, "YES 100")
    wrong = twilio.text(MOM, WRONG)
    assert "wrong passcode for acct ...4821, so nothing was charged. 2 tries left." in wrong
    assert "1 try left" in twilio.text(MOM, WRONG)
    assert charges(engine) == 0
    assert "added $100.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_three_wrong_passcodes_lock_passcode_payments_for_a_day(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00") as clock:  # 2:05pm in New York
        guarded = mom(admin, offer)
        twilio.text(MOM, "YES 100")
        twilio.text(MOM, WRONG)
        twilio.text(MOM, WRONG)
        locked = twilio.text(MOM, WRONG)
        assert "3 wrong passcodes, so passcode payments for acct ...4821 are locked" in locked
        support = re.search(r"contact (\S+)\.$", locked)
        assert support is not None
        assert support[1] in twilio.text(MOM, "HELP")  # the contact HELP gives
        # The right passcode now is not even checked, and charges nothing.
        assert "locked until 2:05pm tomorrow" in twilio.text(MOM, PASSCODE)
        assert "locked until" in twilio.text(MOM, "YES 100")
        assert charges(engine) == 0
        shown = admin.get(f"/admin/accounts/{guarded['id']}").get_json()
        assert shown["passcode_locked_until"].startswith("2026-11-27T19:05:00")
        # A YES that needs no passcode still pays.
        clock.tick(timedelta(minutes=1))
        assert "added $25.00" in twilio.text(MOM, "YES")
        assert deposits(engine) == 1


def test_the_lock_ends_after_a_day_and_an_operator_may_lift_it(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00") as clock:
        guarded = mom(admin, offer)
        twilio.text(MOM, "YES 100")
        for _ in range(3):
            twilio.text(MOM, WRONG)
        clock.tick(timedelta(hours=24, seconds=1))
        # The offer lapsed meanwhile: a YES gets a fresh one (of the amount it names), and once
        # it is read, the passcode is asked for again; the wrong tries are counted afresh.
        assert "add $100.00 to acct ...4821" in twilio.text(MOM, "YES 100")
        clock.tick(timedelta(seconds=30))
        assert "reply with your 4-digit passcode" in twilio.text(MOM, "YES 100")
        assert "2 tries left" in twilio.text(MOM, WRONG)
        for _ in range(2):
            twilio.text(MOM, WRONG)
        assert "locked" in twilio.text(MOM, "YES 100")
        # Setting the passcode again lifts the lock and forgets the wrong tries.
        admin.put(f"/admin/accounts/{guarded['id']}/passcode", json={"passcode": PASSCODE})
        assert "reply with your 4-digit passcode" in twilio.text(MOM, "YES 100")
        assert "added $100.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_a_passcode_after_ten_minutes_funds_nothing_and_a_new_yes_starts_again(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00") as clock:
        guarded = mom(admin, offer)
        twilio.text(MOM, "YES 100")
        clock.tick(timedelta(minutes=10))
        lapsed = twilio.text(MOM, PASSCODE)
        assert "after the 10-min limit, so nothing was charged" in lapsed
        assert "Reply YES to start again" in lapsed
        assert charges(engine) == 0
        assert prompt_status(engine, guarded["prompt_id"]) == "pending"
        assert "reply with your 4-digit passcode" in twilio.text(MOM, "YES 100")
        clock.tick(timedelta(minutes=9, seconds=59))
        assert "added $100.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_a_label_alone_is_answered_as_before_when_no_passcode_was_asked_for(
    twilio: TwilioClient, engine: Engine, guarded: dict[str, Any]
) -> None:
    assert "sorry, we didn't understand" in twilio.text(MOM, "4821")
    assert charges(engine) == 0
    # Asked: the same four digits are a passcode attempt (a wrong one here).
    twilio.text(MOM, "YES 100")
    assert "2 tries left" in twilio.text(MOM, "4821")


def test_a_new_phone_needs_the_passcode_for_any_amount(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, guarded: dict[str, Any]
) -> None:
    admin.patch("/admin/settings", json={"passcode_over_cents": None, "passcode_new_phone_days": 7})
    assert "to add $25.00 to acct ...4821" in twilio.text(MOM, "YES")
    assert "added $25.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_a_new_phone_for_the_account_asks_again_after_a_phone_change(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-01 15:00:00") as clock:
        account = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0199", nickname="Mom")
        admin.credit(account["id"], 310, "seed")
        guard(admin, account["id"], passcode_over_cents=None, passcode_new_phone_days=7)
        clock.tick(timedelta(days=10))
        admin.patch(f"/admin/accounts/{account['id']}", json={"phone": MOM})
        shown = admin.get(f"/admin/accounts/{account['id']}").get_json()
        assert shown["phone_since"].startswith("2026-11-11T15:00:00")
        offer(account["id"])
        assert "reply with your 4-digit passcode" in twilio.text(MOM, "YES")
        clock.tick(timedelta(days=7))  # the phone is the account's for 7 days now
        assert "Reply YES to add $25.00" in twilio.text(MOM, "YES")  # the offer lapsed: anew
        clock.tick(timedelta(seconds=30))
        assert "added $25.00" in twilio.text(MOM, "YES")


def test_spanish_asks_and_funds_in_spanish(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    mom(admin, offer, language="es")
    asked = twilio.text(MOM, "SI 100")
    assert re.search(r"responda con su clave de 4 d[ií]gitos para agregar \$100\.00", asked)
    wrong = twilio.text(MOM, WRONG)
    assert re.search(r"clave incorrecta.*Quedan 2 intentos", wrong)
    receipt = twilio.text(MOM, "٢٤٦٨")  # Arabic-Indic digits are digits too
    assert "se agregaron $100.00" in receipt
    assert deposits(engine) == 1


def test_the_passcode_is_never_stored_logged_or_audited(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, guarded: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    twilio.text(MOM, "YES 100")
    twilio.text(MOM, WRONG)
    twilio.text(MOM, "my code is 1357 ok")  # while asked, four digits in any text
    twilio.text(MOM, f" {PASSCODE}. ")
    assert deposits(engine) == 1
    kept = stored_bodies(engine)
    assert any("[passcode removed]" in body for body in kept)
    for secret in (PASSCODE, WRONG):
        assert not [body for body in kept if secret in body]
        assert secret not in caplog.text
    page = admin.get(f"/admin/messages?phone={MOM}").get_data(as_text=True)
    assert PASSCODE not in page
    assert WRONG not in page
    with unit_of_work(engine) as session:
        trail = session.exec(select(AuditLogEntry)).all()
        hashed = session.get(Account, guarded["id"])
        assert hashed is not None
        assert hashed.passcode_hash is not None
        assert hashed.passcode_hash.startswith("scrypt:")
        for entry in trail:
            written = f"{entry.before}{entry.after}"
            assert PASSCODE not in written
            assert hashed.passcode_hash not in written
            assert "passcode_hash" not in written
        assert [e.after for e in trail if e.action == "account.passcode_set"] == [
            {"passcode_set": True}
        ]
