"""Two ways round the passcode a review found, closed: AutoPay switched on by text (the scan would
then charge the amount on standing consent, no passcode asked), and a passcode texted before
one was asked for (kept as typed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from scheduler import scan
from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.test_passcode_hostile import NOON, shows_passcode, stored
from tests.web.test_passcode_sms import balance, guard, mom
from tests.web.twilio_client import TwilioClient


def test_autopay_on_over_the_limit_is_no_way_round_the_passcode(
    app: Flask, twilio: TwilioClient, engine: Engine, admin: AdminClient
) -> None:
    """A thief texts AUTOPAY ON 100 to an account whose passcode guards deposits over $50: the
    scan then charges $100 on the standing consent, no passcode ever asked for."""
    with freeze_time(NOON):
        account = admin.enrol()
        guard(admin, account["id"])
        admin.credit(account["id"], 1000, "seed")
        admin.usage(account["id"], 690, "calls")  # $3.10: low
        refused = twilio.text(MOM, "AUTOPAY ON 100")
        assert "AutoPay of $100.00 for acct ...4821 can't be turned on by text" in refused
        # The preset ($25.00) is under the limit: AUTOPAY ON alone is allowed, as before.
        assert "AutoPay is on" in twilio.text(MOM, "AUTOPAY ON")
        parts = app.extensions["textpay"]
        scan.run(parts.engine, parts.gateway, parts.engine_config)
    assert balance(admin, account["id"]) == 310 + 2500  # the preset, never $100 unasked


@pytest.mark.parametrize("words", ["YES 2468", "my passcode is 2468"])
def test_a_passcode_texted_before_it_was_asked_for_is_not_kept(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int],
    words: str,
) -> None:  # fmt: skip
    """A subscriber told she has a passcode sends it with her YES, before any was asked for."""
    mom(admin, offer)
    twilio.text(MOM, words)
    for kept in stored(engine):
        assert not shows_passcode(kept), kept


def test_an_account_label_is_kept_as_typed_on_a_passcode_phone(
    twilio: TwilioClient, engine: Engine, admin: AdminClient, offer: Callable[[int], int]
) -> None:
    """Only four digits that could be a passcode are masked: `YES 4821` names the account (a
    passcode is never its account's last four digits), and the log keeps it."""
    mom(admin, offer)
    twilio.text(MOM, "YES 4821 2468")
    assert any(kept.startswith("YES 4821 [passcode removed]\n") for kept in stored(engine))
