"""A rehearsal of the texts a web worker answers most, before any worker answers one.

A statement runs only after SQLAlchemy has compiled it, once per engine, and a YES runs about
ten that nothing else on a worker's way to its first webhook compiles. A fresh worker's first
YES spent 30-70 ms compiling them, with every text queued behind it waiting (the slowest 1% of
the webhook benchmark at 16 connections was mostly those few milliseconds after a worker
started: `docs/performance.md`, eighth round). gunicorn's arbiter loads the app once and forks
its workers from it (`gunicorn.conf.py`), so it rehearses here, once, and every worker is
born with the statements compiled.

The rehearsal runs the real turns (`engine.receive` of a YES, `engine.finish` of its charge,
and a BAL) on an account made up for it, in the caller's transaction, which the caller always
rolls back. No card is charged: the charge's answer is given, not asked of any gateway, and the
card is read from the sandbox's test cards whatever gateway is configured. Nothing is logged or
counted, and nothing of it is kept but the ids its rows would have had (a sequence does not
roll back).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import Session

from textpay import engine, ledger, prompts
from textpay.accounts import Enrolment, create_account
from textpay.engine_config import EngineConfig
from textpay.models import LedgerKind
from textpay.payments import ChargeResult, ChargeStatus, SandboxGateway
from textpay.policy import effective_for_account
from textpay.schemas import AccountCreate, PaymentMethodIn

# A number no subscriber has: 555-0100 to 555-0199 are set aside for fiction in North America.
REHEARSAL_PHONE = "+12025550142"
REHEARSAL_CARD = "tok_visa"  # a sandbox test card; never sent to any processor
_LOW_BALANCE_CENTS = 310


def rehearse_texts(session: Session, config: EngineConfig, *, now: datetime) -> None:
    """A YES that funds an offer, its charge's success, and a BAL, on an account made up for
    them, in `session`'s transaction. The caller must roll it back."""
    account = create_account(
        session,
        AccountCreate(
            account_number=f"REHEARSAL-{secrets.token_hex(4).upper()}",
            phone=REHEARSAL_PHONE,
            payment_method=PaymentMethodIn(token=REHEARSAL_CARD, exp_month=12, exp_year=2099),
        ),
        Enrolment(actor="rehearsal", gateway=SandboxGateway(session.get_bind())),  # type: ignore[arg-type]
    )
    assert account.id is not None
    ledger.post(
        session,
        account_id=account.id,
        kind=LedgerKind.CREDIT,
        amount_cents=_LOW_BALANCE_CENTS,
        reference=f"credit:rehearsal-{account.id}",
        memo="rehearsal",
        now=now,
    )
    prompts.offer(session, account, effective_for_account(session, account), now=now,
                  acceptable_after=now)  # fmt: skip
    turn = engine.receive(session, _text("YES"), now=now, config=config)
    if turn.charge is None:
        raise RuntimeError(f"the rehearsed YES charged nothing ({turn.intent})")
    charged = ChargeResult(ChargeStatus.SUCCEEDED, charge_id="ch_rehearsal")
    engine.finish(session, turn, charged, now=now, config=config)
    engine.receive(session, _text("BAL"), now=now, config=config)


def _text(body: str) -> engine.InboundSms:
    return engine.InboundSms(sid="SM" + secrets.token_hex(16), sender=REHEARSAL_PHONE, body=body)
