"""What TextPay knows about a phone's accounts when it decides something: gathered here only.

The conversation (`decide`), the offers the scan makes and the texts that follow a charge all
read the same `AccountFacts`: the account's label among the accounts on its phone, its balance,
its effective limits, its card, whether a text may pay it, and the zone its times are told in.
The number's consent comes from `textpay.consent` (it belongs to the number, not an account).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, Protocol

from sqlalchemy import String, bindparam, func, literal, null
from sqlmodel import Session, col, select

from textpay import consent, episodes, funding, labels, passcodes, prompts
from textpay.accounts import payment_method_of
from textpay.conversation import AccountFacts, Facts, OfferFacts
from textpay.db import columns_of, constant, core, text_in
from textpay.episodes import RunwayAccount
from textpay.funding import CardOnFile, ChargedAccount
from textpay.models import (
    Account,
    AccountStatus,
    Message,
    MessageDirection,
    PaymentMethod,
    PhoneConsent,
    Prompt,
    PromptStatus,
)
from textpay.passcodes import PasscodeHolder
from textpay.policy import (
    EffectiveSettings,
    PlacedAccount,
    SettledAccount,
    effective_for_account,
    text_zone,
)

DAY = timedelta(hours=24)
# How long after an offer is funded a plain YES is taken for the same YES sent again
# (`OfferFacts.just_funded`) rather than a request for another top-up.
JUST_FUNDED = timedelta(minutes=10)


class TextAccount(NamedTuple):
    """What a text's turn reads of an account: a plain row of `gather_for_text`'s statement,
    not an ORM object. Every webhook reads one per account on the phone, and loading ORM
    objects (accounts, offers, cards) cost more than the statement itself did."""

    id: int
    account_number: str
    phone: str
    phone_state: str | None
    phone_zones: str
    nickname: str
    language: str
    timezone: str | None
    facility_id: int | None
    textpay_enabled: bool
    autopay_enabled: bool
    preset_amount_cents: int | None
    threshold_cents: int | None
    runway_days: int | None
    usage_pace_cents: int | None
    usage_pace_hours: int | None
    usage_pace_until: datetime | None
    status: str
    balance_cents: int
    balance_updated_at: datetime
    phone_since: datetime
    passcode_hash: str | None
    passcode_failures: int
    passcode_failed_at: datetime | None
    passcode_locked_until: datetime | None
    passcode_over_cents: int | None
    passcode_new_phone_days: int | None


class TextOffer(NamedTuple):
    """What a text's turn reads of an account's newest offer (`offer_facts`): a plain row."""

    id: int
    account_id: int
    status: str
    amount_cents: int
    fee_cents: int
    expires_at: datetime
    label: str | None
    card_token: str | None
    acceptable_after: datetime | None
    passcode_requested_at: datetime | None
    passcode_amount_cents: int | None
    updated_at: datetime


class TextCard(NamedTuple):
    """What a text's turn reads of an account's card on file: a plain row."""

    account_id: int
    token: str
    customer: str | None
    brand: str
    last4: str


class KnownAccount(
    PlacedAccount, SettledAccount, PasscodeHolder, RunwayAccount, ChargedAccount, Protocol
):
    """What `account_facts_from` reads of an account: an `Account`, or a plain row of one
    (`TextAccount`)."""

    @property
    def nickname(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def balance_updated_at(self) -> datetime: ...
    @property
    def passcode_hash(self) -> str | None: ...


class PayableAccount(Protocol):
    """What `payable_by_text` reads of an account: an `Account`, or a plain row of one."""

    @property
    def status(self) -> str: ...
    @property
    def textpay_enabled(self) -> bool: ...


def payable_by_text(account: PayableAccount) -> bool:
    """Whether a text may charge this account: it is active and TextPay is on for it."""
    return account.status == AccountStatus.ACTIVE.value and account.textpay_enabled


def account_facts(
    session: Session,
    account: Account,
    *,
    now: datetime,
    with_deposits: bool = True,
    label: str | None = None,
    with_card: bool = True,
) -> AccountFacts:
    """The facts about one account. Today's deposits (two sums) are only looked up when a
    decision may move money: a BAL or HELP does not pay for them. `label` is the account's
    label among the accounts on its phone, when the caller has worked that out. `with_card`:
    read the card on file (words that name the card an attempt charged do not need it)."""
    assert account.id is not None
    deposited = funding.deposited_since(session, account.id, now - DAY) if with_deposits else 0
    if label is None:
        label = labels_on_phone(session, account.phone).get(account.account_number)
    return account_facts_from(
        account,
        effective_for_account(session, account),
        payment_method_of(session, account.id) if with_card else None,
        deposited_last_24h_cents=deposited,
        label=label,
        now=now,
    )


def account_facts_from(
    account: KnownAccount,
    effective: EffectiveSettings,
    method: CardOnFile | None,
    *,
    deposited_last_24h_cents: int,
    label: str | None = None,
    now: datetime | None = None,
) -> AccountFacts:
    """The facts about an account from what the caller already loaded (the scan loads a whole
    batch at once). `now`: the moment its runway is told as of (`textpay.runway`), and what a
    YES needs to know about the account's passcode; without it (the scan's offers) the runway
    is left unsaid and no passcode is asked for."""
    assert account.id is not None
    zone, zone_named = text_zone(account, effective.facility_timezone)
    passcode: dict[str, Any] = {}
    if now is not None and account.passcode_hash is not None:
        passcode = {
            "has_passcode": True,
            "passcode_over_cents": effective.passcode_over_cents,
            "new_phone": passcodes.new_phone(account, effective, now=now),
            "passcode_locked_until": passcodes.locked_until(account, now=now),
            "passcode_tries_left": passcodes.tries_left(account, now=now),
        }
    return AccountFacts(
        account_id=account.id,
        label=label or account.account_number[-4:],
        nickname=account.nickname,
        language=account.language,
        timezone=zone,
        zone_named=zone_named,
        balance_cents=account.balance_cents,
        balance_as_of=account.balance_updated_at,
        autopay_enabled=account.autopay_enabled,
        card_last4=method.last4 if method else None,
        preset_amount_cents=effective.preset_amount_cents,
        threshold_cents=effective.low_balance_threshold_cents,
        min_deposit_cents=effective.min_deposit_cents,
        max_deposit_cents=effective.max_deposit_cents,
        daily_limit_cents=effective.daily_deposit_limit_cents,
        deposited_last_24h_cents=deposited_last_24h_cents,
        payable_by_text=payable_by_text(account),
        runway_days=None if now is None else episodes.runway_days_left(account, now=now),
        **passcode,
    )


def labels_on_phone(session: Session, phone: str) -> dict[str, str]:
    """Each account number's label among the accounts on this phone."""
    return labels.unique_labels([a.account_number for a in consent.accounts_of(session, phone)])


def labels_on_phones(session: Session, phones: set[str]) -> dict[str, str]:
    """Each account number's label among the accounts on its phone, for several phones at once
    (the scan labels a whole batch of offers with one query; the phones go as one array on
    PostgreSQL)."""
    by_phone: dict[str, list[str]] = {}
    for phone, number in core(session).execute(
        select(Account.phone, Account.account_number).where(
            text_in(session, Account.phone, sorted(phones))
        )
    ):
        by_phone.setdefault(phone, []).append(number)
    found: dict[str, str] = {}
    for numbers in by_phone.values():
        found.update(labels.unique_labels(numbers))
    return found


def offer_facts(prompt: TextOffer, *, now: datetime, card_token: str | None) -> OfferFacts:
    """An offer as the conversation sees it. It is live only while pending, unexpired and
    acceptable: its text has gone out (an offer still waiting in the outbox, or sent as a reply
    a moment ago, cannot be accepted by a YES the subscriber sent before reading it), and the
    card it named is still the card on file (`card_token`)."""
    same_card = prompt.card_token is None or prompt.card_token == card_token
    pending = prompt.status == PromptStatus.PENDING.value and prompt.expires_at > now and same_card
    live = pending and prompts.acceptable(prompt, now=now)
    return OfferFacts(
        prompt_id=prompt.id,
        account_id=prompt.account_id,
        status=prompt.status,
        amount_cents=prompt.amount_cents,
        fee_cents=prompt.fee_cents,
        expires_at=prompt.expires_at,
        live=live,
        label_sent=prompt.label,
        passcode=passcodes.request_state(prompt, live=live, now=now),
        passcode_amount_cents=prompt.passcode_amount_cents,
        passcode_requested_at=prompt.passcode_requested_at,
        just_funded=prompt.status == PromptStatus.FUNDED.value
        and prompt.updated_at > now - JUST_FUNDED,
    )


@dataclass(frozen=True)
class PhoneFacts:
    """What one query found about a phone for an inbound text: the facts `decide` reads, the
    accounts themselves, and, when asked, whether this MessageSid was seen before and how many
    texts the number sent in the flood window."""

    facts: Facts
    accounts: tuple[TextAccount, ...]
    cards: dict[int, TextCard]
    seen_message_id: int | None = None
    recent_inbound: int = 0


def gather_for_text(
    session: Session,
    phone: str,
    *,
    now: datetime,
    carrier_answers_keywords: bool,
    with_deposits: bool = True,
    sid: str | None = None,
    inbound_since: datetime | None = None,
) -> PhoneFacts:
    """Everything `decide` needs about a phone: every account on it (closed and suspended ones
    too, so that a YES for them gets a clear answer instead of "no offer"), their newest offers
    and the number's consent; in one statement (a text is answered on every webhook: the hot
    path), with what the turn also needs to know first: whether the text `sid` was recorded
    before, and how many texts `phone` sent since `inbound_since`.

    One row per account on the phone (or one empty row for a number with no account): the
    account, its newest offer and its card, today's deposits when a decision may move money,
    and the number's own values (consent, the SID, the count) repeated on every row. Settings
    come from the process's copy (`textpay.settings_cache`), not the database."""
    query = _phone_query(
        with_deposits=with_deposits, with_sid=sid is not None, with_count=inbound_since is not None
    )
    params = {"phone": phone, "sid": sid, "inbound_since": inbound_since,
              "deposits_since": now - DAY}  # fmt: skip
    rows = core(session).execute(query, params).all()
    opted_out, seen, recent = rows[0][_PER_NUMBER : _PER_NUMBER + 3]
    found = [_split(row) for row in rows if row[0] is not None]
    shown = sorted(found, key=lambda r: (r[0].status != AccountStatus.ACTIVE.value, r[0].id))
    names = labels.unique_labels([account.account_number for account, *_ in shown])
    facts = Facts(
        accounts=tuple(
            account_facts_from(
                account,
                effective_for_account(session, account),
                card,
                deposited_last_24h_cents=int(deposited or 0) if payable_by_text(account) else 0,
                label=names[account.account_number],
                now=now,
            )
            for account, _, card, deposited in shown
        ),
        # In the accounts' order, not the database's: replies that list offers ("YES 4821 or
        # YES 7730") must read the same every time.
        offers=tuple(
            offer_facts(offer, now=now, card_token=card.token if card else None)
            for _, offer, card, _ in shown
            if offer is not None
        ),
        opted_out=bool(opted_out),
        carrier_answers_keywords=carrier_answers_keywords,
    )
    return PhoneFacts(
        facts=facts,
        accounts=tuple(account for account, *_ in shown),
        cards={account.id: card for account, _, card, _ in shown if card is not None},
        seen_message_id=int(seen) if seen is not None else None,
        recent_inbound=int(recent or 0),
    )


# Where each part of a row of `_phone_query` starts: the account, its newest offer, its card,
# then the number's own values (consent, the SID, the count) and today's deposits.
_OFFER = len(TextAccount._fields)
_CARD = _OFFER + len(TextOffer._fields)
_PER_NUMBER = _CARD + len(TextCard._fields)


def _split(row: Any) -> tuple[TextAccount, TextOffer | None, TextCard | None, Any]:
    """One account's row of `_phone_query` as its account, newest offer, card and deposits."""
    offer = TextOffer._make(row[_OFFER:_CARD]) if row[_OFFER] is not None else None
    card = TextCard._make(row[_CARD:_PER_NUMBER]) if row[_CARD] is not None else None
    return TextAccount._make(row[:_OFFER]), offer, card, row[_PER_NUMBER + 3]


@cache
def _phone_query(*, with_deposits: bool, with_sid: bool, with_count: bool) -> Any:
    """`gather_for_text`'s statement, built once per shape with bound parameters (`phone`,
    `sid`, `inbound_since`, `deposits_since`): building and keying it anew was a third of a
    text's time."""
    newest_offer = (
        select(func.max(Prompt.id))
        .where(col(Prompt.account_id) == col(Account.id))
        .correlate(Account)
        .scalar_subquery()
    )
    phone = bindparam("phone", type_=String)
    per_number: list[Any] = [
        select(PhoneConsent.opted_out).where(col(PhoneConsent.phone) == phone).scalar_subquery(),
        (
            select(Message.id).where(col(Message.twilio_sid) == bindparam("sid")).scalar_subquery()
            if with_sid
            else null()
        ),
        (
            select(func.count())
            .select_from(Message)
            .where(
                col(Message.phone) == phone,
                Message.direction == constant(MessageDirection.INBOUND.value),
                col(Message.created_at) > bindparam("inbound_since"),
            )
            .scalar_subquery()
            if with_count
            else null()
        ),
    ]
    deposits = funding.deposited_since_column(bindparam("deposits_since")) if with_deposits \
        else null()  # fmt: skip
    one_row = select(literal(1).label("one")).subquery("one_row")
    columns: list[Any] = [*columns_of(Account, TextAccount), *columns_of(Prompt, TextOffer),
                          *columns_of(PaymentMethod, TextCard), *per_number, deposits]  # fmt: skip
    query: Any = select(*columns)
    return (
        query.select_from(one_row)
        .outerjoin(Account, col(Account.phone) == phone)
        .outerjoin(Prompt, col(Prompt.id) == newest_offer)
        .outerjoin(PaymentMethod, col(PaymentMethod.account_id) == col(Account.id))
    )
