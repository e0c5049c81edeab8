"""The support desk's Find and Account pages (issue 15): find an account by a phone in any
spelling, its account number or a confirmation code; read its whole story (balance, settings
and their sources, card, AutoPay, the thread with delivery status and held texts, offers,
charges with their keys, the ledger paged by 50, the number's consent, the audit trail); and
act on it as an agent through the admin API's domain functions (credit, card refund, settings,
TextPay/AutoPay switches, the card link), each audited with the operator. A viewer sees no
form and is refused (403) if it posts; a double-submitted credit credits once; a POST without
the CSRF value changes nothing (400). On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tests.conftest import AdminClient
from tests.web.conftest import MOM
from tests.web.operators_helpers import MadeOperator, make_operator
from tests.web.test_console_sign_in import sign_in
from tests.web.test_statement_budget import counted
from tests.web.twilio_client import TwilioClient
from textpay import account_story, card_links, messages
from textpay.db import unit_of_work
from textpay.engine_config import EngineConfig
from textpay.models import (
    Account,
    AuditLogEntry,
    CardRefund,
    LedgerEntry,
    Message,
    PaymentAttempt,
)
from textpay.timeutil import utcnow

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_KEY = re.compile(r'name="key" value="([^"]+)"')
ANN = "ann@example.org"


@dataclass(frozen=True)
class Seeded:
    account_id: int
    confirmation: str
    deposit_id: int


@pytest.fixture
def seeded(
    admin: AdminClient, twilio: TwilioClient, offer: Callable[[int], int], engine: Engine
) -> Seeded:
    """Mom's account with a credit, an offer she said YES to (a charge, a deposit), a STOP and a
    START, a text held for later and one the carrier could not deliver."""
    account = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147", nickname="Mom")
    assert admin.credit(account["id"], 310, "seed-4821").status_code == 201
    offer(account["id"])
    assert "TP-" in twilio.text(MOM, "YES")
    assert "unsubscribed" in twilio.text(MOM, "STOP")
    assert "subscribed" in twilio.text(MOM, "START")
    now = utcnow()
    with unit_of_work(engine) as session:
        messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                body="Held for the morning", kind="low_balance", now=now,
                                send_after=now + timedelta(hours=9),
                                engine_initiated=True)  # fmt: skip
        lost = messages.queue_outbound(session, phone=MOM, account_id=account["id"],
                                       body="Lost on the way", kind="autopay", now=now)  # fmt: skip
        lost.status, lost.error_code = "undelivered", "30005"
        attempt = session.exec(select(PaymentAttempt)).one()
        deposit = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "deposit")).one()
        assert deposit.id is not None
        return Seeded(account["id"], attempt.confirmation, deposit.id)


@pytest.fixture
def agent(app: Flask, engine: Engine) -> FlaskClient:
    made = make_operator(engine, ANN, "agent", name="Ann Agent")
    return _signed_in(app, made)


@pytest.fixture
def viewer(app: Flask, engine: Engine) -> FlaskClient:
    made = make_operator(engine, "vic@example.org", "viewer", name="Vic Viewer")
    return _signed_in(app, made)


def _signed_in(app: Flask, made: MadeOperator) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, made.email, made.password).status_code == 303
    return client


def page(client: FlaskClient, account_id: int, query: str = "") -> str:
    answer = client.get(f"/console/accounts/{account_id}{query}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def post(client: FlaskClient, account_id: int, action: str, **fields: str) -> Any:
    """Post one of the page's forms as a browser would: the CSRF value and the form's key from
    the page as drawn, unless the test gives its own."""
    drawn = page(client, account_id)
    csrf = _CSRF.search(drawn)
    key = _KEY.search(drawn)
    data = {"csrf": csrf.group(1) if csrf else "", "key": key.group(1) if key else "", **fields}
    return client.post(f"/console/accounts/{account_id}/{action}", data=data)


def section(text: str, name: str) -> str:
    """One section of the page, by its id."""
    start = text.index(f'<section class="box" id="{name}">')
    return text[start : text.index("</section>", start)]


def account_row(engine: Engine, account_id: int) -> Account:
    with unit_of_work(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        session.expunge(found)
        return found


def audit_by(engine: Engine, actor: str) -> list[str]:
    with unit_of_work(engine) as session:
        return list(
            session.exec(
                select(AuditLogEntry.action)
                .where(AuditLogEntry.actor == actor)
                .order_by(col(AuditLogEntry.id))
            )
        )


# Find


def test_find_by_a_phone_in_three_spellings_the_account_number_and_a_confirmation(
    agent: FlaskClient, seeded: Seeded
) -> None:
    where = f"/console/accounts/{seeded.account_id}"
    for typed in ("(212) 555-0147", "212.555.0147", "+1 212 555 0147", "ACCT-4821",
                  seeded.confirmation, seeded.confirmation.lower()):  # fmt: skip
        found = agent.get("/console/find", query_string={"q": typed})
        assert found.status_code == 303, typed
        assert found.headers["Location"] == where, typed


def test_find_lists_several_accounts_on_one_number_and_says_when_nothing_matches(
    agent: FlaskClient, admin: AdminClient, seeded: Seeded
) -> None:
    admin.enrol(account_number="ACCT-7700", phone="212-555-0147", nickname="Dad")
    listed = agent.get("/console/find?q=2125550147")
    assert listed.status_code == 200
    text = listed.get_data(as_text=True)
    assert "2 accounts match" in text
    assert "ACCT-4821" in text
    assert "ACCT-7700" in text

    for typed in ("TP-ZZZZZZ", "ACCT-0000", "(999) 555-0100"):
        none = agent.get("/console/find", query_string={"q": typed})
        assert none.status_code == 200
        assert "No account matches" in none.get_data(as_text=True)
    assert 'id="results"' not in agent.get("/console/find").get_data(as_text=True)


def test_find_needs_a_signed_in_operator(client: FlaskClient, seeded: Seeded) -> None:
    assert client.get("/console/find?q=ACCT-4821").status_code == 303
    assert client.get(f"/console/accounts/{seeded.account_id}").status_code == 303


# The Account page


def test_the_account_page_tells_the_whole_story(
    viewer: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    text = page(viewer, seeded.account_id)
    with unit_of_work(engine) as session:
        attempt = session.exec(select(PaymentAttempt)).one()
        account = session.get(Account, seeded.account_id)
        assert account is not None
        balance = account.balance_cents
        key = attempt.idempotency_key
    assert f"${balance // 100}.{balance % 100:02d}" in text  # the balance ...
    assert "as of " in text  # ... and its as-of time
    assert "low balance threshold" in text
    assert 'class="tag global"' in text
    assert "visa …4242" in text
    assert "expires 12/2030" in text
    assert "tok_visa" not in text
    assert 'id="autopay-state">off' in text
    assert 'id="passcode-state">none<' in text
    for said in ("YES", "STOP", "START", "Held for the morning", "Lost on the way"):
        assert said in text, said  # the thread, both ways
    assert "held until" in text  # a held text says so
    assert "Twilio error 30005" in text
    assert 'status-funded">funded' in text  # the offer's lifecycle
    assert key in text
    assert seeded.confirmation in text
    assert "deposit:" in text
    assert "credit:seed-4821" in text
    assert "opt out" in text
    assert "opt in" in text
    assert "account.create" in text  # the audit trail
    assert "<script" not in text
    assert "style=" not in text


def test_the_ledger_is_paged_by_fifty(
    viewer: FlaskClient, admin: AdminClient, seeded: Seeded
) -> None:
    for n in range(55):
        assert admin.credit(seeded.account_id, 1, f"many-{n}").status_code == 201
    first = section(page(viewer, seeded.account_id), "ledger")
    assert "credit:many-54" in first
    assert "credit:seed-4821" not in first
    more = re.search(r'id="ledger-more" href="([^"]+)"', first)
    assert more
    older = section(
        viewer.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True), "ledger"
    )
    assert "credit:seed-4821" in older
    assert "credit:many-54" not in older
    assert 'id="ledger-more"' not in older


def test_an_unknown_account_is_a_404_page(viewer: FlaskClient) -> None:
    missing = viewer.get("/console/accounts/999999")
    assert missing.status_code == 404
    assert "There is no account 999999" in missing.get_data(as_text=True)


# Actions as an agent


def test_an_agent_credits_in_dollars_and_the_audit_names_them(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    before = account_row(engine, seeded.account_id).balance_cents
    done = post(agent, seeded.account_id, "credit", amount="12.50", reason="dropped call")
    assert done.status_code == 303
    assert "notice=credited" in done.headers["Location"]
    assert account_row(engine, seeded.account_id).balance_cents == before + 1250
    assert audit_by(engine, f"operator:{ANN}") == ["ledger.credit"]
    shown = agent.get(done.headers["Location"]).get_data(as_text=True)
    assert "The credit was posted." in shown
    assert "dropped call" in shown


def test_a_double_submitted_credit_credits_once(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    before = account_row(engine, seeded.account_id).balance_cents
    drawn = page(agent, seeded.account_id)
    csrf, key = _CSRF.search(drawn), _KEY.search(drawn)
    assert csrf
    assert key
    form = {"csrf": csrf.group(1), "key": key.group(1), "amount": "5", "reason": "twice"}
    first = agent.post(f"/console/accounts/{seeded.account_id}/credit", data=form)
    second = agent.post(f"/console/accounts/{seeded.account_id}/credit", data=form)
    assert "notice=credited" in first.headers["Location"]
    assert "notice=credit-replayed" in second.headers["Location"]
    assert account_row(engine, seeded.account_id).balance_cents == before + 500
    assert audit_by(engine, f"operator:{ANN}") == ["ledger.credit"]


def test_a_bad_amount_is_shown_next_to_the_form_and_changes_nothing(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    before = account_row(engine, seeded.account_id).balance_cents
    for amount in ("abc", "-5", "0", "12.505", "20000.00"):
        refused = post(agent, seeded.account_id, "credit", amount=amount, reason="x")
        assert refused.status_code == 422, amount
        assert 'id="error-credit"' in refused.get_data(as_text=True)
    refused = post(agent, seeded.account_id, "credit", amount="5", reason="")
    assert refused.status_code == 422
    assert account_row(engine, seeded.account_id).balance_cents == before
    assert audit_by(engine, f"operator:{ANN}") == []


def test_an_agent_changes_settings_and_a_bad_one_is_explained(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    done = post(agent, seeded.account_id, "settings", threshold="7.50", preset="40",
                language="es", timezone="America/Chicago")  # fmt: skip
    assert done.status_code == 303
    assert "notice=settings" in done.headers["Location"]
    row = account_row(engine, seeded.account_id)
    assert (row.threshold_cents, row.preset_amount_cents, row.language, row.timezone) == (
        750, 4000, "es", "America/Chicago")  # fmt: skip
    assert audit_by(engine, f"operator:{ANN}") == ["account.update"]
    assert 'class="tag account"' in page(agent, seeded.account_id)

    cleared = post(agent, seeded.account_id, "settings", threshold="", preset="",
                   language="es", timezone="")  # fmt: skip
    assert cleared.status_code == 303
    row = account_row(engine, seeded.account_id)
    assert (row.threshold_cents, row.preset_amount_cents, row.timezone) == (None, None, None)

    for bad in ({"timezone": "Mars/Olympus"}, {"preset": "1000.00"}, {"language": "fr"}):
        fields = {"threshold": "", "preset": "", "language": "en", "timezone": "", **bad}
        refused = post(agent, seeded.account_id, "settings", **fields)
        assert refused.status_code == 422, bad
        assert 'id="error-settings"' in refused.get_data(as_text=True)
    assert account_row(engine, seeded.account_id).language == "es"


def test_an_agent_turns_textpay_off_and_on_and_autopay_off(
    agent: FlaskClient, admin: AdminClient, seeded: Seeded, engine: Engine
) -> None:
    admin.patch(f"/admin/accounts/{seeded.account_id}", json={"autopay_enabled": True})
    assert post(agent, seeded.account_id, "switch", to="textpay-off").status_code == 303
    assert account_row(engine, seeded.account_id).textpay_enabled is False
    assert post(agent, seeded.account_id, "switch", to="textpay-on").status_code == 303
    assert account_row(engine, seeded.account_id).textpay_enabled is True
    assert post(agent, seeded.account_id, "switch", to="autopay-off").status_code == 303
    assert account_row(engine, seeded.account_id).autopay_enabled is False
    assert audit_by(engine, f"operator:{ANN}") == ["account.update"] * 3
    assert post(agent, seeded.account_id, "switch", to="everything-off").status_code == 422


def test_an_agent_texts_the_card_link_again(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    done = post(agent, seeded.account_id, "card-link")
    assert done.status_code == 303
    assert "notice=card-link" in done.headers["Location"]
    with unit_of_work(engine) as session:
        queued = session.exec(select(Message).where(Message.kind == "card_link")).one()
        assert queued.status == "pending"
        assert queued.phone == MOM
        assert "/card/[link]" in queued.body  # stored masked; the dispatcher makes the link
    assert audit_by(engine, f"operator:{ANN}") == ["account.card_link_sent"]


def test_an_agent_refunds_a_deposit_to_its_card(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    before = account_row(engine, seeded.account_id).balance_cents
    done = post(agent, seeded.account_id, "card-refund", deposit_id=str(seeded.deposit_id),
                amount="10.00", reason="charged twice")  # fmt: skip
    assert done.status_code == 303, done.get_data(as_text=True)
    assert "notice=refunded" in done.headers["Location"]
    assert account_row(engine, seeded.account_id).balance_cents == before - 1000
    with unit_of_work(engine) as session:
        refund = session.exec(select(CardRefund)).one()
        assert (refund.status, refund.actor) == ("succeeded", f"operator:{ANN}")
    assert "card_refund.requested" in audit_by(engine, f"operator:{ANN}")

    too_much = post(agent, seeded.account_id, "card-refund", deposit_id=str(seeded.deposit_id),
                    amount="500.00", reason="all of it")  # fmt: skip
    assert too_much.status_code == 422
    assert 'id="error-refund"' in too_much.get_data(as_text=True)


# A viewer, and forms without CSRF


def test_a_viewer_sees_no_form_and_is_refused_every_action(
    viewer: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    shown = page(viewer, seeded.account_id)
    assert 'id="actions"' not in shown
    assert 'class="refund"' not in shown
    assert "/credit" not in shown
    assert "/card-refund" not in shown
    before = account_row(engine, seeded.account_id)
    with unit_of_work(engine) as session:
        texts_before = len(session.exec(select(Message.id)).all())
    for action, fields in (
        ("credit", {"amount": "5", "reason": "x", "key": "k" * 20}),
        ("card-refund", {"deposit_id": str(seeded.deposit_id), "amount": "1", "reason": "x",
                         "key": "k" * 20}),
        ("settings", {"threshold": "9", "preset": "", "language": "es", "timezone": ""}),
        ("switch", {"to": "textpay-off"}),
        ("card-link", {}),
    ):  # fmt: skip
        refused = post(viewer, seeded.account_id, action, **fields)
        assert refused.status_code == 403, action
    after = account_row(engine, seeded.account_id)
    assert after.model_dump() == before.model_dump()
    with unit_of_work(engine) as session:
        assert len(session.exec(select(Message.id)).all()) == texts_before
        assert session.exec(select(CardRefund)).first() is None
    assert audit_by(engine, "operator:vic@example.org") == []


def test_a_form_without_the_csrf_value_changes_nothing(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    before = account_row(engine, seeded.account_id).balance_cents
    refused = agent.post(f"/console/accounts/{seeded.account_id}/credit",
                         data={"amount": "5", "reason": "x", "key": "k" * 20})  # fmt: skip
    assert refused.status_code == 400
    forged = agent.post(
        f"/console/accounts/{seeded.account_id}/credit",
        data={"amount": "5", "reason": "x", "key": "k" * 20, "csrf": "nope"},
    )
    assert forged.status_code == 400
    assert account_row(engine, seeded.account_id).balance_cents == before


def test_the_story_takes_a_bounded_number_of_statements_however_long_the_history(
    seeded: Seeded, admin: AdminClient, engine: Engine
) -> None:
    def statements() -> int:
        with unit_of_work(engine) as session, counted(engine) as seen:
            account_story.tell(session, seeded.account_id, now=utcnow())
        return len(seen.ours)

    few = statements()
    for n in range(60):
        assert admin.credit(seeded.account_id, 1, f"long-{n}").status_code == 201
    assert statements() == few
    assert few <= 16, few  # 14, and the settings cache's reload when its copy is old


def test_a_card_link_resent_at_night_waits_for_the_morning(
    admin: AdminClient, engine: Engine
) -> None:
    """The resent link is the operator's text, not an answer to the subscriber's: sent at 3am
    in New York it goes at 8am (the sending window), as any text TextPay starts."""
    account_id = admin.enrol(account_number="ACCT-4821", phone="(212) 555-0147")["id"]
    three_am = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # 03:00 in New York
    with unit_of_work(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        queued = card_links.resend(session, account, now=three_am, config=EngineConfig(),
                                   actor="operator:ann@example.org")  # fmt: skip
        assert queued.engine_initiated is True
        assert queued.send_after == datetime(2026, 11, 27, 13, 0, tzinfo=UTC)  # 08:00 there


def test_an_agent_sets_an_accounts_own_runway_on_its_console_page(
    agent: FlaskClient, seeded: Seeded, engine: Engine
) -> None:
    fields = {"threshold": "", "preset": "", "language": "en", "timezone": ""}
    assert post(agent, seeded.account_id, "settings", runway="6", **fields).status_code == 303
    assert account_row(engine, seeded.account_id).runway_days == 6
    assert 'id="runway" name="runway" inputmode="numeric" value="6"' in page(
        agent, seeded.account_id
    )
    # A form without the box leaves it; an empty box inherits again.
    assert post(agent, seeded.account_id, "settings", **fields).status_code == 303
    assert account_row(engine, seeded.account_id).runway_days == 6
    for bad in ("0", "91", "2.5", "five", "٣"):
        refused = post(agent, seeded.account_id, "settings", runway=bad, **fields)
        assert refused.status_code == 422, bad
        assert 'id="error-settings"' in refused.get_data(as_text=True)
    assert account_row(engine, seeded.account_id).runway_days == 6
    assert post(agent, seeded.account_id, "settings", runway="", **fields).status_code == 303
    assert account_row(engine, seeded.account_id).runway_days is None


def test_the_account_page_says_whether_a_passcode_is_set_and_while_it_locks_payments(
    viewer: FlaskClient, seeded: Seeded, engine: Engine, admin: AdminClient
) -> None:
    put = admin.put(f"/admin/accounts/{seeded.account_id}/passcode", json={"passcode": "2580"})
    assert put.status_code == 200
    assert 'id="passcode-state">set<' in page(viewer, seeded.account_id)
    locked_until = utcnow() + timedelta(hours=5)
    with unit_of_work(engine) as session:
        account = session.get(Account, seeded.account_id)
        assert account is not None
        account.passcode_locked_until = locked_until
        session.add(account)
    text = page(viewer, seeded.account_id)
    assert 'id="passcode-state">set, payments locked until ' in text
    assert "2580" not in text  # never the passcode
    assert "scrypt" not in text  # nor its hash
    with unit_of_work(engine) as session:
        account = session.get(Account, seeded.account_id)
        assert account is not None
        account.passcode_locked_until = utcnow() - timedelta(minutes=1)  # the day is over
        session.add(account)
    assert 'id="passcode-state">set<' in page(viewer, seeded.account_id)
