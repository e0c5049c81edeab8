"""A rehearsal of the texts a web worker answers most, before any worker answers one.

A statement runs only after SQLAlchemy has compiled it, once per engine, and a YES runs about
ten that nothing else on a worker's way to its first webhook compiles. A fresh worker's first
YES spent 30-70 ms compiling them, with every text queued behind it waiting (`docs/
performance.md`, eighth round). gunicorn's arbiter loads the app once and forks its workers
from it (`gunicorn.conf.py`), so it rehearses here, once, and every worker is born with the
statements of a YES that funds an offer, of a BAL and of words TextPay does not know compiled.
Rarer turns (an offer made again, a declined card, a passcode, STOP) still compile theirs the
first time a worker meets one.

The rehearsal runs the real turns (`engine.receive` of a YES, `engine.finish` of its charge,
and a BAL) on an account made up for it, on a number of the range set aside for fiction that
no account and no consent record uses, in the caller's transaction, which the caller always
rolls back. No card is charged: the charge's answer is given, not asked of any gateway, and the
card is read from the sandbox's test cards whatever gateway is configured. Nothing is logged or
counted, and nothing of it is kept but the ids its rows would have had (a sequence does not
roll back). On SQLite its transaction holds the write lock for the while it runs (about 0.4 s
the first time, compiling included), once per start of gunicorn.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import Session, col, select

from textpay import engine, ledger, prompts
from textpay.accounts import Enrolment, create_account
from textpay.engine_config import EngineConfig
from textpay.models import Account, LedgerKind, PhoneConsent
from textpay.payments import ChargeResult, ChargeStatus, SandboxGateway
from textpay.policy import effective_for_account
from textpay.schemas import AccountCreate, PaymentMethodIn

# Numbers no subscriber has: 555-0100 to 555-0199 are set aside for fiction in North America.
FICTIONAL_NUMBERS = tuple(f"+1202555{line:04d}" for line in range(100, 200))
REHEARSAL_CARD = "tok_visa"  # a sandbox test card; never sent to any processor
_LOW_BALANCE_CENTS = 310


def rehearse_texts(session: Session, config: EngineConfig, *, now: datetime) -> None:
    """A YES that funds an offer, its charge's success, and a BAL, on an account made up for
    them, in `session`'s transaction. The caller must roll it back."""
    phone = unused_number(session)
    enrol_with_offer(
        session,
        AccountCreate(
            account_number=f"REHEARSAL-{secrets.token_hex(4).upper()}",
            phone=phone,
            payment_method=PaymentMethodIn(token=REHEARSAL_CARD, exp_month=12, exp_year=2099),
        ),
        Enrolment(actor="rehearsal", gateway=SandboxGateway(session.get_bind())),  # type: ignore[arg-type]
        balance_cents=_LOW_BALANCE_CENTS,
        memo="rehearsal",
        now=now,
    )
    turn = engine.receive(session, _text(phone, "YES"), now=now, config=config)
    if turn.charge is None:
        raise RuntimeError(f"the rehearsed YES charged nothing ({turn.intent})")
    charged = ChargeResult(ChargeStatus.SUCCEEDED, charge_id="ch_rehearsal")
    engine.finish(session, turn, charged, now=now, config=config)
    engine.receive(session, _text(phone, "BAL"), now=now, config=config)


def enrol_with_offer(
    session: Session,
    data: AccountCreate,
    enrolment: Enrolment,
    *,
    balance_cents: int,
    memo: str,
    now: datetime,
) -> Account:
    """An account enrolled with `data` (its card included), credited `balance_cents`, with a
    pending offer that a YES may accept at once: what a subscriber has when the scan's offer
    has reached them. For the rehearsal, and for the benchmarks' seeding."""
    account = create_account(session, data, enrolment)
    assert account.id is not None
    ledger.post(
        session,
        account_id=account.id,
        kind=LedgerKind.CREDIT,
        amount_cents=balance_cents,
        reference=f"credit:{memo}-{account.id}",
        memo=memo,
        now=now,
    )
    prompts.offer(session, account, effective_for_account(session, account), now=now,
                  acceptable_after=now)  # fmt: skip
    return account


def unused_number(session: Session) -> str:
    """The first fictional number that no account and no consent record uses (a staging
    database may have texted one, or opted one out)."""
    taken = set(
        session.exec(select(Account.phone).where(col(Account.phone).in_(FICTIONAL_NUMBERS)))
    ) | set(
        session.exec(
            select(PhoneConsent.phone).where(col(PhoneConsent.phone).in_(FICTIONAL_NUMBERS))
        )
    )
    free = next((number for number in FICTIONAL_NUMBERS if number not in taken), None)
    if free is None:
        raise RuntimeError("every fictional number 555-0100 to 555-0199 is in use")
    return free


def _text(phone: str, body: str) -> engine.InboundSms:
    return engine.InboundSms(sid="SM" + secrets.token_hex(16), sender=phone, body=body)
