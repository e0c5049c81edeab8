"""Account passcodes: the four digits a subscriber answers a YES with when a payment needs more
than a YES.

Owns the rules:

- An operator sets or clears an account's passcode (`set_passcode`, `clear_passcode`), never
  the account number's last four digits (the label every text prints); only
  a salted scrypt hash is kept (`tokens.slow_hash`, as for operators' passwords),
  never the digits, and the audit trail says only that one was set or cleared. Setting or
  clearing one also lifts a lock and forgets wrong tries (an operator helping a subscriber).
- A YES needs the passcode (`conversation.needs_passcode`) when the account has one and the
  deposit is over `passcode_over_cents` or the phone came to the account fewer than
  `passcode_new_phone_days` days ago (settings resolved global → facility → account; null:
  never). Without a passcode on the account the rule does not apply: the YES pays as before.
- Such a YES charges nothing: the offer stays pending and records when the passcode was asked
  for and the amount (`ask`). Four digits alone within `ANSWER_WITHIN` (10 minutes) are the
  answer: the right passcode accepts the offer exactly as a YES would (the same conditional
  `pending → accepted`, the same payment phases and key: a second passcode text finds the
  offer accepted and charges nothing); a wrong one counts (`record_try`), and the
  `MAX_WRONG`th wrong one in a row (a day without one starts the count again) locks passcode
  payments on the account for `LOCK_FOR` (24 hours). Later digits are answered as a lapsed
  request for `NOTICE_FOR` after it was made.
- The digits themselves are never stored or logged: the inbound text is kept as
  `redaction.PASSCODE_MASK` (`textpay.redaction`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import update
from sqlmodel import Session, col

from textpay import audit, labels, tokens
from textpay.errors import ValidationFailed
from textpay.models import Account, Prompt, PromptStatus
from textpay.policy import EffectiveSettings

ANSWER_WITHIN = timedelta(minutes=10)  # a passcode must come this soon after it was asked for
NOTICE_FOR = timedelta(hours=24)  # four digits after that still hear that the request lapsed
MAX_WRONG = 3  # wrong passcodes in a row that lock passcode payments
LOCK_FOR = timedelta(hours=24)
WRONG_FORGOTTEN_AFTER = timedelta(hours=24)  # a day without a wrong passcode starts afresh


class PasscodeHolder(Protocol):
    """What the passcode rules read of an account: an `Account`, or a text's plain row of one
    (`facts.TextAccount`)."""

    @property
    def passcode_failures(self) -> int: ...
    @property
    def passcode_failed_at(self) -> datetime | None: ...
    @property
    def passcode_locked_until(self) -> datetime | None: ...
    @property
    def phone_since(self) -> datetime: ...


class AskedOffer(Protocol):
    """What `request_state` reads of an offer: a `Prompt`, or a text's plain row of one."""

    @property
    def status(self) -> str: ...
    @property
    def passcode_requested_at(self) -> datetime | None: ...


def matches(stored_hash: str | None, offered: str) -> bool:
    """Whether `offered` (four ASCII digits) is the passcode `stored_hash` was made from."""
    return tokens.slow_matches(stored_hash, offered)


def _state(account: Account) -> dict[str, object]:
    """What the audit trail may say about an account's passcode: whether it has one."""
    return {"passcode_set": account.passcode_hash is not None}


def set_passcode(session: Session, account: Account, passcode: str, *, actor: str,
                 now: datetime) -> None:  # fmt: skip
    """Give the account this passcode (four ASCII digits, checked by `schemas.PasscodeIn`).
    Not the last four digits of the account number: every offer and receipt prints them
    (`acct ...4821`), so whoever holds the phone would read the passcode there."""
    if labels.digits_of(account.account_number)[-labels.MIN_LABEL_DIGITS :] == passcode:
        raise ValidationFailed.single(
            "passcode", "is the end of the account number, which every text shows"
        )
    before = _state(account)
    account.passcode_hash = tokens.slow_hash(passcode)
    _unlock(account, now)
    audit.record(session, actor=actor, action="account.passcode_set", entity_type="account",
                 entity_id=account.id, before=before, after=_state(account), now=now)  # fmt: skip


def clear_passcode(session: Session, account: Account, *, actor: str, now: datetime) -> None:
    """Take the account's passcode away: its YES pays without one again."""
    before = _state(account)
    account.passcode_hash = None
    _unlock(account, now)
    audit.record(session, actor=actor, action="account.passcode_cleared", entity_type="account",
                 entity_id=account.id, before=before, after=_state(account), now=now)  # fmt: skip


def _unlock(account: Account, now: datetime) -> None:
    account.passcode_failures = 0
    account.passcode_failed_at = None
    account.passcode_locked_until = None
    account.updated_at = now


def locked_until(account: PasscodeHolder, *, now: datetime) -> datetime | None:
    """When passcode payments on the account unlock, while they are locked."""
    until = account.passcode_locked_until
    return until if until is not None and until > now else None


def tries_left(account: PasscodeHolder, *, now: datetime) -> int:
    """Wrong passcodes the account may still send before the lock."""
    failed_at = account.passcode_failed_at
    if failed_at is None or failed_at <= now - WRONG_FORGOTTEN_AFTER:
        return MAX_WRONG
    return max(0, MAX_WRONG - account.passcode_failures)


def new_phone(account: PasscodeHolder, effective: EffectiveSettings, *, now: datetime) -> bool:
    """Whether the phone came to the account fewer than `passcode_new_phone_days` days ago."""
    days = effective.passcode_new_phone_days
    return days is not None and now - account.phone_since < timedelta(days=days)


def request_state(prompt: AskedOffer, *, live: bool, now: datetime) -> str | None:
    """Where the passcode a YES asked for on this offer stands (`conversation.OfferFacts`)."""
    asked = prompt.passcode_requested_at
    if asked is None or now - asked >= NOTICE_FOR:
        return None
    if prompt.status == PromptStatus.PENDING.value and live and now - asked < ANSWER_WITHIN:
        return "open"
    if prompt.status in (PromptStatus.ACCEPTED.value, PromptStatus.FUNDED.value):
        return "used"
    if prompt.status in (PromptStatus.PENDING.value, PromptStatus.EXPIRED.value,
                         PromptStatus.FAILED.value):  # fmt: skip
        return "lapsed"
    return None  # declined or cancelled: four digits mean nothing then


def ask(session: Session, prompt_id: int, amount_cents: int, *, now: datetime) -> bool:
    """Record that a YES asked for the passcode on this offer (still pending and unexpired),
    for `amount_cents`; a later YES asks again and restarts the 10 minutes. True if it did."""
    moved = session.execute(
        update(Prompt)
        .where(
            col(Prompt.id) == prompt_id,
            col(Prompt.status) == PromptStatus.PENDING.value,
            col(Prompt.expires_at) > now,
        )
        .values(passcode_requested_at=now, passcode_amount_cents=amount_cents, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(moved.rowcount) == 1  # type: ignore[attr-defined]


def record_try(session: Session, account_id: int, *, right: bool, lock: bool, tries_left: int,
               now: datetime) -> None:  # fmt: skip
    """A passcode checked: a right one forgets the wrong ones; a wrong one is counted (the
    turns of one number run one at a time, so the count read with the facts is current), and
    the last one allowed locks passcode payments for `LOCK_FOR`."""
    if right:
        values: dict[str, object] = {"passcode_failures": 0, "passcode_failed_at": None}
        if tries_left == MAX_WRONG:
            return  # nothing to forget: no write on the way to the charge
    elif lock:
        values = {"passcode_failures": 0, "passcode_failed_at": None,
                  "passcode_locked_until": now + LOCK_FOR}  # fmt: skip
    else:
        values = {"passcode_failures": MAX_WRONG - tries_left + 1, "passcode_failed_at": now}
    session.execute(
        update(Account)
        .where(col(Account.id) == account_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
