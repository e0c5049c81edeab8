"""Cards on file about to expire, and what AutoPay does instead of charging one that has.

Owns:

- when a card expires: at the end of the month printed on it (a card is good through that
  month's last day), at midnight in the subscriber's zone, the one their texts tell times in
  (`policy.text_zone`: the account's own, else its number's, else its facility's). Before that
  moment the card is charged as usual; from it, AutoPay does not charge it;
- the two warnings: from 30 days before that moment ("expires 03/27. Text CARD to update it"),
  and again from 7 days before it if the same card is still on file. A card first seen inside
  the last 7 days gets only the second; an expired card gets neither (AutoPay's notice, or the
  decline a YES would get, carries the card link);
- AutoPay's expired card: the scan asks `expired_card` before it charges, and instead of the
  charge the subscriber is texted the card link, once per card and low-balance episode,
  audited as `account.autopay_card_expired`.

A notice waiting in the outbox (the night, the daily cap) is dropped when it leaves if the card
it speaks of is no longer the one on file (`stale_notices`).

Each text is recorded once in `card_expiry_notice`, whose unique key is (account, card, kind,
episode), in the same savepoint as the text it queues: a rerun, or a second clock, finds the row
and queues nothing. A card is named by `card_key`, a SHA-256 of its token and expiry (never the
token itself): a new card, or a new expiry for the same one, is a new key, so its warnings start
afresh.

The texts are TextPay's own (`engine_initiated`): queued for the next moment the number's
sending window allows, never at night, and counted by the outbox against the number's daily cap.
Nothing is queued for a number that opted out, an account that is suspended or closed, or one
with neither TextPay nor AutoPay on (its card is not used). Warnings are planned AutoPay accounts
first: the outbox sends a number's waiting texts in the order they were queued, so when the cap
leaves room for only some, AutoPay's (whose charges fail silently on an expired card) go first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from textpay import audit, card_links, facts, messages, replies, settings_cache
from textpay.accounts import payment_method_of
from textpay.db import id_in
from textpay.engine_config import EngineConfig, voice
from textpay.models import (
    Account,
    AccountStatus,
    CardExpiryNotice,
    CardExpiryNoticeKind,
    Message,
    PaymentMethod,
)
from textpay.policy import PlacedAccount, delivery_rules, text_zone

log = logging.getLogger(__name__)

FIRST_WARNING = timedelta(days=30)
SECOND_WARNING = timedelta(days=7)
# `Message.kind` of the texts this module queues.
WARNING_TEXT = "card_expiring"
AUTOPAY_TEXT = "card_expired"
# The audit trail's actor and action for AutoPay's skipped charge (no operator made it).
ACTOR = "system"
AUTOPAY_SKIPPED_ACTION = "account.autopay_card_expired"
# Account ids per query on SQLite, which takes a bounded number of parameters.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Place:
    """What the zone rules read of an account (`policy.PlacedAccount`), from a plain row."""

    phone: str
    phone_state: str | None
    phone_zones: str
    timezone: str | None


@dataclass(frozen=True)
class Due:
    """An account whose card is due a warning now, as planned."""

    account_id: int
    kind: CardExpiryNoticeKind


@dataclass
class WarnCounts:
    queued: int = 0  # warnings queued
    already: int = 0  # this card had this warning already (a rerun, another clock)
    skipped: int = 0  # no longer due on the fresh row (a new card, STOP, closed, ...)
    errors: int = 0
    queued_ids: list[int] = field(default_factory=list)  # the texts queued, in order


def expiry_moment(exp_month: int, exp_year: int, zone: str) -> datetime:
    """When a card printed `exp_month/exp_year` stops being good: midnight starting the next
    month, in `zone`, as a UTC moment."""
    year, month = (exp_year + 1, 1) if exp_month == 12 else (exp_year, exp_month + 1)
    return datetime(year, month, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def warning_due(expires_at: datetime, now: datetime) -> CardExpiryNoticeKind | None:
    """Which warning a card expiring at `expires_at` is due at `now`, if any: the second one
    from 7 days before, the first from 30 days before, none once expired."""
    if now >= expires_at:
        return None
    if now >= expires_at - SECOND_WARNING:
        return CardExpiryNoticeKind.SECOND_WARNING
    if now >= expires_at - FIRST_WARNING:
        return CardExpiryNoticeKind.FIRST_WARNING
    return None


def card_key(token: str, customer: str | None, exp_month: int, exp_year: int) -> str:
    """The name of a card and its expiry in `card_expiry_notice`: a hash, so that the table
    holds no token that could be charged."""
    named = f"{token}\n{customer or ''}\n{exp_year:04d}-{exp_month:02d}"
    return hashlib.sha256(named.encode()).hexdigest()


def _key_of(method: PaymentMethod) -> str:
    assert method.exp_month is not None
    assert method.exp_year is not None
    return card_key(method.token, method.customer, method.exp_month, method.exp_year)


def _has_expiry(exp_month: int | None, exp_year: int | None) -> bool:
    return exp_month is not None and exp_year is not None and 1 <= exp_month <= 12


def _zone(session: Session, account: PlacedAccount, facility_id: int | None) -> str:
    facility = settings_cache.current(session, facility_id=facility_id).facility(facility_id)
    return text_zone(account, facility.timezone if facility else None)[0]


def expires_at(session: Session, account: Account, method: PaymentMethod) -> datetime | None:
    """When the account's card stops being good; None when its expiry is not known."""
    if not _has_expiry(method.exp_month, method.exp_year):
        return None
    assert method.exp_month is not None
    assert method.exp_year is not None
    zone = _zone(session, account, account.facility_id)
    return expiry_moment(method.exp_month, method.exp_year, zone)


def expired_card(session: Session, account: Account, *, now: datetime) -> PaymentMethod | None:
    """The account's card on file if it is past its expiry: AutoPay must not charge it."""
    assert account.id is not None
    method = payment_method_of(session, account.id)
    if method is None:
        return None
    moment = expires_at(session, account, method)
    return method if moment is not None and now >= moment else None


def stale_notices(session: Session, message_ids: Iterable[int]) -> set[int]:
    """Of these queued card notices (`Message.id`), those whose card is no longer the one on
    file (a new card, a new expiry, or none): the outbox drops them, since "card ...4242
    expires 03/27" or "card ...4242 expired" would not be true when it left."""
    wanted = sorted(set(message_ids))
    if not wanted:
        return set()
    told = session.execute(
        select(CardExpiryNotice.message_id, CardExpiryNotice.account_id, CardExpiryNotice.card_key)
        .where(col(CardExpiryNotice.message_id).in_(wanted))
    ).all()  # fmt: skip
    cards = {
        m.account_id: m
        for m in session.exec(
            select(PaymentMethod).where(col(PaymentMethod.account_id).in_({a for _, a, _ in told}))
        )
    }

    def on_file(account_id: int, key: str) -> bool:
        method = cards.get(account_id)
        return (
            method is not None
            and _has_expiry(method.exp_month, method.exp_year)
            and _key_of(method) == key
        )

    return {message_id for message_id, account_id, key in told if not on_file(account_id, key)}


def _months_around(now: datetime) -> list[tuple[int, int]]:
    """The expiry months (year, month) whose end may be within 30 days of `now` in some zone:
    last month's (it may not have ended yet west of UTC), this month's and next month's."""
    index = now.year * 12 + now.month - 1
    return [((i // 12), (i % 12) + 1) for i in (index - 1, index, index + 1)]


def plan(session: Session, *, now: datetime) -> list[Due]:
    """The accounts whose card is due a warning it has not had, AutoPay accounts first, then
    the soonest expiry, then the oldest account. Reads plain rows: through the expiry index,
    only the cards expiring around this month."""
    months = _months_around(now)
    columns: list[Any] = [
        Account.id, Account.phone, Account.phone_state, Account.phone_zones, Account.timezone,
        Account.facility_id, Account.autopay_enabled, PaymentMethod.token, PaymentMethod.customer,
        PaymentMethod.exp_month, PaymentMethod.exp_year,
    ]  # fmt: skip
    in_months = or_(
        *(and_(col(PaymentMethod.exp_year) == y, col(PaymentMethod.exp_month) == m)
          for y, m in months)
    )  # fmt: skip
    rows = session.execute(
        select(*columns)
        .join(PaymentMethod, col(PaymentMethod.account_id) == col(Account.id))
        .where(
            in_months,
            or_(col(Account.textpay_enabled), col(Account.autopay_enabled)),
            col(Account.opted_out).is_(False),
            col(Account.status) == AccountStatus.ACTIVE.value,
        )
    ).all()
    found: list[tuple[bool, datetime, int, CardExpiryNoticeKind, str]] = []
    for row in rows:
        if not _has_expiry(row.exp_month, row.exp_year):
            continue
        place = _Place(row.phone, row.phone_state, row.phone_zones, row.timezone)
        moment = expiry_moment(row.exp_month, row.exp_year, _zone(session, place, row.facility_id))
        kind = warning_due(moment, now)
        if kind is not None:
            key = card_key(row.token, row.customer, row.exp_month, row.exp_year)
            found.append((not row.autopay_enabled, moment, row.id, kind, key))
    if not found:
        return []
    done: set[tuple[int, str, str]] = set()
    ids = sorted({f[2] for f in found})
    for start in range(0, len(ids), _CHUNK):
        done.update(
            session.execute(
                select(CardExpiryNotice.account_id, CardExpiryNotice.card_key,
                       CardExpiryNotice.kind)
                .where(id_in(session, CardExpiryNotice.account_id, ids[start : start + _CHUNK]))
            ).tuples()
        )  # fmt: skip
    return [
        Due(account_id, kind)
        for _, _, account_id, kind, key in sorted(found)
        if (account_id, key, kind.value) not in done
    ]


def warn(session: Session, due: list[Due], *, now: datetime, config: EngineConfig) -> WarnCounts:
    """Queue the planned warnings, in the plan's order, each decided again on the account's
    fresh row and card. One account that fails is logged and counted; the rest go on."""
    counts = WarnCounts()
    for item in due:
        try:
            with session.begin_nested():
                queued = _warn_one(session, item, now=now, config=config)
        except IntegrityError:
            counts.already += 1  # another clock recorded this warning first
            continue
        except Exception:
            log.exception("card expiry: warning for account %s failed", item.account_id)
            counts.errors += 1
            continue
        if queued is _Outcome.SKIPPED:
            counts.skipped += 1
        elif queued is _Outcome.ALREADY:
            counts.already += 1
        else:
            assert queued.id is not None
            counts.queued += 1
            counts.queued_ids.append(queued.id)
    return counts


class _Outcome(Enum):
    SKIPPED = "skipped"  # no longer due on the fresh row
    ALREADY = "already"  # this card had this warning already


def _warn_one(
    session: Session, item: Due, *, now: datetime, config: EngineConfig
) -> Message | _Outcome:
    account = session.get(Account, item.account_id, populate_existing=True)
    if account is None or not _may_text(session, account):
        return _Outcome.SKIPPED
    assert account.id is not None
    method = payment_method_of(session, account.id)
    if method is None:
        return _Outcome.SKIPPED
    moment = expires_at(session, account, method)
    if moment is None or warning_due(moment, now) is not item.kind:
        return _Outcome.SKIPPED  # a new card, or a new expiry, since the plan
    assert method.exp_month is not None
    assert method.exp_year is not None
    key = _key_of(method)
    if _told(session, account.id, key, item.kind, episode=0):
        return _Outcome.ALREADY
    labels = facts.labels_on_phone(session, account.phone)
    known = facts.account_facts(session, account, now=now, with_deposits=False, with_card=False,
                                label=labels.get(account.account_number))  # fmt: skip
    words = replies.card_expiring(known, card_last4=method.last4, exp_month=method.exp_month,
                                  exp_year=method.exp_year, several_accounts=len(labels) > 1,
                                  voice=voice(session, config))  # fmt: skip
    queued = messages.queue_outbound(session, phone=account.phone, account_id=account.id,
                                     body=words, kind=WARNING_TEXT, now=now,
                                     send_after=delivery_rules(session, account).next_allowed(now),
                                     engine_initiated=True)  # fmt: skip
    _record(session, account.id, method, key, item.kind, episode=0, message=queued, now=now)
    return queued


def _may_text(session: Session, account: Account) -> bool:
    """Whether a card notice may be texted for this account: active, TextPay or AutoPay on,
    and its number has not opted out (read from the number's consent, not the account's copy)."""
    return (
        account.status == AccountStatus.ACTIVE.value
        and (account.textpay_enabled or account.autopay_enabled)
        and not messages.number_opted_out(session, account.phone)
    )


def _told(session: Session, account_id: int, key: str, kind: CardExpiryNoticeKind,
          *, episode: int) -> bool:  # fmt: skip
    return (
        session.exec(
            select(CardExpiryNotice.id).where(
                CardExpiryNotice.account_id == account_id,
                CardExpiryNotice.card_key == key,
                CardExpiryNotice.kind == kind.value,
                CardExpiryNotice.episode == episode,
            )
        ).first()
        is not None
    )


def _record(
    session: Session,
    account_id: int,
    method: PaymentMethod,
    key: str,
    kind: CardExpiryNoticeKind,
    *,
    episode: int,
    message: Message,
    now: datetime,
) -> CardExpiryNotice:
    """The notice's row; its unique key fails the caller's savepoint if another process
    recorded the same notice meanwhile, which undoes the text queued with it."""
    assert method.exp_month is not None
    assert method.exp_year is not None
    notice = CardExpiryNotice(account_id=account_id, card_key=key, kind=kind.value,
                              episode=episode, last4=method.last4, exp_month=method.exp_month,
                              exp_year=method.exp_year, message_id=message.id,
                              created_at=now)  # fmt: skip
    session.add(notice)
    session.flush()
    return notice


def skip_autopay(
    session: Session,
    account: Account,
    method: PaymentMethod,
    *,
    now: datetime,
    config: EngineConfig,
) -> Message | None:
    """AutoPay does not charge `method`, which has expired: the subscriber is texted the card
    link (filled in fresh by the dispatcher, so its 30 minutes start when it is sent), once for
    this card in this low-balance episode, and the audit trail says why nothing was charged.
    None when this card was already reported in this episode (the scan runs every few
    minutes; the subscriber hears once). Runs in the caller's savepoint: a second clock's
    notice for the same card and episode fails it on the unique key."""
    assert account.id is not None
    assert method.exp_month is not None
    assert method.exp_year is not None
    key = _key_of(method)
    kind = CardExpiryNoticeKind.AUTOPAY_SKIPPED
    if _told(session, account.id, key, kind, episode=account.episode_seq):
        return None
    labels = facts.labels_on_phone(session, account.phone)
    known = facts.account_facts(session, account, now=now, with_deposits=False, with_card=False,
                                label=labels.get(account.account_number))  # fmt: skip
    words = replies.autopay_card_expired(known, card_last4=method.last4,
                                         exp_month=method.exp_month, exp_year=method.exp_year,
                                         link=card_links.placeholder_url(config.link_base),
                                         voice=voice(session, config))  # fmt: skip
    queued = messages.queue_outbound(session, phone=account.phone, account_id=account.id,
                                     body=card_links.masked(words), kind=AUTOPAY_TEXT, now=now,
                                     send_after=delivery_rules(session, account).next_allowed(now),
                                     engine_initiated=True)  # fmt: skip
    _record(session, account.id, method, key, kind, episode=account.episode_seq, message=queued,
            now=now)  # fmt: skip
    audit.record(session, actor=ACTOR, action=AUTOPAY_SKIPPED_ACTION, entity_type="account",
                 entity_id=account.id, before=None,
                 after={"reason": "card_expired", "card_last4": method.last4,
                        "exp_month": method.exp_month, "exp_year": method.exp_year,
                        "episode": account.episode_seq, "message_id": queued.id},
                 now=now)  # fmt: skip
    return queued
