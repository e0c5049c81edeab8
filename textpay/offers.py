"""Making top-up offers: the one place an offer and the words that carry it are created.

The scan makes offers a batch at a time and queues their texts in the outbox, each text tied to
its offer (`Message.prompt_id`) and held until the recipient's sending window opens; such an
offer can be accepted only once its text has gone out (the dispatcher records when). An offer
made in answer to the subscriber's own text (their old offer expired or failed) is the reply
itself, and can be accepted a reading moment after it was sent: two YES sent together after an
offer expired make one fresh offer and charge nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from textpay import facts, messages, prompts, replies
from textpay.engine_config import EngineConfig, voice
from textpay.models import Account, Message, PaymentMethod, Prompt
from textpay.policy import (
    EffectiveSettings,
    delivery_rules_for,
    effective_for_account,
    get_global_settings,
    state_windows,
)

# How long after an offer is sent as a reply before a YES may accept it: no one reads an offer
# and answers it faster, while a second YES typed together with the first arrives sooner.
READING_TIME = timedelta(seconds=10)


@dataclass(frozen=True)
class OfferRequest:
    account: Account
    settings: EffectiveSettings
    kind: str  # "prompt" (first offer of an episode) or "reminder"


@dataclass(frozen=True)
class MadeOffer:
    """An offer made, with its text: queued (the scan's) or to be the reply (a subscriber's)."""

    prompt_id: int
    account_id: int
    phone: str
    kind: str
    body: str
    send_after: datetime


def make_queued(
    session: Session, requests: Sequence[OfferRequest], *, now: datetime, config: EngineConfig
) -> list[MadeOffer]:
    """The scan's offers for a batch of accounts: one INSERT for the offers, one for their
    texts (held until each recipient's window opens) and one UPDATE counting them in the
    accounts' episodes. A conflict (another scan made one first) fails the whole batch, which
    the caller undoes and retries one account at a time. Accounts without a card are left out:
    there is nothing to charge until an operator adds one."""
    cards = _cards(session, [r.account.id for r in requests if r.account.id is not None])
    names = facts.labels_on_phones(session, {r.account.phone for r in requests})
    windows = state_windows(get_global_settings(session))
    spoken = voice(session, config)
    rows: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for request in requests:
        account, card = request.account, cards.get(request.account.id or 0)
        if card is None or account.id is None:
            continue
        send_at = delivery_rules_for(account, request.settings, windows).next_allowed(now)
        label = names.get(account.account_number)
        row = prompts.offer_row(account, request.settings, now=now, starts_at=send_at,
                                label=label, card_token=card.token)  # fmt: skip
        body = _words(account, request.settings, card, row, now=send_at, voice=spoken,
                      label=label)  # fmt: skip
        rows.append(row)
        texts.append(
            messages.outbound_row(phone=account.phone, account_id=account.id, body=body,
                                  kind=request.kind, now=now, send_after=send_at,
                                  engine_initiated=True)
        )  # fmt: skip
    if not rows:
        return []
    # Plain multi-row INSERTs and one UPDATE: the ORM's per-object bookkeeping would cost
    # more than the database does here.
    ids = session.execute(
        insert(Prompt).returning(col(Prompt.id), sort_by_parameter_order=True), rows
    ).scalars()
    for text, prompt_id in zip(texts, ids, strict=True):
        text["prompt_id"] = prompt_id
    session.execute(insert(Message), texts)
    session.execute(
        update(Account)
        .where(col(Account.id).in_([r["account_id"] for r in rows]))
        .values(
            episode_prompts=Account.episode_prompts + 1,
            episode_last_prompt_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        MadeOffer(t["prompt_id"], t["account_id"], t["phone"], t["kind"], t["body"],
                  t["send_after"])
        for t in texts
    ]  # fmt: skip


def make_reply(
    session: Session, account: Account, settings: EffectiveSettings, *, now: datetime,
    config: EngineConfig,
) -> MadeOffer | None:  # fmt: skip
    """A fresh offer given as the reply to the subscriber's own text (never held: they just
    wrote to us). None when the account has no card on file."""
    assert account.id is not None
    card = _cards(session, [account.id]).get(account.id)
    if card is None:
        return None
    label = facts.labels_on_phone(session, account.phone).get(account.account_number)
    row = prompts.offer_row(account, settings, now=now, acceptable_after=now + READING_TIME,
                            label=label, card_token=card.token)  # fmt: skip
    prompt_id = session.execute(insert(Prompt).returning(col(Prompt.id)), row).scalar_one()
    body = _words(account, settings, card, row, now=now, voice=voice(session, config), label=label)
    return MadeOffer(prompt_id, account.id, account.phone, "offer", body, now)


def present_waiting(
    session: Session, prompt: Prompt, *, now: datetime, config: EngineConfig
) -> str | None:
    """The words of an offer that is live but cannot be accepted yet (its text waits in the
    outbox, or was sent as a reply a moment ago), given as the reply to a YES that came before
    the subscriber could have read it. The queued text is withdrawn (the reply carries it), and
    the offer becomes acceptable a reading moment from now. None when the card on file is gone
    or is no longer the one the offer named."""
    account = session.get(Account, prompt.account_id)
    assert account is not None
    assert account.id is not None
    card = _cards(session, [account.id]).get(account.id)
    if card is None or (prompt.card_token is not None and prompt.card_token != card.token):
        return None  # no card, or not the card this offer named: a fresh offer is needed
    assert prompt.id is not None
    prompts.present(session, prompt.id, acceptable_after=now + READING_TIME, now=now)
    session.execute(
        update(Message)
        .where(col(Message.prompt_id) == prompt.id, col(Message.status) == messages.PENDING)
        .values(status="canceled", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    settings = effective_for_account(session, account)
    row = {"amount_cents": prompt.amount_cents, "fee_cents": prompt.fee_cents,
           "expires_at": prompt.expires_at}  # fmt: skip
    label = facts.labels_on_phone(session, account.phone).get(account.account_number)
    return _words(account, settings, card, row, now=now, voice=voice(session, config), label=label)


def _cards(session: Session, account_ids: list[int]) -> dict[int, PaymentMethod]:
    if not account_ids:
        return {}
    return {
        m.account_id: m
        for m in session.exec(
            select(PaymentMethod).where(col(PaymentMethod.account_id).in_(account_ids))
        )
    }


def _words(
    account: Account,
    settings: EffectiveSettings,
    card: PaymentMethod,
    row: dict[str, Any],
    *,
    now: datetime,
    voice: replies.Voice,
    label: str | None,
) -> str:
    """The offer text, naming the account by its label among the accounts on its phone."""
    known = facts.account_facts_from(
        account, settings, card, deposited_last_24h_cents=0, label=label
    )
    return replies.offer(
        known, row["amount_cents"], row["fee_cents"], row["expires_at"], now=now, voice=voice
    )
