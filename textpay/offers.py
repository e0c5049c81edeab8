"""Making top-up offers: the one place an offer and the words that carry it are created.

The scan makes offers a batch at a time and queues their texts in the outbox, each text tied to
its offer (`Message.prompt_id`) and held until the recipient's sending window opens; such an
offer can be accepted only once its text has gone out (the dispatcher records when). An offer
made in answer to the subscriber's own text (their old offer expired or failed, or they asked
for a top-up: `ADD 20`) is the reply itself, and can be accepted a reading moment after it was
sent: two YES sent together after an offer expired make one fresh offer and charge nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import psycopg
from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, col, select

from textpay import episodes, facts, messages, prompts, quiet_hours, replies
from textpay.db import core, id_in, on_postgresql
from textpay.engine_config import EngineConfig, voice
from textpay.labels import label_among
from textpay.lowbalance import LowAccount
from textpay.models import (
    OPEN_PROMPT_STATUSES,
    Account,
    AttemptStatus,
    Message,
    PaymentMethod,
    Prompt,
)
from textpay.policy import (
    EffectiveSettings,
    delivery_rules_for,
    effective_for_account,
    get_global_settings,
    state_windows,
    text_zone,
)

# How long after an offer is sent as a reply before a YES may accept it: no one reads an offer
# and answers it faster, while a second YES typed together with the first arrives sooner.
READING_TIME = timedelta(seconds=10)


@dataclass(frozen=True)
class OfferRequest:
    account: LowAccount
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


@dataclass(frozen=True)
class _Place:
    """Where an account's texts go, for the sending window and the words: the zones the window
    must hold in, the window, and the zone its times are told in (named or not)."""

    zones: tuple[str, ...]
    window: tuple[time, time]
    text_zone: str
    zone_named: bool


@dataclass(frozen=True)
class _Card:
    token: str
    last4: str


@dataclass(frozen=True)
class BatchLookup:
    """What the scan reads about a batch of locked accounts besides their rows (PostgreSQL,
    `look_up`): those with an open offer or a charge in flight (`lowbalance.busy_accounts`),
    their cards, and their labels among the accounts on their phones."""

    busy: set[int]
    cards: dict[int, _Card]
    labels: dict[str, str]


# One statement for `BatchLookup`: the same predicates as `lowbalance.busy_accounts`,
# `_card_rows` and `facts.labels_on_phones`, each read through an index by account or phone.
_LOOK_UP = f"""
    SELECT a.id, a.account_number,
        EXISTS (SELECT 1 FROM prompt p WHERE p.account_id = a.id
                AND p.status IN ({", ".join(f"'{s}'" for s in OPEN_PROMPT_STATUSES)}))
        OR EXISTS (SELECT 1 FROM payment_attempt t WHERE t.account_id = a.id
                   AND t.status = '{AttemptStatus.PENDING.value}'),
        m.token, m.last4,
        ARRAY(SELECT b.account_number FROM account b WHERE b.phone = a.phone)
    FROM account a LEFT JOIN payment_method m ON m.account_id = a.id
    WHERE a.id = ANY(%(ids)s)
"""  # noqa: S608 (constants only; the ids are a parameter)


def look_up(session: Session, account_ids: Sequence[int]) -> BatchLookup:
    """PostgreSQL: `BatchLookup` for these accounts in one statement. The scan runs it after it
    has locked their rows, so that it sees every offer or charge committed before the locks were
    granted (a statement's snapshot is taken when it starts)."""
    driver = core(session).connection.driver_connection  # pending ORM changes flushed first
    assert isinstance(driver, psycopg.Connection)
    busy: set[int] = set()
    cards: dict[int, _Card] = {}
    named: dict[str, str] = {}
    with driver.cursor() as cursor:
        for account_id, number, taken, token, last4, on_phone in cursor.execute(
            _LOOK_UP, {"ids": list(account_ids)}
        ):
            if taken:
                busy.add(account_id)
            if token is not None:
                cards[account_id] = _Card(token, last4)
            named[number] = label_among(number, on_phone)
    return BatchLookup(busy, cards, named)


def make_queued(
    session: Session,
    requests: Sequence[OfferRequest],
    *,
    now: datetime,
    config: EngineConfig,
    lookup: BatchLookup | None = None,
) -> list[MadeOffer]:
    """The scan's offers for a batch of accounts: one INSERT for the offers, one for their
    texts (held until each recipient's window opens) and one UPDATE counting them in the
    accounts' episodes (on PostgreSQL, the three in one statement: `_write_offers`). A conflict
    (another scan made one first) fails the whole batch, which the caller undoes and retries
    one account at a time. Accounts without a card are left out: there is nothing to charge
    until an operator adds one.

    Thousands of accounts share a few places, settings and languages: the place and sending
    time of each (zones, window), and the words of each language, are worked out once a batch,
    by the same rules `make_reply` applies one account at a time (tests compare the two).
    `lookup`: the batch's cards and labels, when the caller read them already (`look_up`)."""
    if lookup is None:
        cards = _card_rows(session, [r.account.id for r in requests])
        names = facts.labels_on_phones(session, {r.account.phone for r in requests})
    else:
        cards, names = lookup.cards, lookup.labels
    windows = state_windows(get_global_settings(session))
    spoken = voice(session, config)
    places: dict[tuple[object, ...], _Place] = {}
    send_times: dict[tuple[tuple[str, ...], tuple[time, time]], datetime] = {}
    words: dict[str, replies.OfferWords] = {}
    rows: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    for request in requests:
        account, settings = request.account, request.settings
        card = cards.get(account.id)
        if card is None:
            continue
        place = _place_of(account, settings, windows, places)
        send_at = send_times.get((place.zones, place.window))
        if send_at is None:
            send_at = quiet_hours.next_allowed(now, place.zones, place.window)
            send_times[place.zones, place.window] = send_at
        label = names.get(account.account_number)
        row = prompts.offer_row(account, settings, now=now, starts_at=send_at, label=label,
                                card_token=card.token)  # fmt: skip
        language = words.get(account.language)
        if language is None:
            language = words[account.language] = replies.OfferWords(account.language, spoken)
        body = language.render(
            label=label or account.account_number[-4:],
            nickname=account.nickname,
            balance_cents=account.balance_cents,
            balance_as_of=account.balance_updated_at,
            card_last4=card.last4,
            amount_cents=row["amount_cents"],
            fee_cents=row["fee_cents"],
            expires_at=row["expires_at"],
            now=send_at,
            zone=place.text_zone,
            zone_named=place.zone_named,
            runway_days=episodes.runway_days_left(account, now=now),
        )
        rows.append(row)
        texts.append(
            messages.outbound_row(phone=account.phone, account_id=account.id, body=body,
                                  kind=request.kind, now=now, send_after=send_at,
                                  engine_initiated=True)
        )  # fmt: skip
    if not rows:
        return []
    if on_postgresql(session):
        for text, prompt_id in zip(texts, _write_offers(session, rows, texts, now=now),
                                   strict=True):  # fmt: skip
            text["prompt_id"] = prompt_id
    else:
        for text, prompt_id in zip(texts, _insert_prompts(session, rows), strict=True):
            text["prompt_id"] = prompt_id
        session.execute(insert(Message), texts)
        session.execute(
            update(Account)
            .where(id_in(session, Account.id, [r["account_id"] for r in rows]))
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


def _place_of(
    account: LowAccount,
    settings: EffectiveSettings,
    windows: dict[str, tuple[str, str]],
    known: dict[tuple[object, ...], _Place],
) -> _Place:
    """The account's place, from `known` when an account with the same zone fields, facility
    zone and window was placed before (the rules read nothing else of the account)."""
    key = (
        account.timezone,
        account.phone_state,
        account.phone_zones,
        "" if account.phone_zones else account.phone,  # read only when no zones are stored
        settings.facility_timezone,
        settings.quiet_hours_start,
        settings.quiet_hours_end,
    )
    place = known.get(key)
    if place is None:
        rules = delivery_rules_for(account, settings, windows)
        zone, named = text_zone(account, settings.facility_timezone)
        place = known[key] = _Place(rules.zones, rules.window, zone, named)
    return place


def _card_rows(session: Session, account_ids: list[int]) -> dict[int, _Card]:
    """Each account's card on file, as plain rows."""
    if not account_ids:
        return {}
    statement = select(PaymentMethod.account_id, PaymentMethod.token, PaymentMethod.last4).where(
        id_in(session, PaymentMethod.account_id, account_ids)
    )
    return {
        account_id: _Card(token, last4) for account_id, token, last4 in session.execute(statement)
    }


def _insert_prompts(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """SQLite: insert offers; their ids, in the rows' order (SQLAlchemy's insertmanyvalues:
    multi-row INSERTs, ids matched to the rows' order)."""
    ids = session.execute(
        insert(Prompt).returning(col(Prompt.id), sort_by_parameter_order=True), rows
    ).scalars()
    return list(ids)


def _write_offers(
    session: Session, rows: list[dict[str, Any]], texts: list[dict[str, Any]], *, now: datetime
) -> list[int]:
    """PostgreSQL: the batch's offers, their texts (each tied to its offer by account: one open
    offer per account) and the episode counters in one statement; the offers' ids, in the rows'
    order. The counters' `UPDATE` joins the new offers, so it counts exactly the accounts
    offered, and a conflict (another scanner's offer) fails all three together.

    The rows go as `INSERT ... SELECT FROM unnest(<one array per column>)` in psycopg's binary
    format: one parameter per column instead of one per value (whose placeholders psycopg would
    parse anew for every batch, and whose strings it would quote one by one), as fast as COPY,
    and it returns the new ids. A column with the same value in every row (a status, the
    moment) goes as that one value. Each value still goes through its column's conversion (UTC
    times refuse naive ones), and errors come out as SQLAlchemy's (a unique violation is an
    `IntegrityError`), as from any other statement."""
    params: dict[str, Any] = {}
    offer_names, offer_select = _unnest(session, Prompt, rows, params, prefix="o")
    text_names, text_select = _unnest(session, Message, texts, params, prefix="t")
    moment = Account.__table__.c["updated_at"].type.bind_processor(  # type: ignore[attr-defined]
        session.get_bind().dialect
    )
    params["now"] = moment(now) if moment else now
    # Names from the models, values as parameters.
    statement = f"""
        WITH offer AS (
            INSERT INTO prompt ({", ".join(offer_names)}) {offer_select}
            RETURNING account_id, id
        ), queued AS (
            INSERT INTO message ({", ".join(text_names)}, prompt_id)
            SELECT {", ".join(f"t.{name}" for name in text_names)}, offer.id
            FROM ({text_select}) AS t JOIN offer ON offer.account_id = t.account_id
        ), counted AS (
            UPDATE account SET episode_prompts = episode_prompts + 1,
                episode_last_prompt_at = %(now)b, updated_at = %(now)b
            FROM offer WHERE account.id = offer.account_id
        )
        SELECT account_id, id FROM offer
    """  # noqa: S608
    dialect = session.get_bind().dialect
    driver = core(session).connection.driver_connection  # pending ORM changes flushed first
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor(binary=True) as cursor:
            by_account = dict(cursor.execute(statement, params).fetchall())
    except psycopg.Error as error:
        raise DBAPIError.instance(statement, None, error, psycopg.Error, hide_parameters=True,
                                  dialect=dialect) from error  # fmt: skip
    return [by_account[row["account_id"]] for row in rows]


def _unnest(
    session: Session,
    model: type[SQLModel],
    rows: list[dict[str, Any]],
    params: dict[str, Any],
    *,
    prefix: str,
) -> tuple[list[str], str]:
    """The rows as `SELECT <columns> FROM unnest(<arrays>)`: each column an array, or one value
    when every row has the same (`account_id`, the join key, is always an array). Returns the
    column names, in the select's order, and the select; adds its values to `params`."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect
    selected: list[str] = []
    arrays: list[str] = []
    casts: list[str] = []
    names = list(rows[0])
    for i, name in enumerate(names):
        values = [row[name] for row in rows]
        convert = table.c[name].type.bind_processor(dialect)
        sql_type = table.c[name].type.compile(dialect=dialect)
        key = f"{prefix}{i}"
        if name != "account_id" and values.count(values[0]) == len(values):
            params[key] = convert(values[0]) if convert else values[0]
            selected.append(f"%({key})b::{sql_type} AS {name}")
            continue
        params[key] = [convert(v) for v in values] if convert else values
        arrays.append(name)
        casts.append(f"%({key})b::{sql_type}[]")
        selected.append(f"u.{name}")
    unnested = f"unnest({', '.join(casts)}) AS u({', '.join(arrays)})"
    return names, f"SELECT {', '.join(selected)} FROM {unnested}"  # noqa: S608 (names from the model)


def make_reply(
    session: Session, account: Account, settings: EffectiveSettings, *, now: datetime,
    config: EngineConfig, amount_cents: int | None = None, words: str = "offer",
) -> MadeOffer | None:  # fmt: skip
    """A fresh offer given as the reply to the subscriber's own text (never held: they just
    wrote to us), for `amount_cents` (None: the preset), in the words of template `words`
    ("offer", or "top_up" for a top-up asked for by text). None when the account has no card
    on file."""
    assert account.id is not None
    card = _cards(session, [account.id]).get(account.id)
    if card is None:
        return None
    label = facts.labels_on_phone(session, account.phone).get(account.account_number)
    row = prompts.offer_row(account, settings, now=now, acceptable_after=now + READING_TIME,
                            label=label, card_token=card.token,
                            amount_cents=amount_cents)  # fmt: skip
    prompt_id = session.execute(insert(Prompt).returning(col(Prompt.id)), row).scalar_one()
    body = _words(account, settings, card, row, now=now, voice=voice(session, config), label=label,
                  key=words)  # fmt: skip
    return MadeOffer(prompt_id, account.id, account.phone, "offer", body, now)


def present_waiting(
    session: Session, prompt: Prompt, *, now: datetime, config: EngineConfig, words: str = "offer"
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
    return _words(account, settings, card, row, now=now, voice=voice(session, config), label=label,
                  key=words)  # fmt: skip


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
    key: str = "offer",
) -> str:
    """The offer text (template `key`), naming the account by its label among the accounts on
    its phone."""
    known = facts.account_facts_from(
        account, settings, card, deposited_last_24h_cents=0, label=label, now=now
    )
    return replies.offer(
        known, row["amount_cents"], row["fee_cents"], row["expires_at"], now=now, voice=voice,
        key=key,
    )  # fmt: skip
