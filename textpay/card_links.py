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
- `resend`: an operator texts the link again (the console's Account page), as CARD answers:
  queued masked, audited with the operator.
- On a processor that hosts the card page (Stripe's Checkout in setup mode), `start_checkout`
  records the page's session on the link, and `redeem_checkout` uses the link the same way
  when the processor's signed event says the page was completed (found by the session id,
  cross-checked with the link's `reference` the session carries; the 30 minutes bound starting
  the page, not finishing it).

Texts that carry a link are stored with the link masked (`/card/[link]`, `masked`): an answer
given by reply is stored masked, and a text queued in the outbox is stored masked and gets its
own fresh link when the dispatcher claims it (`fill_in`), so a link held back by quiet hours
still has its 30 minutes when it arrives.

Pure database work: no Flask, no network. The gateway call that makes a chosen card chargeable
(`accounts.save_card`) happens at the edge, before the transaction `redeem` runs in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, col, select

from textpay import audit, episodes, facts, messages, replies, tokens
from textpay.accounts import account_snapshot, payment_method_of, put_card
from textpay.engine_config import EngineConfig, voice
from textpay.errors import ValidationFailed
from textpay.models import Account, AccountStatus, CardLink, Message, PaymentMethod
from textpay.payments import CardInfo
from textpay.policy import delivery_rules
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


hash_token = tokens.hash_token


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
    token = tokens.new(TOKEN_BYTES)
    session.add(
        CardLink(
            token_hash=hash_token(token),
            phone=phone,
            account_id=account.id,
            language=language or account.language,
            csrf=tokens.new(24),
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


def resend(
    session: Session, account: Account, *, now: datetime, config: EngineConfig, actor: str
) -> Message:
    """An operator sends the card link again (the support desk, while the family is on the
    phone): the text CARD would have answered, queued for the account's number and audited.
    Stored with the link masked; the dispatcher makes a fresh link as it sends it, so its 30
    minutes start then. It is the operator's text, not the answer to one the subscriber sent,
    so it keeps to the number's sending window and daily cap like any text TextPay starts
    (sent at night, it goes in the morning); a number that has opted out is refused (no text
    may go to it)."""
    assert account.id is not None
    if messages.number_opted_out(session, account.phone):
        raise ValidationFailed.single(
            "phone", "this number has opted out (STOP): no text can be sent to it"
        )
    words = replies.fill("card_link", account.language, voice(session, config),
                         label=_label(session, account),
                         link=placeholder_url(config.link_base))  # fmt: skip
    queued = messages.queue_outbound(session, phone=account.phone, account_id=account.id,
                                     body=masked(words), kind="card_link", now=now,
                                     send_after=delivery_rules(session, account).next_allowed(now),
                                     engine_initiated=True)  # fmt: skip
    audit.record(session, actor=actor, action="account.card_link_sent", entity_type="account",
                 entity_id=account.id, before=None,
                 after={"message_id": queued.id, "phone": account.phone}, now=now)  # fmt: skip
    return queued


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
    return tokens.matches(opened.link.csrf, offered)


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
    return _use(session, link, account, card, now=now, config=config, within_lifetime=True)


def reference(link: CardLink) -> str:
    """The name of a link at the processor (on its Checkout Session and SetupIntent): the
    token's SHA-256, which is what the database keeps too. It finds the link again and cannot
    be turned back into a link that works."""
    return link.token_hash


def start_checkout(
    session: Session, token: str, *, session_id: str, now: datetime
) -> Opened | Refusal:
    """Record the processor's hosted card page (`session_id`) started from this link, while
    the link may still be used. The same session again (a second press of the button: the
    gateway's request is idempotent per link) is simply recorded again."""
    opened = open_link(session, token, now=now)
    if isinstance(opened, Refusal):
        return opened
    opened.link.checkout_session_id = session_id[:255]
    session.add(opened.link)
    session.flush()
    return opened


def redeem_checkout(
    session: Session,
    *,
    session_id: str,
    link_reference: str | None,
    card: CardInfo,
    now: datetime,
    config: EngineConfig,
) -> Redeemed | Refusal:
    """A hosted card page a link started was completed (the processor's signed event): `card`
    becomes the account's card, as `redeem` does for the sandbox's form.

    The link is found by the page's session id; the event's reference must name the same link
    (a session of one link can never change another link's account). A link whose session id
    was never stored (the process died between the processor's answer and our write) is found
    by its reference alone, if it has no other session. The link's 30 minutes bound when the
    page can be started, not when the card holder finishes Stripe's page: a completion after
    them is still this link's card, typed by the card holder on the page this link opened, so
    it is accepted; a link used already is not used again (`Refusal.USED`)."""
    assert card.token, "the gateway's token for the saved card"
    link = session.exec(
        select(CardLink).where(CardLink.checkout_session_id == session_id[:255])
    ).first()
    if link is None and link_reference:
        link = session.exec(
            select(CardLink).where(
                CardLink.token_hash == link_reference[:64],
                col(CardLink.checkout_session_id).is_(None),
            )
        ).first()
    if link is None or (link_reference is not None and link_reference != link.token_hash):
        return Refusal.UNKNOWN
    account = _bound_account(session, link)
    if account is None:
        return Refusal.UNKNOWN
    if link.checkout_session_id is None:
        link.checkout_session_id = session_id[:255]
        session.add(link)
    return _use(session, link, account, card, now=now, config=config, within_lifetime=False)


def checkout_started(session: Session, token: str) -> Opened | Refusal:
    """The link whose hosted card page was started, used or not, expired or not (the page the
    processor sends the card holder back to after the card was entered)."""
    found = _find(session, token)
    if isinstance(found, Refusal):
        return found
    link, account = found
    if link.checkout_session_id is None:
        return Refusal.UNKNOWN
    assert account.id is not None
    return Opened(link, account, _label(session, account), payment_method_of(session, account.id))


def _use(
    session: Session,
    link: CardLink,
    account: Account,
    card: CardInfo,
    *,
    now: datetime,
    config: EngineConfig,
    within_lifetime: bool,
) -> Redeemed | Refusal:
    assert card.token
    assert account.id is not None
    conditions = [col(CardLink.id) == link.id, col(CardLink.used_at).is_(None)]
    if within_lifetime:
        conditions.append(col(CardLink.expires_at) > now)
    used = session.execute(
        update(CardLink)
        .where(*conditions)
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
    account = _bound_account(session, link)
    if account is None:
        return Refusal.UNKNOWN
    return link, account


def _bound_account(session: Session, link: CardLink) -> Account | None:
    """The link's account, while the link may change it: it is bound to the number it was
    texted to, so an account moved to another number since (or closed) is not changed by a
    link the old number holds."""
    account = session.get(Account, link.account_id)
    if (
        account is None
        or account.phone != link.phone
        or account.status == AccountStatus.CLOSED.value
    ):
        return None
    return account


def _label(session: Session, account: Account) -> str:
    return facts.labels_on_phone(session, account.phone).get(
        account.account_number, account.account_number[-4:]
    )
