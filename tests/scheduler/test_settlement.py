"""One place settles a charge: whoever learns the outcome, it is acted on once, money first.

Each test names the path that used to break: the scan and the reconciler both finishing an
AutoPay charge, a text that failed to render rolling back a deposit, a reconciler charging the
card put on file after the charge began, gateway keys built from database ids.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import reconcile, scan
from tests.conftest import ADMIN_TOKEN, AdminClient
from tests.scheduler.helpers import deliver, outbox, scan_now
from tests.scheduler.test_scan import AFTERNOON, low
from tests.web.conftest import MOM, deposits
from tests.web.twilio_client import TwilioClient
from textpay import autopay, replies, settlement
from textpay.config import Settings
from textpay.db import create_schema, make_engine, unit_of_work
from textpay.models import Account, PaymentAttempt, SandboxCharge
from textpay.payments import ChargeResult, ChargeStatus, SandboxGateway
from textpay.policy import effective_for_account
from textpay.sms import RecordingSender
from textpay.timeutil import utcnow
from webhooks import create_app


def parts(app: Flask) -> Any:
    return app.extensions["textpay"]


def begin_autopay(app: Flask, account_id: int) -> int:
    """Phase 1 of an AutoPay charge, as the scan makes it."""
    with unit_of_work(parts(app).engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        order = autopay.begin(session, account, effective_for_account(session, account),
                              now=utcnow())  # fmt: skip
    return order.attempt_id


def finish(app: Flask, attempt_id: int, result: ChargeResult) -> settlement.Outcome:
    with unit_of_work(parts(app).engine) as session:
        return settlement.settle(session, attempt_id, result, now=utcnow(),
                                 config=parts(app).engine_config, by_reply=False)  # fmt: skip


def attempt_of(engine: Engine, attempt_id: int) -> PaymentAttempt:
    with unit_of_work(engine) as session:
        attempt = session.get(PaymentAttempt, attempt_id)
        assert attempt is not None
        return attempt


def account_row(engine: Engine, account_id: int) -> Account:
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account


DECLINED = ChargeResult(ChargeStatus.DECLINED, charge_id="ch_x", decline_reason="card_declined")


def test_a_decline_learned_twice_counts_once_and_keeps_the_one_day_retry(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The reconciler settles an AutoPay charge the scan is still waiting on; the scan's own
    answer arrives after. One decline notice, one failure, the retry a day later."""
    with freeze_time(AFTERNOON):
        account = low(admin, autopay_enabled=True,
                      payment_method={"token": "tok_insufficientFunds"})  # fmt: skip
        attempt_id = begin_autopay(app, account["id"])
        first = finish(app, attempt_id, DECLINED)  # the reconciler
        second = finish(app, attempt_id, DECLINED)  # the scan, late
    assert (first.changed, second.changed) == (True, False)
    assert second.queued is None
    stored = account_row(engine, account["id"])
    assert stored.autopay_failures == 1
    assert stored.autopay_enabled
    assert stored.autopay_retry_at is not None
    assert stored.autopay_retry_at - stored.updated_at == timedelta(days=1)
    assert [m.kind for m in outbox(engine)] == ["autopay_declined"]


def test_a_success_learned_twice_posts_and_texts_once(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON):
        account = low(admin, autopay_enabled=True)
        attempt_id = begin_autopay(app, account["id"])
        ok = ChargeResult(ChargeStatus.SUCCEEDED, charge_id="ch_ok")
        finish(app, attempt_id, ok)
        finish(app, attempt_id, ok)
    assert deposits(engine) == 1
    assert [m.kind for m in outbox(engine)] == ["autopay_receipt"]


def test_three_declines_turn_autopay_off_not_two_when_both_learn_each(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True,
                      payment_method={"token": "tok_insufficientFunds"})  # fmt: skip
        for days in (1, 3):
            attempt_id = begin_autopay(app, account["id"])
            finish(app, attempt_id, DECLINED)
            finish(app, attempt_id, DECLINED)
            clock.tick(timedelta(days=days, minutes=1))
            assert account_row(engine, account["id"]).autopay_enabled
        attempt_id = begin_autopay(app, account["id"])
        finish(app, attempt_id, DECLINED)
        finish(app, attempt_id, DECLINED)
    stored = account_row(engine, account["id"])
    assert not stored.autopay_enabled
    assert stored.autopay_failures == 3
    kinds = [m.kind for m in outbox(engine)]
    assert kinds == ["autopay_declined", "autopay_declined", "autopay_disabled"]


def test_a_text_that_fails_never_undoes_the_credit_and_is_sent_later(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with freeze_time(AFTERNOON) as clock:
        low(admin, autopay_enabled=True)
        real_receipt = replies.receipt

        def broken(*args: Any, **kwargs: Any) -> str:
            raise RuntimeError("rendering failed")

        monkeypatch.setattr(replies, "receipt", broken)
        result = scan_now(app)
        assert result.autopay_charged == 1
        # The money is in, and nothing is waiting to be settled.
        assert deposits(engine) == 1
        [attempt] = all_attempts(engine)
        assert attempt.status == "succeeded"
        assert attempt.notified_at is None
        assert outbox(engine) == []

        monkeypatch.setattr(replies, "receipt", real_receipt)
        clock.tick(timedelta(minutes=1))
        counts = reconcile.run(parts(app).engine, parts(app).gateway, parts(app).engine_config)
        assert counts.told == 1
        [receipt] = outbox(engine)
        assert receipt.kind == "autopay_receipt"
        assert "New balance $28.10" in receipt.body
        clock.tick(timedelta(minutes=1))
        assert reconcile.run(parts(app).engine, parts(app).gateway,
                             parts(app).engine_config).told == 0  # fmt: skip
    assert len(outbox(engine)) == 1
    assert deposits(engine) == 1


def all_attempts(engine: Engine) -> list[PaymentAttempt]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(PaymentAttempt).order_by(PaymentAttempt.id)))  # type: ignore[arg-type]


def test_one_attempt_that_fails_does_not_stop_the_reconciler(
    app: Flask, admin: AdminClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending attempt that raises is logged and counted; the next one is still settled."""
    with freeze_time(AFTERNOON) as clock:
        broken = low(admin, autopay_enabled=True)
        fine = low(admin, account_number="ACCT-0050", phone="2125550111", autopay_enabled=True)
        broken_attempt = begin_autopay(app, broken["id"])
        fine_attempt = begin_autopay(app, fine["id"])
        real = settlement.settle

        def settle(session: Any, attempt_id: int, *args: Any, **kwargs: Any) -> Any:
            if attempt_id == broken_attempt:
                raise RuntimeError("this one is broken")
            return real(session, attempt_id, *args, **kwargs)

        monkeypatch.setattr(settlement, "settle", settle)
        clock.tick(timedelta(minutes=1))
        counts = reconcile.run(parts(app).engine, parts(app).gateway, parts(app).engine_config)
    assert (counts.settled, counts.errors) == (1, 1)
    assert attempt_of(engine, fine_attempt).status == "succeeded"
    assert attempt_of(engine, broken_attempt).status == "pending"


def test_the_reconciler_charges_the_card_the_attempt_was_made_with(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    """The card changes between phase 1 and a crash's recovery: the charge the subscriber
    agreed to is on the first card, and the receipt names it."""
    with freeze_time(AFTERNOON) as clock:
        account = low(admin, autopay_enabled=True)
        attempt_id = begin_autopay(app, account["id"])  # then the process dies
        changed = admin.patch(f"/admin/accounts/{account['id']}",
                              json={"payment_method": {"token": "tok_mastercard"}})  # fmt: skip
        assert changed.status_code == 200, changed.get_json()
        clock.tick(timedelta(minutes=1))
        counts = reconcile.run(parts(app).engine, parts(app).gateway, parts(app).engine_config)
    assert counts.settled == 1
    with unit_of_work(engine) as session:
        [charge] = session.exec(select(SandboxCharge)).all()
    assert charge.token == "tok_visa"
    [receipt] = outbox(engine)
    assert "...4242" in receipt.body
    assert "...4444" not in receipt.body
    assert attempt_of(engine, attempt_id).card_last4 == "4242"


def app_on(database_url: str, gateway: SandboxGateway) -> Flask:
    """TextPay on its own database, charging through a processor it shares with others."""
    schema = make_engine(database_url)
    create_schema(schema)
    schema.dispose()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        twilio_auth_token="test-twilio-auth-token",
    )
    app = create_app(settings)
    app.extensions["textpay"] = dataclasses.replace(parts(app), gateway=gateway)
    return app


def test_gateway_keys_are_random_so_a_recreated_database_never_replays_a_charge(
    tmp_path: Path,
) -> None:
    """Two TextPay databases (a restore, a second environment) on one processor account: the
    first YES of each has the same prompt and attempt ids, and each is a charge of its own."""
    processor = make_engine(f"sqlite:///{tmp_path}/processor.db")
    create_schema(processor)
    keys = []
    for name in ("first", "second"):
        each = app_on(f"sqlite:///{tmp_path}/{name}.db", SandboxGateway(processor))
        with freeze_time(AFTERNOON) as clock:
            low(AdminClient(each.test_client()))
            scan_now(each)
            deliver(each, RecordingSender())
            clock.tick(timedelta(minutes=1))
            answer = TwilioClient(each.test_client()).text(MOM, "YES")
        assert "added $25.00" in answer
        [attempt] = all_attempts(parts(each).engine)
        keys.append((attempt.id, attempt.idempotency_key))
        parts(each).engine.dispose()
    with unit_of_work(processor) as session:
        charged = session.exec(select(func.count()).select_from(SandboxCharge)).one()
    processor.dispose()
    assert keys[0][0] == keys[1][0]  # the same attempt id in both databases
    assert keys[0][1] != keys[1][1]
    assert all(re.fullmatch(r"tp_[0-9a-f]{32}", key) for _, key in keys)
    assert charged == 2  # two real charges, not one replayed


def test_attempts_are_stamped_when_made_not_when_the_scan_started(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    with freeze_time(AFTERNOON, auto_tick_seconds=7):
        low(admin, autopay_enabled=True)
        started = utcnow()
        scan.run(parts(app).engine, parts(app).gateway, parts(app).engine_config)
    [attempt] = all_attempts(engine)
    assert attempt.created_at > started
