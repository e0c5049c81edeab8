"""Card links: a short-lived link, texted to a subscriber, that opens a page to put a card on file.

Owns the link's life and the rules that make it safe to text:

- `issue` makes a random token (`secrets.token_urlsafe(32)`: 256 bits, 43 URL-safe characters)
  and stores only its SHA-256, with the number it is texted to, the account, the language and
  a random CSRF value for the page's form. The raw token exists only in the text that carries
  it: a database dump never holds a link that works.
- `open_link` finds a link by its token: unknown, used, expired (30 minutes), or no longer
  valid because its account has left the number it was texted to, are refusals.
- `redeem` uses a link once (a conditional update on `used_at IS NULL`, so two posts of the same
  form change the card at most once), replaces the account's card on file, audits the change
  (actor `subscriber`) and queues the confirmation text.

Texts that carry a link are stored with the link masked (`/card/[link]`, `masked`): an answer
given by reply is stored masked, and a text queued in the outbox is stored masked and gets its
own fresh link when the dispatcher claims it (`fill_in`), so a link held back by quiet hours
still has its 30 minutes when it arrives.

Pure database work: no Flask, no network. The gateway call that makes a chosen card chargeable
(`accounts.save_card`) happens at the edge, before the transaction `redeem` runs in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, col, select

from textpay import audit, episodes, facts, messages, replies
from textpay.accounts import account_snapshot, payment_method_of, put_card
from textpay.engine_config import EngineConfig, voice
from textpay.models import Account, AccountStatus, CardLink, Message, PaymentMethod
from textpay.payments import CardInfo
from textpay.schemas import PaymentMethodIn

LIFETIME = timedelta(minutes=30)
TOKEN_BYTES = 32  # 256 random bits (the contract asks for at least 128)
TOKEN_LENGTH = 43  # `token_urlsafe(32)`: 43 characters of [A-Za-z0-9_-]
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
PATH = "/card/"
# How a link is written wherever it is stored or logged (`logsafe` masks the same way).
MASKED = PATH + "[link]"
# A token of the real length, for measuring texts before the real token exists.
_STAND_IN = "x" * TOKEN_LENGTH
_ANY_LINK = re.compile(re.escape(PATH) + r"[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
SUBSCRIBER = "subscriber"  # the audit trail's actor for changes the card holder made


class Refusal(StrEnum):
    UNKNOWN = "unknown"  # no such link, or its account has left the number it was sent to
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Opened:
    """A link that may still be used, with what its page shows."""

    link: CardLink
    account: Account
    label: str  # the account's label among the accounts on its number
    card: PaymentMethod | None


@dataclass(frozen=True)
class Redeemed:
    account: Account
    card: PaymentMethod
    label: str
    confirmation: Message


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def url(base: str, token: str) -> str:
    return base.rstrip("/") + PATH + token


def masked(text: str) -> str:
    """`text` with every card link's token replaced by `[link]` (for storing and logging)."""
    return _ANY_LINK.sub(MASKED, text)


def placeholder_url(base: str) -> str:
    """A link of the real length whose token is not yet made: texts are measured with it and
    stored with it masked (`masked`); the dispatcher makes the token (`fill_in`)."""
    return url(base, _STAND_IN)


def issue(
    session: Session, account: Account, *, phone: str, now: datetime, language: str | None = None
) -> str:
    """A new link's raw token, for `account`, texted to `phone`. Only its hash is stored."""
    assert account.id is not None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        CardLink(
            token_hash=hash_token(token),
            phone=phone,
            account_id=account.id,
            language=language or account.language,
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    session.flush()
    return token


def fill_in(session: Session, body: str, *, account_id: int | None, phone: str,
            now: datetime) -> str:  # fmt: skip
    """The words of a stored text as they are sent: each masked link gets a fresh token (the
    dispatcher, when it claims the text). A text with no account keeps its mask."""
    if MASKED not in body or account_id is None:
        return body
    account = session.get(Account, account_id)
    if account is None:
        return body
    token = issue(session, account, phone=phone, now=now)
    return body.replace(MASKED, PATH + token)


def well_formed(token: str) -> bool:
    return TOKEN.fullmatch(token) is not None


def open_link(session: Session, token: str, *, now: datetime) -> Opened | Refusal:
    """The link `token` opens, with what its page shows; or why it cannot be used."""
    found = _find(session, token)
    if isinstance(found, Refusal):
        return found
    link, account = found
    if link.used_at is not None:
        return Refusal.USED
    if link.expires_at <= now:
        return Refusal.EXPIRED
    assert account.id is not None
    return Opened(link, account, _label(session, account), payment_method_of(session, account.id))


def csrf_matches(opened: Opened, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(
        opened.link.csrf.encode(), (offered or "").encode("utf-8", "replace")
    )


def redeem(
    session: Session, token: str, card: CardInfo, *, now: datetime, config: EngineConfig
) -> Redeemed | Refusal:
    """Use the link once: `card` (as the gateway saved it; `card.token` is what will be
    charged) becomes the account's card on file, audited as the subscriber's change, and the
    subscriber is texted a confirmation.

    A new card starts AutoPay's tries afresh when AutoPay is on and waiting to retry after a
    decline (`episodes.restart_autopay`: the next scan charges the new card instead of waiting
    for the old card's retry day). AutoPay that declines turned off stays off: turning it back
    on is the subscriber's word (AUTOPAY ON), not a side effect of a new card.
    """
    assert card.token, "the gateway's token for the chosen card"
    found = _find(session, token)
    if isinstance(found, Refusal):
        return found
    link, account = found
    assert account.id is not None
    used = session.execute(
        update(CardLink)
        .where(
            col(CardLink.id) == link.id,
            col(CardLink.used_at).is_(None),
            col(CardLink.expires_at) > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not used:
        session.refresh(link)
        return Refusal.USED if link.used_at is not None else Refusal.EXPIRED

    before = account_snapshot(account, payment_method_of(session, account.id))
    data = PaymentMethodIn(
        token=card.token,
        customer=card.customer,
        brand=card.brand[:20] or None,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )
    method = put_card(session, account.id, data, card)
    if account.autopay_enabled and (account.autopay_failures or account.autopay_retry_at):
        episodes.restart_autopay(account, now=now)
    account.updated_at = now
    session.add(account)
    session.flush()
    audit.record(
        session,
        actor=SUBSCRIBER,
        action="account.card_link",
        entity_type="account",
        entity_id=account.id,
        before=before,
        after=account_snapshot(account, method),
        now=now,
    )
    label = _label(session, account)
    known = facts.account_facts(session, account, now=now, with_deposits=False, label=label)
    words = replies.card_updated(known, card_last4=method.last4, language=link.language,
                                 voice=voice(session, config))  # fmt: skip
    # The answer to the subscriber's own action: not held for quiet hours (and withheld, like
    # every text, if the number has opted out since).
    confirmation = messages.queue_outbound(
        session,
        phone=link.phone,
        account_id=account.id,
        body=words,
        kind="card_updated",
        now=now,
        engine_initiated=False,
    )
    return Redeemed(account, method, label, confirmation)


def latest_account(session: Session, phone: str, *, since: datetime) -> int | None:
    """The account of the first link texted to `phone` at or after `since` (which account a
    stored, masked reply's link was for, to give a replayed webhook a fresh one)."""
    return session.exec(
        select(CardLink.account_id)
        .where(CardLink.phone == phone, col(CardLink.created_at) >= since)
        .order_by(col(CardLink.id))
    ).first()


def _find(session: Session, token: str) -> tuple[CardLink, Account] | Refusal:
    if not well_formed(token):
        return Refusal.UNKNOWN
    link = session.exec(select(CardLink).where(CardLink.token_hash == hash_token(token))).first()
    if link is None:
        return Refusal.UNKNOWN
    account = session.get(Account, link.account_id)
    # The link is bound to the number it was texted to: an account moved to another number
    # since (or closed) is not changed by a link the old number holds.
    if (
        account is None
        or account.phone != link.phone
        or account.status == AccountStatus.CLOSED.value
    ):
        return Refusal.UNKNOWN
    return link, account


def _label(session: Session, account: Account) -> str:
    return facts.labels_on_phone(session, account.phone).get(
        account.account_number, account.account_number[-4:]
    )
