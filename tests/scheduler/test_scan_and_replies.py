"""The scan and a subscriber's own top-up text never both make an offer for one account: the
web locks the account's row while it makes its offer, and the scan, waiting on that lock,
looks for an open offer only once it has the row (the one-open-offer key backs this up)."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import scan
from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, prompts_of, scan_now, waiting_on_a_row_lock
from tests.scheduler.test_scan import AFTERNOON, low
from textpay import offers
from textpay.db import unit_of_work
from textpay.models import Account
from textpay.policy import effective_for_account
from textpay.timeutil import utcnow


@pytest.mark.postgres_only
def test_an_offer_made_while_the_scan_waits_for_the_row_is_the_only_offer(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    parts = app.extensions["textpay"]
    with freeze_time(AFTERNOON):
        account = low(admin)
        found: list[scan.ScanResult] = []
        with unit_of_work(engine) as web:  # a subscriber's ADD 20, as the web makes it
            row = web.exec(
                select(Account).where(Account.id == account["id"]).with_for_update()
            ).one()
            made = offers.make_reply(web, row, effective_for_account(web, row), now=utcnow(),
                                     config=parts.engine_config, amount_cents=2000)  # fmt: skip
            assert made is not None
            scanning = threading.Thread(target=lambda: found.append(scan_now(app)))
            scanning.start()
            for _ in range(200):  # the scan reaches the locked row and waits for it
                if waiting_on_a_row_lock(engine):
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the scan never waited for the account's row")
        scanning.join(timeout=30)

    [result] = found
    assert (result.prompted, result.skipped, result.errors) == (0, 1, 0)
    [offer] = prompts_of(engine, account["id"])
    assert (offer.id, offer.amount_cents) == (made.prompt_id, 2000)
    assert outbox(engine, kind="prompt") == []  # no text offering a second top-up
