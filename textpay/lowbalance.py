"""The low-balance scan: which accounts need an offer, a reminder or an AutoPay charge now.

Reads only low accounts: the partial index on balance (enrolled, reachable, active accounts)
is range-scanned below the highest threshold in force, then each account is checked against its
own effective threshold. An account gets one offer per low-balance episode and one reminder
after the cooldown; an AutoPay account is charged instead, once per episode, unless a decline
has it waiting for its retry. The offers themselves are made by `textpay.offers`.

The runway rule (`textpay.runway`, setting `runway_days`) makes a TextPay account low too when
the calls its balance buys at its usual pace fall below that many days, whatever its balance.
Those accounts are found through their own partial index, `ix_account_runway_scan`, keyed by
the hours of calls each balance buys at the pace stored with its latest charge: a range scan
below the largest `runway_days` in force, and nothing at all when the rule is off everywhere.
AutoPay accounts are left to their threshold: a runway never starts a charge nobody asked for.
An account low by either rule is in an episode until it is low by neither (`episodes.is_low`).

The scan reads the low accounts as plain rows (`LowAccount`), not ORM objects: it reads tens of
thousands of them, and building and tracking an ORM object per account cost more than the
database did. On PostgreSQL a list of ids goes as one array parameter (`= ANY`), so that the
statement stays short and the same for every batch. There the rows are read through the
driver's own cursor (`_driver_rows`): SQLAlchemy's per-value result processing of tens of
thousands of rows cost more than the database's work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import func, text
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay import autopay, episodes
from textpay.db import columns_of, core, id_in, on_postgresql
from textpay.models import (
    ACCOUNT_IN_EPISODE,
    OPEN_PROMPT_STATUSES,
    RUNWAY_HOURS,
    RUNWAY_SCANNABLE,
    SCANNABLE_ACCOUNT,
    Account,
    AccountStatus,
    AttemptStatus,
    Facility,
    GlobalSettings,
    PaymentAttempt,
    Prompt,
)
from textpay.policy import (
    EffectiveSettings,
    get_global_settings,
    resolve,
)

_CHUNK = 500


class LowAccount(NamedTuple):
    """What the scan reads of a low account: what decides its action, its settings and its
    offer's words and sending time. A plain row, read with `low_account_columns` (a named
    tuple: the scan makes one per low account twice, and a dataclass took twice as long)."""

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
    status: str
    opted_out: bool
    balance_cents: int
    balance_updated_at: datetime
    episode_prompts: int
    episode_last_prompt_at: datetime | None
    episode_autopay_charges: int
    autopay_retry_at: datetime | None
    runway_days: int | None
    usage_pace_cents: int | None
    usage_pace_hours: int | None
    usage_pace_until: datetime | None


def low_account_columns() -> list[Any]:
    """The account columns `LowAccount` is made of, in its order."""
    return columns_of(Account, LowAccount)


# `LowAccount`'s columns as SQL, and which of them are moments, for `_driver_rows`.
_COLUMNS_SQL = ", ".join(LowAccount._fields)
_MOMENTS = tuple(
    i
    for i, name in enumerate(LowAccount._fields)
    if "datetime" in str(LowAccount.__annotations__[name])
)


def _driver_rows(session: Session, sql: str, params: dict[str, Any]) -> list[LowAccount]:
    """PostgreSQL: `LowAccount` rows of `sql` (which selects `_COLUMNS_SQL`), read through the
    driver's cursor in the session's transaction. Moments come out as aware UTC, as the
    `UTCDateTime` columns give them."""
    driver = core(session).connection.driver_connection  # pending ORM changes flushed first
    assert isinstance(driver, psycopg.Connection)
    found = []
    with driver.cursor() as cursor:
        for row in cursor.execute(sql, params):
            values = list(row)
            for i in _MOMENTS:
                if values[i] is not None:
                    values[i] = values[i].astimezone(UTC)
            found.append(LowAccount._make(values))
    return found


class Action(StrEnum):
    PROMPT = "prompt"
    REMINDER = "reminder"
    AUTOPAY = "autopay"


@dataclass(frozen=True)
class Candidate:
    account: LowAccount
    settings: EffectiveSettings
    action: Action


@dataclass
class Plan:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: int = 0
    rearmed: int = 0


def low_accounts_query(ceiling: int) -> SelectOfScalar[Account]:
    """Enrolled, reachable, active accounts with a balance below `ceiling`: a range scan of the
    partial index `ix_account_low_balance_scan`, whatever the number of healthy accounts."""
    return select(Account).where(col(Account.balance_cents) < ceiling, text(SCANNABLE_ACCOUNT))


def runway_accounts_query(hours_ceiling: int) -> SelectOfScalar[Account]:
    """TextPay accounts whose balance buys fewer than `hours_ceiling` hours of calls at their
    stored pace: a range scan of the partial index `ix_account_runway_scan`."""
    return select(Account).where(text(f"{RUNWAY_HOURS} < {int(hours_ceiling)}"),
                                 text(RUNWAY_SCANNABLE))  # fmt: skip


def in_episode_query() -> SelectOfScalar[Account]:
    return select(Account).where(text(ACCOUNT_IN_EPISODE))


def low_accounts(session: Session, *, ceiling: int) -> list[LowAccount]:
    """The low accounts as rows, by id. The same WHERE as `low_accounts_query` (whose plan
    `tests/db/test_query_plans.py` checks), selecting only the columns the scan reads."""
    if on_postgresql(session):
        return _driver_rows(
            session,
            f"SELECT {_COLUMNS_SQL} FROM account WHERE balance_cents < %(ceiling)s "  # noqa: S608
            f"AND {SCANNABLE_ACCOUNT} ORDER BY id",
            {"ceiling": ceiling},
        )
    statement = low_accounts_query(ceiling).with_only_columns(*low_account_columns())
    rows = session.execute(statement.order_by(col(Account.id)))
    return [LowAccount(*row) for row in rows]


def runway_accounts(
    session: Session, *, days_ceiling: int, now: datetime, balance_from: int = 0
) -> list[LowAccount]:
    """The accounts `runway_accounts_query` finds, as rows, leaving out paces that lapsed and
    balances under `balance_from` (those `low_accounts` read already)."""
    if on_postgresql(session):
        return _driver_rows(
            session,
            # The hours written out, as in `runway_accounts_query`.
            f"SELECT {_COLUMNS_SQL} FROM account WHERE {RUNWAY_HOURS} < {int(days_ceiling * 24)} "  # noqa: S608
            f"AND {RUNWAY_SCANNABLE} AND usage_pace_until > %(now)s "
            "AND balance_cents >= %(balance_from)s ORDER BY id",
            {"now": now, "balance_from": balance_from},
        )
    statement = runway_accounts_query(days_ceiling * 24).with_only_columns(*low_account_columns())
    statement = statement.where(
        col(Account.usage_pace_until) > now, col(Account.balance_cents) >= balance_from
    )
    rows = session.execute(statement.order_by(col(Account.id)))
    return [LowAccount(*row) for row in rows]


def locked(session: Session, ids: Sequence[int]) -> dict[int, LowAccount]:
    """These accounts' fresh rows, locked (on PostgreSQL) until the transaction ends."""
    if on_postgresql(session):
        rows = _driver_rows(
            session,
            f"SELECT {_COLUMNS_SQL} FROM account WHERE id = ANY(%(ids)s) FOR UPDATE",  # noqa: S608
            {"ids": list(ids)},
        )
        return {row.id: row for row in rows}
    statement = (
        select(*low_account_columns()).where(id_in(session, Account.id, ids)).with_for_update()
    )
    accounts = [LowAccount(*row) for row in session.execute(statement)]
    return {account.id: account for account in accounts}


def plan(session: Session, *, now: datetime) -> Plan:
    """Decide, without writing anything but re-armed episodes, what the scan should do."""
    rearmed = _rearm_recovered(session, now=now)
    result = _decide(session, now=now)
    result.rearmed = rearmed
    return result


def eligible_now(session: Session, *, now: datetime) -> Counter[Action]:
    """How many accounts a scan run now would act on, by action (an offer, a reminder, an
    AutoPay charge): the scan's own decision, read-only. (The scan first re-arms episodes whose
    balance is back at its threshold; those accounts are not below it, so they count for
    nothing either way.) The console's settings preview compares this before and after a
    change, in a transaction it rolls back."""
    return Counter(candidate.action for candidate in _decide(session, now=now).candidates)


def _decide(session: Session, *, now: datetime) -> Plan:
    global_settings = get_global_settings(session)
    facilities = {f.id: f for f in session.exec(select(Facility))}
    result = Plan()
    highest_override = session.exec(select(func.max(Account.threshold_cents))).one() or 0
    ceiling = max(
        [global_settings.low_balance_threshold_cents, highest_override]
        + [f.low_balance_threshold_cents or 0 for f in facilities.values()]
    )
    low = low_accounts(session, ceiling=ceiling)
    days_ceiling = _highest_runway_days(session, global_settings, facilities.values())
    if days_ceiling:
        seen = {a.id for a in low}
        short = runway_accounts(session, days_ceiling=days_ceiling, now=now,
                                balance_from=ceiling)  # fmt: skip
        low = sorted([*low, *(a for a in short if a.id not in seen)], key=lambda a: a.id)
    busy = busy_accounts(session, [a.id for a in low])
    # Accounts with the same facility and overrides share their settings: resolved once each.
    resolved: dict[tuple[int | None, int | None, int | None, int | None], EffectiveSettings] = {}
    for account in low:
        key = (account.facility_id, account.threshold_cents, account.preset_amount_cents,
               account.runway_days)  # fmt: skip
        settings = resolved.get(key)
        if settings is None:
            settings = resolve(global_settings, facilities.get(account.facility_id), account)
            resolved[key] = settings
        if not episodes.is_low(account, settings, now=now):
            continue  # low for someone else's threshold or runway, not its own
        action = action_for(account, settings, busy, now=now)
        if action is None:
            result.skipped += 1
        else:
            result.candidates.append(Candidate(account, settings, action))
    return result


def _highest_runway_days(
    session: Session, global_settings: GlobalSettings, facilities: Iterable[Facility]
) -> int:
    """The largest `runway_days` in force anywhere (0: the rule is off everywhere)."""
    highest_override = session.exec(select(func.max(Account.runway_days))).one() or 0
    return max(
        [global_settings.runway_days or 0, highest_override]
        + [f.runway_days or 0 for f in facilities]
    )


def action_for(
    account: LowAccount, settings: EffectiveSettings, busy: set[int], *, now: datetime
) -> Action | None:
    """What a low account needs now, if anything. `busy` holds the accounts with an open offer
    or a charge in flight. The scan re-checks this on each account's fresh row, so it repeats
    what the scan's index query implies: an operator may have suspended or closed the account,
    or the number may have opted out, since the plan was made."""
    if account.id in busy or account.opted_out:
        return None
    if account.status != AccountStatus.ACTIVE.value:
        return None
    if account.autopay_enabled:
        # One AutoPay charge per episode; after a decline, nothing until the retry is due.
        return Action.AUTOPAY if autopay.due(account, now=now) else None
    if not account.textpay_enabled:
        return None
    if account.episode_prompts == 0:
        return Action.PROMPT
    cooldown = timedelta(hours=settings.prompt_cooldown_hours)
    last = account.episode_last_prompt_at
    if account.episode_prompts == 1 and last is not None and last + cooldown <= now:
        return Action.REMINDER
    return None


def _chunks(session: Session, ids: list[int]) -> Iterator[list[int]]:
    """SQLite takes a bounded number of parameters; PostgreSQL's array takes them all at once."""
    step = (len(ids) or 1) if on_postgresql(session) else _CHUNK
    for start in range(0, len(ids), step):
        yield ids[start : start + step]


def busy_accounts(session: Session, ids: list[int]) -> set[int]:
    """Of these accounts, those with an open offer or a charge in flight."""
    return _with_open_prompt(session, ids) | _with_charge_in_flight(session, ids)


def _with_open_prompt(session: Session, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(session, ids):
        found.update(
            session.exec(
                select(Prompt.account_id).where(
                    id_in(session, Prompt.account_id, chunk),
                    col(Prompt.status).in_(OPEN_PROMPT_STATUSES),
                )
            )
        )
    return found


def _with_charge_in_flight(session: Session, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(session, ids):
        found.update(
            session.exec(
                select(PaymentAttempt.account_id).where(
                    id_in(session, PaymentAttempt.account_id, chunk),
                    PaymentAttempt.status == AttemptStatus.PENDING.value,
                )
            )
        )
    return found


def _rearm_recovered(session: Session, *, now: datetime) -> int:
    """End the episodes of accounts back at their threshold that no money event re-armed (an
    operator lowered a threshold or a runway setting); a runway that only drifted back does not
    end one (`episodes.recovered_without_money`)."""
    in_episode = session.exec(in_episode_query())
    count = 0
    for account in in_episode:
        if episodes.rearm_if_healthy(session, account, now=now, money_in=False):
            count += 1
    return count
