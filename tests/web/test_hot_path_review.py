"""The rewritten webhook hot path (issue 14) against the rules it must keep: a YES's credit
survives whatever happens to its words, the episode ends exactly at the account's threshold
(its own, its facility's or the global one, changed a moment ago), nothing is said after STOP,
and a MessageSid seen twice, even at once, is answered once and charged once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from scheduler import reconcile
from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, deposits
from tests.web.twilio_client import TwilioClient, new_sid
from textpay import funding, ledger, replies, settlement
from textpay.db import create_schema, make_engine, unit_of_work
from textpay.models import Account, ConsentEvent, Message, PaymentAttempt
from textpay.operator_settings import SettingsPatch, update_global_settings
from textpay.policy import cached_global_settings


def ledger_is_sound(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []


def the_attempt(engine: Engine) -> PaymentAttempt:
    with unit_of_work(engine) as session:
        [attempt] = session.exec(select(PaymentAttempt)).all()
        return attempt


def texts_to(engine: Engine, phone: str) -> list[Message]:
    with unit_of_work(engine) as session:
        return list(
            session.exec(
                select(Message).where(Message.direction == "outbound", Message.phone == phone)
            )
        )


def reconcile_now(app: Flask) -> reconcile.ReconcileCounts:
    parts = app.extensions["textpay"]
    return reconcile.run(parts.engine, parts.gateway, parts.engine_config, grace_seconds=0)


# --- the receipt's words fail: the credit stays, and the receipt is texted later ------------


def test_a_receipt_that_cannot_be_worded_keeps_the_credit_and_is_texted_later(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = replies.receipt

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(replies, "receipt", broken)
    assert twilio.text(MOM, "YES") == ""
    assert (charges(engine), deposits(engine)) == (1, 1)
    attempt = the_attempt(engine)
    assert attempt.status == "succeeded"
    assert attempt.notified_at is None  # given back: someone must still tell

    monkeypatch.setattr(replies, "receipt", real)
    assert reconcile_now(app).told == 1
    [receipt] = texts_to(engine, MOM)
    assert receipt.kind == "receipt"
    assert "New balance $28.10" in receipt.body
    assert reconcile_now(app).told == 0
    ledger_is_sound(engine)


def test_a_database_error_while_wording_the_receipt_keeps_the_credit(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The words need queries of their own (the account's facts, the settings copy); one that
    fails (a statement timeout, a dropped connection) on PostgreSQL aborts the transaction.
    The card was charged: the deposit must stay, and the receipt be texted later."""
    real = settlement.voice
    broken_once: list[bool] = []

    def failing_query(session: Session, *args: Any, **kwargs: Any) -> Any:
        if not broken_once:
            broken_once.append(True)
            session.execute(text("SELECT no_such_column FROM account"))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(settlement, "voice", failing_query)
    response = twilio.sms(MOM, "YES")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert broken_once
    assert (charges(engine), deposits(engine)) == (1, 1)
    attempt = the_attempt(engine)
    assert (attempt.status, attempt.notified_at) == ("succeeded", None)
    assert reconcile_now(app).told == 1
    [receipt] = texts_to(engine, MOM)
    assert "New balance $28.10" in receipt.body
    ledger_is_sound(engine)


# --- the episode ends in the deposit's own statement, exactly at the threshold --------------


def in_episode(engine: Engine, account_id: int) -> None:
    with unit_of_work(engine) as session:
        session.execute(update(Account).where(Account.id == account_id).values(episode_prompts=1))


def episode_after_yes(engine: Engine, twilio: TwilioClient, account_id: int) -> tuple[int, int]:
    """(balance, episode_prompts) after Mom's YES for the $25.00 offer ($3.10 → $28.10)."""
    assert "New balance $28.10" in twilio.text(MOM, "YES")
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.balance_cents, account.episode_prompts


AT_AND_BELOW = [(2810, True), (2811, False)]  # (threshold, whether $28.10 ends the episode)


@pytest.mark.parametrize("case", AT_AND_BELOW)
def test_the_account_s_own_threshold_ends_the_episode_exactly_there(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, low_account: dict[str, Any],
    case: tuple[int, bool],
) -> None:  # fmt: skip
    threshold, ended = case
    account_id = low_account["id"]
    assert admin.patch(f"/admin/accounts/{account_id}",
                       json={"threshold_cents": threshold}).status_code == 200  # fmt: skip
    in_episode(engine, account_id)
    assert episode_after_yes(engine, twilio, account_id) == (2810, 0 if ended else 1)
    ledger_is_sound(engine)


@pytest.mark.parametrize("case", AT_AND_BELOW)
def test_a_facility_s_threshold_ends_the_episode_exactly_there(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, offer: Callable[[int], int],
    case: tuple[int, bool],
) -> None:  # fmt: skip
    threshold, ended = case
    override = {"low_balance_threshold_cents": threshold}
    assert admin.put("/admin/facilities/F1", json=override).status_code == 201
    account = admin.enrol(facility="F1")
    assert admin.credit(account["id"], 310, "seed").status_code == 201
    offer(account["id"])
    in_episode(engine, account["id"])
    assert episode_after_yes(engine, twilio, account["id"]) == (2810, 0 if ended else 1)


@pytest.mark.parametrize("case", AT_AND_BELOW)
def test_the_global_threshold_changed_a_moment_ago_ends_the_episode_exactly_there(
    admin: AdminClient, twilio: TwilioClient, engine: Engine, low_account: dict[str, Any],
    case: tuple[int, bool],
) -> None:  # fmt: skip
    threshold, ended = case
    """The process holds a copy of the settings (loaded by the BAL): the operator's change,
    made through the admin API in this process, is the threshold the very next YES uses."""
    twilio.text(MOM, "BAL")
    change = {"low_balance_threshold_cents": threshold}
    assert admin.patch("/admin/settings", json=change).status_code == 200
    in_episode(engine, low_account["id"])
    assert episode_after_yes(engine, twilio, low_account["id"]) == (2810, 0 if ended else 1)


# --- a MessageSid delivered twice at once ------------------------------------------------------


def at_once(app: Flask, sends: list[tuple[str, str, str]]) -> list[Any]:
    """Post every (phone, body, sid) together, each from its own client; the responses."""
    barrier = threading.Barrier(len(sends))
    responses: list[Any] = [None] * len(sends)

    def send(index: int, phone: str, body: str, sid: str) -> None:
        client = TwilioClient(app.test_client())
        barrier.wait()
        responses[index] = client.sms(phone, body, sid=sid)

    threads = [threading.Thread(target=send, args=(i, *s)) for i, s in enumerate(sends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_one_stop_delivered_four_times_at_once_is_recorded_and_confirmed_once(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    """STOP takes no flood lock, so nothing but the MessageSid's key orders the copies."""
    sid = new_sid()
    responses = at_once(app, [(MOM, "STOP", sid)] * 4)
    assert [r.status_code for r in responses] == [200] * 4
    answers = {r.get_data(as_text=True) for r in responses}
    assert len(answers) == 1
    assert "unsubscribed" in answers.pop()
    with unit_of_work(engine) as session:
        assert len(session.exec(select(Message).where(Message.twilio_sid == sid)).all()) == 1
        events = session.exec(select(ConsentEvent).where(ConsentEvent.phone == MOM)).all()
    assert [e.kind for e in events] == ["opt_out"]


def test_one_yes_delivered_four_times_at_once_charges_once(
    app: Flask, engine: Engine, low_account: dict[str, Any]
) -> None:
    sid = new_sid()
    responses = at_once(app, [(MOM, "YES", sid)] * 4)
    assert [r.status_code for r in responses] == [200] * 4
    bodies = [r.get_data(as_text=True) for r in responses]
    assert sum("added $25.00" in b for b in bodies) >= 1
    assert all("added $25.00" in b or "processing your payment" in b for b in bodies), bodies
    assert (charges(engine), deposits(engine)) == (1, 1)
    ledger_is_sound(engine)


def test_a_yes_replayed_while_its_card_is_charged_hears_processing(
    app: Flask, engine: Engine, low_account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = new_sid()
    real = funding.call_gateway
    replayed: list[str] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        replayed.append(TwilioClient(app.test_client()).text(MOM, "YES", sid=sid))
        return real(*args, **kwargs)

    monkeypatch.setattr(funding, "call_gateway", slow)
    first = TwilioClient(app.test_client()).text(MOM, "YES", sid=sid)
    assert "added $25.00" in first
    assert len(replayed) == 1
    assert "processing your payment of $25.00" in replayed[0]
    assert (charges(engine), deposits(engine)) == (1, 1)
    # Once settled, a replay hears the receipt itself.
    assert TwilioClient(app.test_client()).text(MOM, "YES", sid=sid) == first


# --- STOP while the card is charged; the reconciler settling first --------------------------


def test_stop_mid_charge_claims_the_receipt_so_nothing_is_texted_later(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = funding.call_gateway

    def stop_meanwhile(*args: Any, **kwargs: Any) -> Any:
        assert "unsubscribed" in TwilioClient(app.test_client()).text(MOM, "STOP")
        return real(*args, **kwargs)

    monkeypatch.setattr(funding, "call_gateway", stop_meanwhile)
    sid = new_sid()
    assert twilio.text(MOM, "YES", sid=sid) == ""
    monkeypatch.setattr(funding, "call_gateway", real)
    attempt = the_attempt(engine)
    assert attempt.status == "succeeded"
    assert attempt.notified_at is not None  # told, by staying silent
    assert reconcile_now(app).told == 0
    assert texts_to(engine, MOM) == []
    assert twilio.text(MOM, "YES", sid=sid) == ""  # a replay stays silent too
    with unit_of_work(engine) as session:
        [row] = session.exec(select(Message).where(Message.twilio_sid == sid)).all()
    assert row.reply_body == ""
    ledger_is_sound(engine)


def test_a_charge_the_reconciler_settled_first_gets_no_second_receipt(
    app: Flask,
    twilio: TwilioClient,
    engine: Engine,
    low_account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The webhook's charge is slow; the reconciler settles it (and texts the receipt) before
    the webhook's own answer arrives: the reply says nothing more."""
    real = funding.call_gateway
    reconciled: list[int] = []

    def reconciler_first(*args: Any, **kwargs: Any) -> Any:
        if not reconciled:  # the webhook's call (the reconciler's own comes through here too)
            reconciled.append(1)
            assert reconcile_now(app).settled == 1
        return real(*args, **kwargs)

    monkeypatch.setattr(funding, "call_gateway", reconciler_first)
    assert twilio.text(MOM, "YES") == ""
    assert (charges(engine), deposits(engine)) == (1, 1)
    [receipt] = texts_to(engine, MOM)
    assert receipt.kind == "receipt"
    assert "New balance $28.10" in receipt.body
    with unit_of_work(engine) as session:
        account = session.get(Account, low_account["id"])
        assert account is not None
        assert account.balance_cents == 2810
    ledger_is_sound(engine)


# --- the settings copy: never a change that was not committed, never another database's -----


def cap_seen(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return cached_global_settings(session).daily_message_cap


def test_a_settings_change_rolled_back_is_never_served_from_the_copy(engine: Engine) -> None:
    assert cap_seen(engine) == 3

    def change_then_fail() -> None:
        with unit_of_work(engine) as session:
            update_global_settings(session, SettingsPatch(daily_message_cap=7), actor="test")
            assert cached_global_settings(session).daily_message_cap == 7  # its own change
            raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert cap_seen(engine) == 3


def test_a_settings_change_in_a_session_closed_without_commit_is_never_served(
    engine: Engine,
) -> None:
    """Closing a session that never committed ends its transaction without a rollback event."""
    assert cap_seen(engine) == 3
    with Session(engine) as session:
        update_global_settings(session, SettingsPatch(daily_message_cap=7), actor="test")
        assert cached_global_settings(session).daily_message_cap == 7
    assert cap_seen(engine) == 3


def test_each_database_s_settings_are_its_own(engine: Engine, tmp_path: Path) -> None:
    other = make_engine(f"sqlite:///{tmp_path}/other.db")
    try:
        create_schema(other)
        with unit_of_work(other) as session:
            update_global_settings(session, SettingsPatch(daily_message_cap=9), actor="test")
        for _ in range(2):  # loaded, then served from the copies
            assert (cap_seen(engine), cap_seen(other)) == (3, 9)
    finally:
        other.dispose()
