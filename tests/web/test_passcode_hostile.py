"""Passcodes attacked: by a thief holding the phone (amounts typed every way, the top-up path,
AutoPay), by racing texts (wrong passcodes in parallel, right ones in parallel, a passcode and a
YES at once), by the clock (the 10-minute window at its edge, the new-phone days at 0 and at
their maximum), by an operator (odd input, moving the phone and back, a passcode the texts
print), and by anyone reading what TextPay keeps (messages, replies, logs, the API, the
console)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits, prompt_status
from tests.web.operators_helpers import make_operator
from tests.web.test_console_sign_in import sign_in
from tests.web.test_passcode_sms import PASSCODE, WRONG, balance, guard, mom
from tests.web.test_top_up_by_text import READ
from tests.web.twilio_client import TwilioClient, new_sid, texts_at_once
from textpay.db import unit_of_work
from textpay.models import Account, AuditLogEntry, ConsentEvent, Message, Prompt

NOON = "2026-11-26 17:00:00"  # noon in New York: no quiet hours in the way


def stored(engine: Engine) -> list[str]:
    """Everything kept of the conversation: inbound words, replies, consent words."""
    with unit_of_work(engine) as session:
        kept = [f"{m.body}\n{m.reply_body or ''}" for m in session.exec(select(Message)).all()]
        kept += [e.words or "" for e in session.exec(select(ConsentEvent)).all()]
        return kept


def digits_of(text: str) -> str:
    """The digits a reader would see in `text`, whatever script or shape they were typed in."""
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isdecimal())


def shows_passcode(text: str) -> bool:
    """Whether a reader would see the passcode in `text`: its four digits in any script or
    shape, at most 3 other characters apart (`24 68`, keycaps), not inside a longer number
    (a message SID or a timestamp that happens to hold the same four digits)."""
    normal = unicodedata.normalize("NFKC", text)
    flat = "".join(str(unicodedata.digit(c)) if c.isdecimal() else c for c in normal)
    gap = r"[^0-9]{0,3}"
    pattern = r"(?<![0-9])" + gap.join(PASSCODE) + r"(?![0-9])"
    return re.search(pattern, flat) is not None


def failures(engine: Engine, account_id: int) -> tuple[int, bool]:
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.passcode_failures, account.passcode_locked_until is not None


# ---------------------------------------------------------------------------------------------
# A charge over the limit without the passcode


@pytest.mark.parametrize(
    "words",
    [
        "YES 100",
        "YES $100.00",
        "yes 100 dollars please",
        "Y 100",
        "YES 50.01",
        "YES $50.01",
        "YES \uff11\uff10\uff10",  # full-width
        "SI \u0661\u0660\u0660",  # Arabic-Indic
        "YES 100 4821",
        "YES #4821 $100",
        "¡Sí! 100",
    ],
)
def test_an_amount_over_the_limit_however_typed_asks_for_the_passcode(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int],
    words: str,
) -> None:  # fmt: skip
    mom(admin, offer)
    answer = twilio.text(MOM, words)
    assert "4-digit" in answer or "4 d" in answer, answer
    assert charges(engine) == 0


@pytest.mark.parametrize("words", ["YES 50", "YES $50.00", "YES 50.00 dollars"])
def test_exactly_the_limit_pays_on_a_yes(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int],
    words: str,
) -> None:  # fmt: skip
    mom(admin, offer)
    assert "added $50.00" in twilio.text(MOM, words)
    assert deposits(engine) == 1


@pytest.mark.parametrize("ask", ["ADD 100", "AGREGAR 100", "TOP UP 100", "ADD $100 4821"])
def test_a_top_up_over_the_limit_asks_for_the_passcode_at_its_yes(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int],
    ask: str,
) -> None:  # fmt: skip
    with freeze_time(NOON) as clock:
        account = mom(admin, offer)
        assert "add $100.00" in twilio.text(MOM, ask)
        clock.tick(READ)
        assert "reply with your 4-digit passcode to add $100.00" in twilio.text(MOM, "YES")
        assert charges(engine) == 0
        assert "added $100.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1
    assert balance(admin, account["id"]) == 10_310


def test_a_yes_with_no_offer_then_a_yes_asks_when_the_preset_is_over_the_limit(
    twilio: TwilioClient, engine: Engine, admin: AdminClient
) -> None:
    with freeze_time(NOON) as clock:
        account = admin.enrol(preset_amount_cents=8000)
        guard(admin, account["id"])
        assert "add $80.00" in twilio.text(MOM, "YES")  # no offer: one is made
        clock.tick(READ)
        assert "reply with your 4-digit passcode to add $80.00" in twilio.text(MOM, "YES")
        assert charges(engine) == 0


def test_a_passcode_funds_only_its_own_account_on_a_phone_with_two(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    guarded = mom(admin, offer)
    other = admin.enrol(account_number="ACCT-7700", nickname="Dad")
    other_offer = offer(other["id"])
    assert "to add $100.00 to acct ...4821" in twilio.text(MOM, "YES 100 4821")
    # YES naming the other account pays only the other account, and only as it may.
    assert "added $100.00 to acct ...7700" in twilio.text(MOM, "YES 100 7700")
    assert prompt_status(engine, guarded["prompt_id"]) == "pending"
    assert "added $100.00 to acct ...4821" in twilio.text(MOM, PASSCODE)
    assert prompt_status(engine, other_offer) == "funded"
    assert deposits(engine) == 2
    assert balance(admin, guarded["id"]) == 10_310


# ---------------------------------------------------------------------------------------------
# A passcode that funds twice


def test_a_passcode_after_the_offer_was_replaced_by_another_amount_funds_nothing(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        account = mom(admin, offer)
        twilio.text(MOM, "YES 100")
        assert "add $30.00" in twilio.text(MOM, "ADD 30")
        assert prompt_status(engine, account["prompt_id"]) == "cancelled"
        clock.tick(READ)
        assert "nothing was charged" in twilio.text(MOM, PASSCODE) or charges(engine) == 0
        assert charges(engine) == 0
        assert "added $30.00" in twilio.text(MOM, "YES")  # the $30.00 offered, no passcode
    assert deposits(engine) == 1
    assert balance(admin, account["id"]) == 3310


def test_a_passcode_after_the_offer_expired_funds_nothing(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        account = mom(admin, offer)
        with unit_of_work(engine) as session:
            prompt = session.get(Prompt, account["prompt_id"])
            assert prompt is not None
            expires = prompt.expires_at
        clock.move_to(expires - timedelta(minutes=2))
        assert "4-digit passcode" in twilio.text(MOM, "YES 100")
        clock.tick(timedelta(minutes=3))  # inside the 10 minutes, past the offer's end
        assert "nothing was charged" in twilio.text(MOM, PASSCODE)
    assert charges(engine) == 0


def test_the_ten_minutes_at_their_edge(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        mom(admin, offer)
        twilio.text(MOM, "YES 100")
        clock.tick(timedelta(minutes=10) - timedelta(microseconds=1))
        assert "added $100.00" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_a_later_yes_restarts_the_ten_minutes(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        mom(admin, offer)
        twilio.text(MOM, "YES 100")
        clock.tick(timedelta(minutes=9))
        twilio.text(MOM, "YES 60")  # asks again, for $60.00 now
        clock.tick(timedelta(minutes=9))
        assert "added $60.00" in twilio.text(MOM, PASSCODE)
        clock.tick(timedelta(seconds=1))
        assert "nothing more was charged" in twilio.text(MOM, PASSCODE)
    assert deposits(engine) == 1


def test_right_passcodes_at_once_fund_once(
    app: Flask, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    account = mom(admin, offer)
    TwilioClient(app.test_client()).text(MOM, "YES 100")
    answers = texts_at_once(app, MOM, [PASSCODE] * 8)
    assert sum("added $100.00" in a for a in answers) == 1
    assert charges(engine) == 1
    assert deposits(engine) == 1
    assert balance(admin, account["id"]) == 10_310


def test_a_passcode_and_yeses_at_once_fund_once(
    app: Flask, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    account = mom(admin, offer)
    TwilioClient(app.test_client()).text(MOM, "YES 100")
    texts_at_once(app, MOM, [PASSCODE, "YES", "YES 100", PASSCODE, "YES 40", "ADD 20"])
    assert charges(engine) <= 1
    assert deposits(engine) <= 1
    assert balance(admin, account["id"]) in (310, 310 + 2500, 310 + 4000, 310 + 10_000)


def test_a_retried_passcode_sid_funds_once_even_after_the_lock(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    mom(admin, offer)
    twilio.text(MOM, "YES 100")
    sid = new_sid()
    receipt = twilio.text(MOM, PASSCODE, sid=sid)
    for _ in range(3):
        assert twilio.text(MOM, PASSCODE, sid=sid) == receipt
    assert deposits(engine) == 1


# ---------------------------------------------------------------------------------------------
# Brute force


def test_twenty_wrong_passcodes_at_once_get_three_tries_and_lock(
    app: Flask, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    account = mom(admin, offer)
    TwilioClient(app.test_client()).text(MOM, "YES 100")
    answers = texts_at_once(app, MOM, [f"{n:04d}" for n in range(1000, 1020)])
    assert sum("wrong passcode for acct" in a for a in answers) == 2
    assert sum("are locked for 24 hours" in a for a in answers) == 1
    assert failures(engine, account["id"]) == (0, True)
    with freeze_time() as clock:
        clock.tick(timedelta(minutes=1, seconds=1))  # out of the flood window
        assert "locked" in TwilioClient(app.test_client()).text(MOM, PASSCODE)
    assert charges(engine) == 0


def test_twenty_guesses_at_once_with_the_right_one_among_them_charge_at_most_once(
    app: Flask, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    account = mom(admin, offer)
    TwilioClient(app.test_client()).text(MOM, "YES 100")
    guesses = [f"{n:04d}" for n in range(1000, 1019)] + [PASSCODE]
    answers = texts_at_once(app, MOM, guesses)
    # Whether it came before or after the third wrong one, it charged at most once, and no
    # more than three wrong ones were ever judged.
    judged = [a for a in answers if "wrong passcode for acct" in a or "locked for 24 hours" in a]
    assert len(judged) <= 3
    assert deposits(engine) <= 1
    assert balance(admin, account["id"]) in (310, 10_310)


def test_a_yes_between_wrong_passcodes_does_not_forget_them(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        mom(admin, offer)
        for left in ("2 tries left", "1 try left"):
            assert "4-digit passcode" in twilio.text(MOM, "YES 100")
            assert left in twilio.text(MOM, WRONG)
            clock.tick(timedelta(minutes=11))  # each request lapses; the count does not
        twilio.text(MOM, "YES 100")
        assert "locked" in twilio.text(MOM, WRONG)
        assert "locked" in twilio.text(MOM, "YES 100")
        assert "locked" in twilio.text(MOM, PASSCODE)
    assert charges(engine) == 0


def test_neither_a_yes_nor_an_operators_other_changes_lift_the_lock(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        account = mom(admin, offer)
        twilio.text(MOM, "YES 100")
        for _ in range(3):
            twilio.text(MOM, WRONG)
        path = f"/admin/accounts/{account['id']}"
        assert admin.patch(path, json={"nickname": "Mama"}).status_code == 200
        assert admin.patch(path, json={"passcode_over_cents": 6000}).status_code == 200
        assert admin.patch("/admin/settings", json={"passcode_over_cents": 4000}).status_code == 200
        assert admin.patch(path, json={"phone": "2125550199"}).status_code == 200
        assert admin.patch(path, json={"phone": MOM}).status_code == 200
        clock.tick(timedelta(hours=23, minutes=59))
        offer(account["id"])
        assert "locked" in twilio.text(MOM, "YES 100")
        twilio.text(MOM, PASSCODE)  # no request was opened: not even checked
        assert admin.get(path).get_json()["passcode_locked_until"] is not None
    assert charges(engine) == 0


def test_wrong_passcodes_are_counted_per_account_and_cannot_reach_another_phone(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    guarded = mom(admin, offer)
    dad = admin.enrol(account_number="ACCT-7700", phone="2125550199", nickname="Dad")
    offer(dad["id"])
    guard(admin, dad["id"])
    twilio.text(MOM, "YES 100")
    twilio.text(MOM, WRONG)
    # Dad's phone answers nothing of Mom's request: not a passcode there.
    assert "didn't understand" in twilio.text("+12125550199", PASSCODE)
    assert failures(engine, dad["id"]) == (0, False)
    assert failures(engine, guarded["id"]) == (1, False)
    assert charges(engine) == 0


# ---------------------------------------------------------------------------------------------
# The digits kept nowhere


@pytest.mark.parametrize(
    "words",
    [
        PASSCODE,
        " 2 4 6 8 ",
        "2-4-6-8",
        "\uff12\uff14\uff16\uff18",  # full-width
        "\u0662\u0664\u0666\u0668",  # Arabic-Indic
        "2\ufe0f\u20e34\ufe0f\u20e36\ufe0f\u20e38\ufe0f\u20e3",  # keycaps
        "YES 2468",
        "my code is 2468 ok",
        "my code is 24 68",
        "code: 2 4 6 8 thanks",
        "it is \uff12\uff14\uff16\uff18",
        "it is \u2461\u2463\u2465\u2467 ok",  # circled
        "it is 2\ufe0f\u20e34\ufe0f\u20e36\ufe0f\u20e38\ufe0f\u20e3 ok",  # keycaps
        "YES 100 2468",
        "2468 2468",
    ],
    ids=repr,
)
def test_a_passcode_typed_any_way_while_asked_is_kept_nowhere(  # noqa: PLR0917 (fixtures)
    app: Flask, twilio: TwilioClient, engine: Engine, admin: AdminClient,
    offer: Callable[[int], int], caplog: pytest.LogCaptureFixture, words: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    account = mom(admin, offer)
    twilio.text(MOM, "YES 100")
    twilio.text(MOM, words)
    for kept in stored(engine):
        assert not shows_passcode(kept), kept
    assert not shows_passcode(caplog.text)
    listed = admin.get(f"/admin/messages?phone={MOM}").get_data(as_text=True)
    assert not shows_passcode(listed)
    console = app.test_client()
    agent = make_operator(engine, "ann@example.org", "agent")
    assert sign_in(console, agent.email, agent.password).status_code == 303
    page = console.get(f"/console/accounts/{account['id']}").get_data(as_text=True)
    assert not shows_passcode(page)
    assert "scrypt" not in page
    assert not shows_passcode(app.test_client().get("/metrics").get_data(as_text=True))


def test_the_hash_is_in_no_answer_nor_the_audit_trail(admin: AdminClient, engine: Engine) -> None:
    account = admin.enrol()
    admin.put(f"/admin/accounts/{account['id']}/passcode", json={"passcode": PASSCODE})
    with unit_of_work(engine) as session:
        hashed = session.get(Account, account["id"])
        assert hashed is not None
        assert hashed.passcode_hash is not None
        secret = hashed.passcode_hash.split("$")[-1]
        entries = session.exec(select(AuditLogEntry)).all()
        assert not [e for e in entries if secret in f"{e.before}{e.after}"]
    for path in (
        f"/admin/accounts/{account['id']}",
        "/admin/accounts?phone=2125550147",
        f"/admin/audit?entity_type=account&entity_id={account['id']}",
        "/admin/openapi.json",
    ):
        answer = admin.get(path).get_data(as_text=True)
        assert secret not in answer
        assert "scrypt:" not in answer


# ---------------------------------------------------------------------------------------------
# The operator's side


def test_a_passcode_the_texts_print_is_refused(admin: AdminClient) -> None:
    """Every offer and receipt names the account `acct ...4821`: as a passcode, 4821 is read
    by whoever holds the phone."""
    account = admin.enrol(account_number="ACCT-4821")
    answer = admin.put(f"/admin/accounts/{account['id']}/passcode", json={"passcode": "4821"})
    assert answer.status_code == 422
    assert answer.mimetype == "application/problem+json"
    assert "4821" not in str(answer.get_json().get("errors"))
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["passcode_set"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"passcode": "1234" * 5000},
        {"passcode": True},
        {"passcode": ["1234"]},
        {"passcode": {"digits": "1234"}},
        {"passcode": "12\x0034"},
        {"passcode": "\uff11\uff12\uff13\uff14"},  # full-width
        {"passcode": "1234", "passcode_hash": "scrypt:1:1:1$x$y"},
        ["1234"],
        "1234",
        1234,
        None,
    ],
    ids=lambda b: repr(b)[:40],
)
def test_odd_passcode_bodies_are_refused_and_nothing_is_kept(admin: AdminClient, body: Any) -> None:
    account = admin.enrol()
    answer = admin.put(f"/admin/accounts/{account['id']}/passcode", json=body)
    assert 400 <= answer.status_code < 500
    assert "1234" not in answer.get_data(as_text=True)
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["passcode_set"] is False


def test_a_huge_body_is_refused_without_a_server_error(admin: AdminClient) -> None:
    account = admin.enrol()
    answer = admin.put(
        f"/admin/accounts/{account['id']}/passcode",
        data='{"passcode": "' + "1" * 200_000 + '"}',
        content_type="application/json",
    )
    assert answer.status_code == 413
    assert admin.get(f"/admin/accounts/{account['id']}").get_json()["passcode_set"] is False


@pytest.mark.parametrize(
    "field",
    [
        {"passcode_hash": "scrypt:32768:8:1$salt$00"},
        {"passcode_locked_until": None},
        {"passcode_failures": 0},
        {"phone_since": "2020-01-01T00:00:00Z"},
        {"passcode": "1234"},
    ],
    ids=repr,
)
def test_the_account_patch_cannot_touch_the_passcodes_state(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int],
    field: dict[str, Any],
) -> None:  # fmt: skip
    account = mom(admin, offer)
    twilio.text(MOM, "YES 100")
    for _ in range(3):
        twilio.text(MOM, WRONG)
    answer = admin.patch(f"/admin/accounts/{account['id']}", json=field)
    assert answer.status_code == 422
    assert failures(engine, account["id"]) == (0, True)
    with unit_of_work(engine) as session:
        kept = session.get(Account, account["id"])
        assert kept is not None
        assert kept.passcode_hash is not None
        assert kept.passcode_hash.startswith("scrypt:32768:8:1$")
        assert "salt" not in kept.passcode_hash


def test_moving_the_account_to_a_new_phone_and_back_asks_again_each_time(
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time(NOON) as clock:
        account = admin.enrol(nickname="Mom")
        guard(admin, account["id"], passcode_over_cents=None, passcode_new_phone_days=7)
        path = f"/admin/accounts/{account['id']}"
        clock.tick(timedelta(days=30))
        since = admin.get(path).get_json()["phone_since"]
        # The same number written another way is not a new phone.
        assert admin.patch(path, json={"phone": "212-555-0147"}).status_code == 200
        assert admin.get(path).get_json()["phone_since"] == since
        offer(account["id"])
        assert "added $25.00" in twilio.text(MOM, "YES")
        admin.patch(path, json={"phone": "2125550199"})
        clock.tick(timedelta(days=1))
        admin.patch(path, json={"phone": MOM})  # back home: new to the account again
        assert admin.get(path).get_json()["phone_since"] != since
        clock.tick(timedelta(minutes=1))
        offer(account["id"])
        assert "reply with your 4-digit passcode" in twilio.text(MOM, "YES")
        assert deposits(engine) == 1


@pytest.mark.parametrize(
    ("days", "after", "asked"),
    [
        (0, timedelta(0), False),
        (365, timedelta(days=365) - timedelta(seconds=1), True),
        (365, timedelta(days=365), False),
    ],
)
def test_new_phone_days_at_zero_and_at_their_maximum(  # noqa: PLR0917 (fixtures)
    twilio: TwilioClient, admin: AdminClient, engine: Engine, offer: Callable[[int], int],
    days: int, after: timedelta, asked: bool,
) -> None:  # fmt: skip
    with freeze_time(NOON) as clock:
        account = admin.enrol()
        guard(admin, account["id"], passcode_over_cents=None, passcode_new_phone_days=days)
        clock.tick(after)
        offer(account["id"])
        answer = twilio.text(MOM, "YES")
        assert ("4-digit passcode" in answer) is asked, answer
        assert charges(engine) == (0 if asked else 1)


def test_new_phone_days_past_their_maximum_are_refused(admin: AdminClient) -> None:
    for bad in (366, -1, 10**12, "7", 7.5, True):
        answer = admin.patch("/admin/settings", json={"passcode_new_phone_days": bad})
        assert answer.status_code == 422, bad
    assert admin.get("/admin/settings").get_json()["passcode_new_phone_days"] is None
