"""The runway rule: an account is offered a top-up when its calls at their usual pace will run
out within `runway_days`, even above its dollar threshold; once per episode, re-armed only when
it is low by neither rule; and offers and BAL say how long the balance lasts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.helpers import count_prompts, deliver, outbox, prompts_of, scan_now
from tests.web.conftest import MOM
from tests.web.twilio_client import TwilioClient
from textpay.db import unit_of_work
from textpay.models import Account
from textpay.sms import RecordingSender

# Six days of calls, one charge a day, ending the day before 2:05pm in New York on a Thursday.
FIRST_CALLS = "2026-11-20 19:05:00"
# $5.00 of calls a day for six days over the shortest span (a week): about $4.29 a day, so a
# $20.00 balance lasts 4 days (4.67, rounded down). The dollar threshold is $5.00.
PHRASE = "about 4 days of calls left at your usual pace"


def calling(
    admin: AdminClient, clock: FrozenDateTimeFactory, *, number: str, phone: str,
    balance: int = 2000, charges: int = 6, **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    """An account charged $5.00 a day, `charges` days, left with `balance`. Time moves a day
    per charge."""
    account = admin.enrol(account_number=number, phone=phone, **fields)
    assert admin.credit(account["id"], balance + 500 * charges, f"seed-{number}").status_code \
        == 201  # fmt: skip
    for day in range(charges):
        assert admin.usage(account["id"], 500, f"calls-{number}-{day}").status_code == 201
        clock.tick(timedelta(days=1))
    return account


def many_calling(admin: AdminClient, clock: FrozenDateTimeFactory,
                 accounts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Several accounts charged as `calling` does, on the same days."""
    made = {}
    for index, (number, fields) in enumerate(accounts.items()):
        made[number] = admin.enrol(account_number=number, phone=f"212555{index:04d}", **fields)
        admin.credit(made[number]["id"], 2000 + 3000, f"seed-{number}")
    for day in range(6):
        for number, account in made.items():
            assert admin.usage(account["id"], 500, f"calls-{number}-{day}").status_code == 201
        clock.tick(timedelta(days=1))
    return made


def episode_prompts(engine: Engine, account_id: int) -> int:
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.episode_prompts


def test_above_its_threshold_but_short_of_runway_it_is_offered_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time(FIRST_CALLS) as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM, nickname="Mom")
        assert admin.get(f"/admin/accounts/{account['id']}").get_json()["balance_cents"] == 2000
        first = scan_now(app)
        assert first.prompted == 1
        [offer] = outbox(engine)
        assert f"acct ...4821 (Mom): balance $20.00 as of Nov 25 2:05pm, {PHRASE}." in offer.body
        # The same episode: no second offer, scan after scan.
        for _ in range(3):
            clock.tick(timedelta(minutes=5))
            assert scan_now(app).prompted == 0
    assert count_prompts(engine) == 1


def test_runway_off_never_offers_on_runway(app: Flask, admin: AdminClient) -> None:
    assert admin.get("/admin/settings").get_json()["runway_days"] is None  # off by default
    with freeze_time(FIRST_CALLS) as clock:
        calling(admin, clock, number="ACCT-4821", phone=MOM)
        assert scan_now(app).prompted == 0
        # Switched on, then off again (null): still nothing.
        assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
        assert admin.patch("/admin/settings", json={"runway_days": None}).status_code == 200
        assert scan_now(app).prompted == 0
        assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
        assert scan_now(app).prompted == 1


def test_facility_and_account_settings_override_the_global_one(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    assert admin.put("/admin/facilities/NORTH", json={"runway_days": 5}).status_code == 201
    with freeze_time(FIRST_CALLS) as clock:
        made = many_calling(admin, clock, {
            "AT-NORTH": {"facility": "NORTH"},  # the facility's 5 days: 4 left is short
            "NOWHERE": {},  # the global setting: off
            "OWN-5": {"runway_days": 5},  # its own 5 days
            "NORTH-OWN-4": {"facility": "NORTH", "runway_days": 4},  # its own 4: not short
        })  # fmt: skip
        assert scan_now(app).prompted == 2
    offered = {number for number, a in made.items() if prompts_of(engine, a["id"])}
    assert offered == {"AT-NORTH", "OWN-5"}


def test_without_an_estimate_only_the_threshold_counts(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 30}).status_code == 200
    with freeze_time(FIRST_CALLS) as clock:
        calling(admin, clock, number="NEW-1", phone="2125550101", charges=4)  # four: none
        below = calling(admin, clock, number="NEW-2", phone="2125550102", charges=4,
                        balance=310)  # fmt: skip
        assert scan_now(app).prompted == 1
    [offer] = outbox(engine)
    assert offer.account_id == below["id"]
    assert "balance $3.10" in offer.body
    assert "calls left" not in offer.body


def test_autopay_is_never_charged_on_runway(app: Flask, admin: AdminClient) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time(FIRST_CALLS) as clock:
        calling(admin, clock, number="AUTO-1", phone=MOM, autopay_enabled=True)
        result = scan_now(app)
    assert (result.prompted, result.autopay_charged) == (0, 0)


def test_a_top_up_that_lifts_the_runway_re_arms_and_one_that_does_not_keeps_the_episode(
    app: Flask, admin: AdminClient, engine: Engine, client: Any
) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 7}).status_code == 200
    subscriber = TwilioClient(client)
    with freeze_time(FIRST_CALLS) as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM)
        assert scan_now(app).prompted == 1
        deliver(app, RecordingSender())
        # $5.00 more: $25.00 lasts 5 days, still short of 7. Funded, and the episode goes on.
        assert "added $5.00" in subscriber.text(MOM, "YES 5")
        assert episode_prompts(engine, account["id"]) == 1
        clock.tick(timedelta(hours=1))
        assert scan_now(app).prompted == 0
        # An operator's $25.00 credit: $50.00 lasts 11 days. The episode ends.
        assert admin.credit(account["id"], 2500, "goodwill").status_code == 201
        assert episode_prompts(engine, account["id"]) == 0
        clock.tick(timedelta(hours=1))
        assert scan_now(app).prompted == 0  # not short any more
        # Calls bring it back under 7 days: a new episode, a new offer.
        assert admin.usage(account["id"], 2500, "long-call").status_code == 201
        clock.tick(timedelta(minutes=5))
        assert scan_now(app).prompted == 1
    assert [p.status for p in prompts_of(engine, account["id"])] == ["funded", "pending"]


def test_a_yes_that_lifts_the_runway_re_arms_in_its_own_statement(
    app: Flask, admin: AdminClient, engine: Engine, client: Any
) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time(FIRST_CALLS) as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM)
        assert scan_now(app).prompted == 1
        deliver(app, RecordingSender())
        assert "added $25.00" in TwilioClient(client).text(MOM, "YES")  # $45.00: 10 days
        assert episode_prompts(engine, account["id"]) == 0


def test_usage_postings_keep_the_pace_and_it_lapses_when_calls_stop(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    assert admin.patch("/admin/settings", json={"runway_days": 5}).status_code == 200
    with freeze_time(FIRST_CALLS) as clock:
        account = calling(admin, clock, number="ACCT-4821", phone=MOM, charges=4)
        path = f"/admin/accounts/{account['id']}"
        assert admin.get(path).get_json()["runway_estimate_days"] is None  # four charges
        assert admin.usage(account["id"], 500, "calls-5").status_code == 201
        assert admin.get(path).get_json()["runway_estimate_days"] == 4  # $20.00 at $25/week
        # A replayed posting changes nothing.
        assert admin.usage(account["id"], 500, "calls-5").status_code == 200
        assert admin.get(path).get_json()["runway_estimate_days"] == 4
        with unit_of_work(engine) as session:
            row = session.get(Account, account["id"])
            assert row is not None
            assert (row.usage_pace_cents, row.usage_pace_hours) == (2500, 7 * 24)
        # No calls for 27 days: the first of the five charges leaves the window.
        clock.tick(timedelta(days=27))
        assert admin.get(path).get_json()["runway_estimate_days"] is None
        assert scan_now(app).prompted == 0


def test_bal_says_how_long_the_balance_lasts_in_both_languages(
    admin: AdminClient, client: Any
) -> None:
    subscriber = TwilioClient(client)
    with freeze_time(FIRST_CALLS) as clock:
        many_calling(admin, clock, {"ACCT-4821": {"nickname": "Mom"},
                                    "ACCT-7730": {"language": "es"}})  # fmt: skip
        english = subscriber.text("+12125550000", "BAL")
        spanish = subscriber.text("+12125550001", "SALDO")
    assert f"acct ...4821 (Mom) $20.00 as of Nov 25 2:05pm, {PHRASE}." in english
    assert "cuenta ...7730 (Mom) $20.00 a las 25 nov 14:05" in spanish
    assert "unos 4 dias de llamadas a su ritmo habitual" in spanish  # folded: one segment less
