"""Card refunds: money back to the card a deposit came from, at most its unspent part, once per
Idempotency-Key, with a `card_refund` debit and a text; a refusal gives the money back, a
timeout is finished by the reconciler, and a refund made in the processor's dashboard is posted
once however often the processor reports it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import select

from scheduler import reconcile
from tests.conftest import AdminClient
from tests.web.test_admin_accounts import problem
from tests.web.twilio_client import TwilioClient
from textpay import card_refunds
from textpay.db import unit_of_work
from textpay.models import (
    AuditLogEntry,
    CardRefund,
    LedgerEntry,
    Message,
    PaymentAttempt,
    SandboxRefund,
)
from textpay.payments import (
    GatewayRefund,
    GatewayTimeout,
    RefundResult,
    RefundStatus,
    SandboxGateway,
)
from textpay.timeutil import utcnow
from webhooks.cli import cli

MOM = "+12125550147"
KEY = {"Idempotency-Key": "refund-2026-11-26-01"}


@dataclass
class World:
    """What these tests drive: the app, an operator, Mom's phone, the database."""

    app: Flask
    admin: AdminClient
    twilio: TwilioClient
    offer: Callable[[int], int]
    engine: Engine
    database_url: str


@pytest.fixture
def world(
    *,
    app: Flask,
    admin: AdminClient,
    twilio: TwilioClient,
    offer: Callable[[int], int],
    engine: Engine,
    database_url: str,
) -> World:
    return World(app, admin, twilio, offer, engine, database_url)


def verify_ledger(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["verify-ledger"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "ledger ok" in result.output


def funded(
    world: World,
    *,
    seed_cents: int = 310,
    **fields: Any,
) -> tuple[int, int]:
    """Mom's account ...4821, seeded, then a $25.00 deposit by YES from card ...4242: the
    account's id and the deposit's ledger entry id."""
    admin = world.admin
    account_id = admin.enrol(**fields)["id"]
    if seed_cents:
        assert admin.credit(account_id, seed_cents, f"seed-{account_id}").status_code == 201
    world.offer(account_id)
    assert "$25.00" in world.twilio.text(MOM, "YES")
    entries = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()["entries"]
    [deposit] = [e for e in entries if e["kind"] == "deposit"]
    return account_id, deposit["id"]


def refund(
    admin: AdminClient,
    account_id: int,
    deposit_id: int,
    amount_cents: int,
    *,
    key: str = KEY["Idempotency-Key"],
    reason: str = "dropped calls all week",
) -> Any:
    return admin.post(
        f"/admin/accounts/{account_id}/card-refunds",
        json={"deposit_id": deposit_id, "amount_cents": amount_cents, "reason": reason},
        headers={"Idempotency-Key": key, "X-TextPay-Actor": "dana"},
    )


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def rows(engine: Engine, model: Any, *conditions: Any) -> list[Any]:
    with unit_of_work(engine) as session:
        statement = select(model)
        for condition in conditions:
            statement = statement.where(condition)
        found = list(session.exec(statement.order_by(model.id)))
        for row in found:
            session.expunge(row)
        return found


def texts(engine: Engine) -> list[Message]:
    return rows(engine, Message, Message.kind == card_refunds.TEXT_KIND)


def charge_of(engine: Engine) -> str:
    [attempt] = rows(engine, PaymentAttempt)
    assert attempt.charge_id
    return str(attempt.charge_id)


def kinds(admin: AdminClient, account_id: int) -> list[tuple[str, int]]:
    entries = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()["entries"]
    return [(e["kind"], e["amount_cents"]) for e in entries]


class TimingOut:
    """The sandbox, but refunds get no answer in time (charges still go through)."""

    def __init__(self, inner: SandboxGateway) -> None:
        self._inner = inner
        self.key_lifetime = inner.key_lifetime
        self.charge = inner.charge
        self.retrieve = inner.retrieve
        self.save_card = inner.save_card
        self.refunds_asked = 0

    def refund(self, **_kwargs: Any) -> RefundResult:
        self.refunds_asked += 1
        raise GatewayTimeout("no answer")


def use_gateway(app: Flask, gateway: Any) -> Any:
    found = app.extensions["textpay"]
    app.extensions["textpay"] = dataclasses.replace(found, gateway=gateway)
    return found.gateway


AFTERNOON = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)  # 2:05pm in New York
NIGHT = datetime(2026, 11, 27, 3, 30, tzinfo=UTC)  # 10:30pm in New York
NEXT_MORNING = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)  # 8:00am in New York


def test_a_refund_goes_back_to_the_card_and_the_subscriber_is_told(world: World) -> None:
    with freeze_time(AFTERNOON):
        account_id, deposit_id = funded(world)
        assert balance(world.admin, account_id) == 2810
        response = refund(world.admin, account_id, deposit_id, 1000)
    assert response.status_code == 201, response.get_json()
    assert response.headers["Idempotent-Replayed"] == "false"
    shown = response.get_json()
    assert shown["status"] == "succeeded"
    assert shown["deposit_id"] == deposit_id
    assert shown["amount_cents"] == 1000
    assert shown["card_last4"] == "4242"
    assert shown["actor"] == "dana"
    assert shown["refund_id"].startswith("re_sandbox_")
    assert shown["balance_cents"] == 1810
    entry = shown["ledger_entry"]
    assert (entry["kind"], entry["amount_cents"], entry["balance_after_cents"]) == (
        "card_refund",
        -1000,
        1810,
    )
    assert entry["reference"] == "card_refund:refund-2026-11-26-01"
    assert shown["give_back_entry"] is None
    assert balance(world.admin, account_id) == 1810

    [row] = rows(world.engine, CardRefund)
    [sandbox] = rows(world.engine, SandboxRefund)
    assert (row.status, row.refund_id, row.request_key) == (
        "succeeded",
        sandbox.refund_id,
        "refund-2026-11-26-01",
    )
    # The processor was asked with our own random key, for the charge the deposit came from.
    assert (sandbox.charge_id, sandbox.amount_cents, sandbox.idempotency_key) == (
        charge_of(world.engine),
        1000,
        row.idempotency_key,
    )
    assert row.idempotency_key.startswith("tp_")

    [text] = texts(world.engine)
    assert text.phone == MOM
    assert text.body == (
        "TextPay: $10.00 was refunded to card ...4242 from acct ...4821 (Mom). New balance "
        "$18.10. Refunds take 5-10 days to show on your card."
    )
    assert text.engine_initiated
    assert text.send_after == AFTERNOON  # inside the sending window: it goes now
    [audited] = rows(world.engine, AuditLogEntry, AuditLogEntry.action == "card_refund.requested")
    assert audited.actor == "dana"
    assert audited.after is not None
    assert audited.after["amount_cents"] == 1000
    listed = world.admin.get(f"/admin/accounts/{account_id}/card-refunds").get_json()
    assert [r["id"] for r in listed["card_refunds"]] == [shown["id"]]
    verify_ledger(world.database_url)


def test_a_spanish_subscriber_is_told_in_spanish(world: World) -> None:
    account_id, deposit_id = funded(world, language="es")
    assert refund(world.admin, account_id, deposit_id, 500).status_code == 201
    [text] = texts(world.engine)
    assert "a la tarjeta ...4242 desde la cuenta ...4821 (Mom). Nuevo saldo $23.10" in text.body


def test_a_refund_at_night_waits_for_the_morning_and_none_goes_to_an_opted_out_number(
    world: World,
) -> None:
    admin = world.admin
    account_id, deposit_id = funded(world)
    with freeze_time(NIGHT):
        assert refund(admin, account_id, deposit_id, 500).status_code == 201
    [text] = texts(world.engine)
    assert text.status == "pending"
    assert text.send_after == NEXT_MORNING

    assert "unsubscribed" in world.twilio.text(MOM, "STOP")
    assert refund(admin, account_id, deposit_id, 300, key="second").status_code == 201
    assert [t.status for t in texts(world.engine)] == ["canceled", "withheld"]


def test_a_replayed_key_changes_nothing_and_a_reused_key_is_refused(world: World) -> None:
    account_id, deposit_id = funded(world)
    first = refund(world.admin, account_id, deposit_id, 1000)
    assert first.status_code == 201
    for _ in range(3):
        again = refund(world.admin, account_id, deposit_id, 1000)
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()
    assert balance(world.admin, account_id) == 1810
    assert len(rows(world.engine, CardRefund)) == 1
    assert len(rows(world.engine, SandboxRefund)) == 1
    assert len(texts(world.engine)) == 1

    body = problem(refund(world.admin, account_id, deposit_id, 999), 409, "idempotency-conflict")
    assert "1000 cents" in body["detail"]
    other_id = world.admin.enrol(account_number="OTHER", phone="2125550100")["id"]
    problem(refund(world.admin, other_id, deposit_id, 1000), 409, "idempotency-conflict")
    assert balance(world.admin, account_id) == 1810
    verify_ledger(world.database_url)


def test_no_more_than_the_unspent_part_and_the_refusal_names_the_most(world: World) -> None:
    account_id, deposit_id = funded(world)  # $3.10 + $25.00
    assert world.admin.usage(account_id, 2000, "call-1").status_code == 201  # $8.10 left
    body = problem(refund(world.admin, account_id, deposit_id, 1000), 422, "validation-error")
    [error] = body["errors"]
    assert error["field"] == "amount_cents"
    assert "must be at most 810 ($8.10)" in error["message"]
    assert balance(world.admin, account_id) == 810
    assert rows(world.engine, SandboxRefund) == []
    # The key was not used up by the refusal.
    assert refund(world.admin, account_id, deposit_id, 810).status_code == 201
    body = problem(
        refund(world.admin, account_id, deposit_id, 1, key="more"), 422, "validation-error"
    )
    assert "the balance is 0" in body["errors"][0]["message"]
    verify_ledger(world.database_url)


def test_two_refunds_of_one_deposit_cannot_together_exceed_it(world: World) -> None:
    account_id, deposit_id = funded(world, seed_cents=10_000)
    assert refund(world.admin, account_id, deposit_id, 1500, key="a").status_code == 201
    body = problem(
        refund(world.admin, account_id, deposit_id, 1500, key="b"), 422, "validation-error"
    )
    assert "must be at most 1000 ($10.00)" in body["errors"][0]["message"]
    assert "refunded already $15.00" in body["errors"][0]["message"]
    assert refund(world.admin, account_id, deposit_id, 1000, key="c").status_code == 201
    body = problem(refund(world.admin, account_id, deposit_id, 1, key="d"), 422, "validation-error")
    assert "in full" in body["errors"][0]["message"]
    assert balance(world.admin, account_id) == 10_000 + 2500 - 2500
    verify_ledger(world.database_url)


def test_concurrent_refunds_of_one_deposit_cannot_together_exceed_it(world: World) -> None:
    account_id, deposit_id = funded(world, seed_cents=10_000)
    barrier = threading.Barrier(6)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        thread_admin = AdminClient(world.app.test_client())
        barrier.wait()
        response = refund(thread_admin, account_id, deposit_id, 1000, key=f"k{n}")
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 201, 422, 422, 422, 422]
    assert sum(r.amount_cents for r in rows(world.engine, CardRefund)) == 2000
    assert len(rows(world.engine, SandboxRefund)) == 2
    assert balance(world.admin, account_id) == 10_000 + 2500 - 2000
    verify_ledger(world.database_url)


def test_only_a_card_deposit_of_this_account_can_be_refunded(world: World) -> None:
    account_id, deposit_id = funded(world)
    other_id = world.admin.enrol(account_number="OTHER", phone="2125550100")["id"]
    world.admin.credit(other_id, 5000, "seed-other")

    body = problem(refund(world.admin, other_id, deposit_id, 100), 422, "validation-error")
    assert body["errors"] == [
        {"field": "deposit_id", "message": f"names no ledger entry of account {other_id}"}
    ]
    credit_id = world.admin.credit(account_id, 500, "goodwill").get_json()["id"]
    body = problem(refund(world.admin, account_id, credit_id, 100), 422, "validation-error")
    assert "is a credit entry, not a card deposit" in body["errors"][0]["message"]
    usage_id = world.admin.usage(account_id, 100, "call-9").get_json()["id"]
    body = problem(refund(world.admin, account_id, usage_id, 100), 422, "validation-error")
    assert "is a usage entry" in body["errors"][0]["message"]
    problem(refund(world.admin, account_id, 2_000_000_000, 100), 422, "validation-error")
    problem(refund(world.admin, 2_000_000_000, deposit_id, 100), 404, "not-found")

    bad = problem(refund(world.admin, account_id, 0, 100), 422, "validation-error")
    assert bad["errors"][0]["field"] == "deposit_id"
    card = problem(
        refund(world.admin, account_id, deposit_id, 100, reason="card 4242 4242 4242 4242"),
        422,
        "validation-error",
    )
    assert card["errors"][0]["field"] == "reason"
    assert "4242 4242" not in str(card)
    problem(refund(world.admin, account_id, deposit_id, 100, reason="  "), 422, "validation-error")
    missing_key = world.admin.post(
        f"/admin/accounts/{account_id}/card-refunds",
        json={"deposit_id": deposit_id, "amount_cents": 100, "reason": "x"},
    )
    problem(missing_key, 400, "missing-idempotency-key")
    assert balance(world.admin, account_id) == 2810 + 500 - 100
    verify_ledger(world.database_url)


def test_a_refusal_by_the_processor_gives_the_money_back(world: World) -> None:
    account_id, deposit_id = funded(world)
    # $20.00 of the charge went back in the processor's dashboard, and TextPay was not told:
    # the processor refuses a refund of more than the $5.00 left of the charge.
    gateway = world.app.extensions["textpay"].gateway
    gateway.refund(
        charge_id=charge_of(world.engine),
        amount_cents=2000,
        idempotency_key="dashboard",
        reason="",
        timeout_seconds=1,
    )

    response = refund(world.admin, account_id, deposit_id, 1000)
    body = problem(response, 422, "card-refund-failed")
    assert response.headers["Idempotent-Replayed"] == "false"
    assert "back on the balance, which is now $28.10" in body["detail"]
    shown = body["card_refund"]
    assert (shown["status"], shown["failure_reason"]) == ("failed", "amount_too_large")
    give_back = shown["give_back_entry"]
    assert (give_back["kind"], give_back["amount_cents"]) == ("adjustment", 1000)
    assert give_back["reference"] == f"card_refund_failed:{shown['id']}"
    assert "refund to card ...4242 failed" in give_back["memo"]
    assert balance(world.admin, account_id) == 2810
    assert kinds(world.admin, account_id)[:2] == [("adjustment", 1000), ("card_refund", -1000)]
    assert texts(world.engine) == []

    again = refund(world.admin, account_id, deposit_id, 1000)
    problem(again, 422, "card-refund-failed")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(kinds(world.admin, account_id)) == 4  # seed, deposit, debit, give-back: nothing more
    # A failed refund holds nothing of the deposit: what the processor still has can go back.
    assert refund(world.admin, account_id, deposit_id, 500, key="the-rest").status_code == 201
    assert balance(world.admin, account_id) == 2310
    verify_ledger(world.database_url)


def test_a_timeout_answers_202_and_the_reconciler_finishes_it_once(world: World) -> None:
    account_id, deposit_id = funded(world)
    timing_out = TimingOut(world.app.extensions["textpay"].gateway)
    sandbox = use_gateway(world.app, timing_out)
    response = refund(world.admin, account_id, deposit_id, 1000)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "pending"
    # The debit holds the money while the processor works: calls cannot spend it.
    assert balance(world.admin, account_id) == 1810
    assert texts(world.engine) == []
    replay = refund(world.admin, account_id, deposit_id, 1000)  # asks again, with the same key
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (202, "true")
    assert timing_out.refunds_asked == 2
    assert len(rows(world.engine, CardRefund)) == 1

    parts = world.app.extensions["textpay"]
    young = reconcile.run(world.engine, sandbox, parts.engine_config)  # within the grace period
    assert young.refunds_settled == 0
    counts = reconcile.run(world.engine, sandbox, parts.engine_config, grace_seconds=0)
    assert (counts.refunds_settled, counts.refunds_pending, counts.errors) == (1, 0, 0)
    [row] = rows(world.engine, CardRefund)
    assert row.status == "succeeded"
    assert len(rows(world.engine, SandboxRefund)) == 1
    [text] = texts(world.engine)
    assert "New balance $18.10" in text.body
    assert (
        reconcile.run(world.engine, sandbox, parts.engine_config, grace_seconds=0).refunds_settled
        == 0
    )
    assert len(texts(world.engine)) == 1
    assert balance(world.admin, account_id) == 1810
    use_gateway(world.app, sandbox)
    assert refund(world.admin, account_id, deposit_id, 1000).status_code == 200
    verify_ledger(world.database_url)


def test_the_reconciler_counts_a_refund_it_cannot_finish_and_goes_on(world: World) -> None:
    account_id, deposit_id = funded(world, seed_cents=10_000)
    timing_out = TimingOut(world.app.extensions["textpay"].gateway)
    use_gateway(world.app, timing_out)
    assert refund(world.admin, account_id, deposit_id, 100, key="one").status_code == 202
    assert refund(world.admin, account_id, deposit_id, 200, key="two").status_code == 202
    parts = world.app.extensions["textpay"]
    counts = reconcile.run(world.engine, timing_out, parts.engine_config, grace_seconds=0)
    assert (counts.refunds_settled, counts.refunds_pending) == (0, 2)

    class Broken(TimingOut):
        def refund(self, **kwargs: Any) -> RefundResult:
            self.refunds_asked += 1
            if kwargs["amount_cents"] == 100:
                raise RuntimeError("processor bug")
            return self._inner.refund(**kwargs)

    broken = Broken(timing_out._inner)
    counts = reconcile.run(world.engine, broken, parts.engine_config, grace_seconds=0)
    assert (counts.refunds_settled, counts.refunds_pending, counts.errors) == (1, 0, 1)
    assert [r.status for r in rows(world.engine, CardRefund)] == ["pending", "succeeded"]


def test_the_reconcile_command_finishes_pending_refunds(world: World) -> None:
    account_id, deposit_id = funded(world)
    use_gateway(world.app, TimingOut(world.app.extensions["textpay"].gateway))
    assert refund(world.admin, account_id, deposit_id, 1000).status_code == 202
    env = {"DATABASE_URL": world.database_url}
    result = CliRunner().invoke(cli, ["reconcile", "--grace-seconds", "0"], env=env)
    assert "card refunds settled 1, still pending 0" in result.output
    assert [r.status for r in rows(world.engine, CardRefund)] == ["succeeded"]


def confirm(world: World, charge_id: str, *refunds: GatewayRefund) -> list[Any]:
    with unit_of_work(world.engine) as session:
        return card_refunds.confirm_from_gateway(
            session,
            charge_id=charge_id,
            refunds=list(refunds),
            now=utcnow(),
            config=world.app.extensions["textpay"].engine_config,
        )


def test_a_dashboard_refund_is_posted_once_however_often_it_is_reported(world: World) -> None:
    account_id, deposit_id = funded(world)
    charge_id = charge_of(world.engine)
    made = world.app.extensions["textpay"].gateway.refund(
        charge_id=charge_id, amount_cents=700, idempotency_key="dash-1", reason="",
        timeout_seconds=1,
    )  # fmt: skip
    reported = GatewayRefund(made.refund_id, 700, RefundStatus.SUCCEEDED, None)
    [first] = confirm(world, charge_id, reported)
    assert (first.action, first.posted_cents) == ("recorded", 700)
    for _ in range(3):
        assert [c.action for c in confirm(world, charge_id, reported)] == ["unchanged"]
    assert balance(world.admin, account_id) == 2110
    [debit] = rows(world.engine, LedgerEntry, LedgerEntry.kind == "card_refund")
    assert (debit.amount_cents, debit.reference) == (-700, f"card_refund:gateway:{made.refund_id}")
    [audited] = rows(world.engine, AuditLogEntry, AuditLogEntry.actor == "gateway")
    assert audited.action == "card_refund.outside_textpay"
    assert [t.body.split(" was refunded")[0] for t in texts(world.engine)] == ["TextPay: $7.00"]
    # It counts against the deposit: $18.00 is the most that can still go back.
    body = problem(refund(world.admin, account_id, deposit_id, 2000), 422, "validation-error")
    assert "must be at most 1800" in body["errors"][0]["message"]
    # A charge TextPay never made is not its business.
    assert [c.action for c in confirm(world, "ch_elsewhere", reported)] == ["not_ours"]
    verify_ledger(world.database_url)


def test_a_dashboard_refund_larger_than_the_balance_takes_the_balance_and_says_so(
    world: World,
) -> None:
    account_id, _deposit_id = funded(world)
    assert world.admin.usage(account_id, 2510, "call-1").status_code == 201  # $3.00 left
    reported = GatewayRefund("re_dashboard_1", 2500, RefundStatus.SUCCEEDED, None)
    [first] = confirm(world, charge_of(world.engine), reported)
    assert (first.action, first.posted_cents) == ("recorded", 300)
    confirm(world, charge_of(world.engine), reported)
    assert balance(world.admin, account_id) == 0
    [audited] = rows(world.engine, AuditLogEntry, AuditLogEntry.actor == "gateway")
    assert audited.after is not None
    assert "capped at the balance: 2500 cents" in audited.after["note"]
    verify_ledger(world.database_url)


def test_the_processors_report_settles_a_pending_refund_once(world: World) -> None:
    account_id, deposit_id = funded(world)
    sandbox = use_gateway(world.app, TimingOut(world.app.extensions["textpay"].gateway))
    assert refund(world.admin, account_id, deposit_id, 1000).status_code == 202
    [row] = rows(world.engine, CardRefund)
    # The processor did refund it (its answer was lost), and says so, with our key as metadata.
    made = sandbox.refund(
        charge_id=charge_of(world.engine),
        amount_cents=1000,
        idempotency_key=row.idempotency_key,
        reason="",
        timeout_seconds=1,
    )
    reported = GatewayRefund(made.refund_id, 1000, RefundStatus.SUCCEEDED, row.idempotency_key)
    assert [c.action for c in confirm(world, charge_of(world.engine), reported)] == ["settled"]
    assert [c.action for c in confirm(world, charge_of(world.engine), reported)] == ["unchanged"]
    [row] = rows(world.engine, CardRefund)
    assert (row.status, row.refund_id) == ("succeeded", made.refund_id)
    assert len(texts(world.engine)) == 1
    parts = world.app.extensions["textpay"]
    assert (
        reconcile.run(world.engine, sandbox, parts.engine_config, grace_seconds=0).refunds_settled
        == 0
    )
    assert balance(world.admin, account_id) == 1810
    verify_ledger(world.database_url)


def test_the_processors_report_of_a_failure_gives_the_money_back(world: World) -> None:
    account_id, deposit_id = funded(world)
    use_gateway(world.app, TimingOut(world.app.extensions["textpay"].gateway))
    assert refund(world.admin, account_id, deposit_id, 1000).status_code == 202
    [row] = rows(world.engine, CardRefund)
    reported = GatewayRefund("re_failed_1", 1000, RefundStatus.FAILED, row.idempotency_key)
    assert [c.action for c in confirm(world, charge_of(world.engine), reported)] == ["settled"]
    assert balance(world.admin, account_id) == 2810
    assert texts(world.engine) == []


# -- hostile: what a processor may report late, long or out of order --


def test_a_refund_that_fails_after_it_succeeded_gives_the_money_back_once(world: World) -> None:
    # Stripe: a card refund can go from succeeded to failed (the card was closed meanwhile);
    # the money stays with the merchant, so the subscriber's balance must get it back.
    account_id, deposit_id = funded(world)
    assert refund(world.admin, account_id, deposit_id, 1000).status_code == 201
    [ours] = rows(world.engine, CardRefund)
    charge_id = charge_of(world.engine)
    failed = GatewayRefund(ours.refund_id or "", 1000, RefundStatus.FAILED, ours.idempotency_key)
    assert [c.action for c in confirm(world, charge_id, failed)] == ["failed"]
    # A dashboard refund capped at the balance gives back only what it took.
    assert world.admin.usage(account_id, 2510, "call-1").status_code == 201  # $3.00 left
    outside = GatewayRefund("re_dashboard_late", 2500, RefundStatus.SUCCEEDED, None)
    assert [c.posted_cents for c in confirm(world, charge_id, outside)] == [300]
    late = dataclasses.replace(outside, status=RefundStatus.FAILED)
    assert [c.action for c in confirm(world, charge_id, late)] == ["failed"]
    for _ in range(2):  # told again: nothing more
        assert [c.action for c in confirm(world, charge_id, failed)] == ["unchanged"]
        assert [c.action for c in confirm(world, charge_id, late)] == ["unchanged"]
    assert balance(world.admin, account_id) == 300
    assert [r.status for r in rows(world.engine, CardRefund)] == ["failed", "failed"]
    # What failed counts no more against the deposit: the balance is the limit again.
    assert refund(world.admin, account_id, deposit_id, 300, key="again").status_code == 201
    verify_ledger(world.database_url)


def test_a_refund_id_longer_than_its_column_is_recorded_once(world: World) -> None:
    # Stored cut to the column; compared uncut, it was never found again and the second report
    # hit the unique key (a 500 on every later event about the charge).
    account_id, _deposit_id = funded(world)
    reported = GatewayRefund("re_" + "L" * 80, 700, RefundStatus.SUCCEEDED, None)
    assert [c.action for c in confirm(world, charge_of(world.engine), reported)] == ["recorded"]
    assert [c.action for c in confirm(world, charge_of(world.engine), reported)] == ["unchanged"]
    assert balance(world.admin, account_id) == 2110
    verify_ledger(world.database_url)


class PendingAtStripe:
    """The sandbox, but a refund is answered `pending` (Stripe: a card refund not finished
    yet), and the same key answers that first answer again, as Stripe's idempotency does,
    though the refund has since succeeded: only looking the refund up by its id tells."""

    def __init__(self, inner: SandboxGateway) -> None:
        self.key_lifetime = inner.key_lifetime
        self.charge = inner.charge
        self.retrieve = inner.retrieve
        self.save_card = inner.save_card

    def refund(self, *, idempotency_key: str, **_kwargs: Any) -> RefundResult:
        return RefundResult(RefundStatus.PENDING, refund_id=f"re_{idempotency_key[-12:]}")

    def retrieve_refund(self, refund_id: str, *, timeout_seconds: float) -> RefundResult:
        """The refund looked up by its id (Stripe: `refunds.retrieve`): it has succeeded."""
        return RefundResult(RefundStatus.SUCCEEDED, refund_id=refund_id)


def test_a_refund_stripe_answered_pending_is_finished_by_the_reconciler(world: World) -> None:
    with freeze_time(AFTERNOON):
        account_id, deposit_id = funded(world)
        use_gateway(world.app, PendingAtStripe(world.app.extensions["textpay"].gateway))
        assert refund(world.admin, account_id, deposit_id, 1000).status_code == 202
    parts = world.app.extensions["textpay"]
    for hours in (1, 25):
        with freeze_time(AFTERNOON + timedelta(hours=hours)):
            reconcile.run(world.engine, parts.gateway, parts.engine_config, grace_seconds=0)
    [row] = rows(world.engine, CardRefund)
    assert row.status == "succeeded"
    assert [t.kind for t in texts(world.engine)] == ["card_refund"]
