"""The scan's offers read exactly as an offer made one account at a time would.

The scan works out places, sending times and words a batch at a time (`offers.make_queued`);
a subscriber's own text gets its offer from the general path (`facts.account_facts_from` and
`replies.offer`, as `offers.make_reply` uses them). Both must give the same bytes and the same
sending time, across zones (one, several, none, the account's own), languages, nicknames with
accents, emoji or curly quotes, accounts sharing a phone, facilities with overrides, and with
and without a runway to tell.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from freezegun import freeze_time
from sqlalchemy import update
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.scheduler.helpers import outbox, scan_now
from textpay import facts, replies
from textpay.accounts import payment_method_of
from textpay.db import unit_of_work
from textpay.engine_config import voice
from textpay.models import Account, Facility, Prompt
from textpay.policy import delivery_rules, effective_for_account

# 9:30am in New York, 8:30am in Chicago, 7:30am in Denver, 6:30am in Los Angeles, 5:30am in
# Anchorage, 4:30am in Honolulu: some offers go now, others wait for their morning.
MORNING_EAST = "2026-11-27 14:30:00"

ACCOUNTS: list[dict[str, Any]] = [
    {"account_number": "ACCT-4821", "phone": "(212) 555-0147", "nickname": "Mom"},
    # Three accounts on one phone: labels longer than the last four digits.
    {"account_number": "ACCT-7730", "phone": "(212) 555-0147", "nickname": ""},
    {"account_number": "XYZ-4821", "phone": "(212) 555-0147", "nickname": "Tío Ángel"},
    {"account_number": "FL-1", "phone": "(305) 555-0100", "nickname": "Mamá", "language": "es"},
    {"account_number": "PR-1", "phone": "(787) 555-0100", "language": "es",
     "nickname": "José Ñandú Pérez-Álvarez Rodríguez"},
    {"account_number": "AK-1", "phone": "(907) 555-0100", "nickname": "Dad"},  # zones named
    {"account_number": "TOLL-1", "phone": "(800) 555-0100", "facility": "DENVER"},
    {"account_number": "HI-1", "phone": "(212) 555-0188", "timezone": "Pacific/Honolulu",
     "nickname": "Abuela 👵🏽 Rosa"},
    {"account_number": "OWN-1", "phone": "(312) 555-0100", "preset_amount_cents": 1234,
     "threshold_cents": 2000},
    {"account_number": "OWN-2", "phone": "(312) 555-0101", "threshold_cents": 2000},
    {"account_number": "CT-1", "phone": "(203) 555-0100", "nickname": "D’Angelo “Big”"},  # noqa: RUF001
    {"account_number": "CA-1", "phone": "(415) 555-0100", "language": "es",
     "facility": "DENVER"},
    {"account_number": "LONG-1", "phone": "(602) 555-0100", "language": "es",
     "nickname": "Señora Engracia Ñúñez de Aránzazu Olé"},
]  # fmt: skip


def test_queued_offers_read_as_the_general_path_words_them(
    app: Flask, admin: AdminClient, engine: Engine
) -> None:
    # A facility with overrides, among them a window narrower than the default, and a zone
    # (which tells toll-free numbers' times); both set in the table, as the API sets no zone.
    overrides = {"preset_amount_cents": 4000, "deposit_fee_cents": 150, "prompt_ttl_minutes": 90}
    assert admin.put("/admin/facilities/DENVER", json=overrides).status_code == 201
    with unit_of_work(engine) as session:
        session.execute(
            update(Facility)
            .where(Facility.code == "DENVER")  # type: ignore[arg-type]
            .values(timezone="America/Denver", quiet_hours_start="10:00", quiet_hours_end="18:00")
        )
    with freeze_time(MORNING_EAST):
        now = datetime.now(UTC)
        for index, fields in enumerate(ACCOUNTS):
            account = admin.enrol(**fields)
            admin.credit(account["id"], 1000, f"seed-{account['id']}")
            # Every other account in five charges: enough for a runway the offer tells.
            charges = [690] if index % 2 else [138] * 5
            for number, cents in enumerate(charges):
                admin.usage(account["id"], cents, f"calls-{account['id']}-{number}")
        result = scan_now(app)
    assert result.prompted == len(ACCOUNTS)
    assert 0 < result.held < result.prompted  # some go now, some wait for their morning

    queued = outbox(engine)
    assert len(queued) == len(ACCOUNTS)
    told: list[bool] = []
    with unit_of_work(engine) as session:
        spoken = voice(session, app.extensions["textpay"].engine_config)
        for message in queued:
            account = session.get(Account, message.account_id)
            prompt = session.get(Prompt, message.prompt_id)
            assert account is not None
            assert account.id is not None
            assert prompt is not None
            settings = effective_for_account(session, account)
            assert message.send_after == delivery_rules(session, account).next_allowed(now)
            assert message.send_after is not None
            label = facts.labels_on_phone(session, account.phone).get(account.account_number)
            assert prompt.label == label
            assert prompt.amount_cents == settings.preset_amount_cents
            assert prompt.fee_cents == settings.deposit_fee_cents
            ttl = timedelta(minutes=settings.prompt_ttl_minutes)
            assert prompt.expires_at == message.send_after + ttl
            known = facts.account_facts_from(
                account,
                settings,
                payment_method_of(session, account.id),
                deposited_last_24h_cents=0,
                label=label,
                now=now,  # the runway as of the scan
            )
            words = replies.offer(
                known,
                prompt.amount_cents,
                prompt.fee_cents,
                prompt.expires_at,
                now=message.send_after,
                voice=spoken,
            )
            assert message.body == words, account.account_number
            told.append("calls left" in words or "llamadas a su ritmo" in words)
    # The runway was told where it is known and fits (every other account), and only there.
    assert sum(told) >= len(ACCOUNTS) // 2 - 1
    assert not any(told[1::2])
