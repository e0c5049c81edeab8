"""One bad account never stops the scan (issue 10 §4): a facility saved before empty sending
windows were refused at save time leaves its Florida numbers no sending time at all. Their offer
cannot be made and their AutoPay receipt cannot be queued; both are logged and counted, the
AutoPay charge is still credited, and every other account is still offered its top-up."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, prompts_of, scan_now
from tests.scheduler.test_scan import AFTERNOON, low
from tests.web.conftest import charges, deposits
from textpay.db import unit_of_work
from textpay.models import Facility, PaymentAttempt


def test_an_account_with_no_sending_time_is_counted_and_the_scan_goes_on(
    app: Flask, admin: AdminClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with unit_of_work(engine) as session:  # as an old release let an operator save it
        session.add(Facility(code="LEGACY", quiet_hours_start="20:00", quiet_hours_end="21:00"))
    with freeze_time(AFTERNOON):
        offer_for_florida = low(admin, account_number="FL-1", phone="(305) 555-0100",
                                facility="LEGACY")  # fmt: skip
        autopay_in_florida = low(admin, account_number="FL-2", phone="(305) 555-0101",
                                 facility="LEGACY", autopay_enabled=True)  # fmt: skip
        fine = low(admin, account_number="NY-3", phone="(212) 555-0100")
        with caplog.at_level(logging.ERROR):
            result = scan_now(app)

    assert (result.prompted, result.autopay_charged, result.errors) == (1, 1, 1)
    assert prompts_of(engine, offer_for_florida["id"]) == []
    [offer] = prompts_of(engine, fine["id"])
    assert [(m.account_id, m.kind, m.prompt_id) for m in outbox(engine)] == [
        (fine["id"], "prompt", offer.id)
    ]
    # The AutoPay charge is settled and credited although its receipt could not be queued;
    # the receipt is left untold for the reconciler to try again.
    assert (charges(engine), deposits(engine)) == (1, 1)
    shown = admin.get(f"/admin/accounts/{autopay_in_florida['id']}").get_json()
    assert shown["balance_cents"] == 310 + 2500
    with unit_of_work(engine) as session:
        [attempt] = session.exec(select(PaymentAttempt)).all()
    assert (attempt.status, attempt.notified_at) == ("succeeded", None)
    assert "offer for account" in caplog.text
