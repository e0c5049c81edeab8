"""The database tables, as typed SQLModel classes.

Owns the schema: global settings, facilities and their overrides, accounts, stored payment
methods, the append-only ledger, sandbox gateway charges and the operator audit log. Constraints
here are the last line of defence for the money rules: unique references make postings
idempotent, `balance_cents >= 0` keeps prepaid accounts prepaid, and triggers refuse to edit or
delete a ledger entry.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from textpay.quiet_hours import DEFAULT_STATE_WINDOWS
from textpay.timeutil import UTCDateTime, utcnow

# The largest row id: every `id` column is a 32-bit INTEGER on PostgreSQL (SERIAL). An id above
# it names nothing that can exist, so the edges answer 404 (in a path) or 422 (in a query)
# instead of sending it to the database, which refuses to compare it.
ID_MAX = 2**31 - 1


def fit(table: type[SQLModel], column: str, value: str | None) -> str | None:
    """`value` as `table.column` can hold it: NUL removed (PostgreSQL refuses it in text) and
    cut to the column's length. For values recorded from outside (a gateway's decline reason
    or charge id, Twilio's error code), which must never make a write fail."""
    if value is None:
        return None
    length = table.__table__.c[column].type.length  # type: ignore[attr-defined]
    cleaned = value.replace("\x00", "")
    return cleaned[:length] if length else cleaned


def _timestamp(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow,
        sa_column_kwargs={"nullable": nullable},
        sa_type=UTCDateTime,
        index=index,
    )


def _cents(*, nullable: bool = False, default: int | None = None) -> Any:
    return Field(default=default, sa_type=BigInteger, nullable=nullable)


# Predicates of the partial indexes. The queries that should use an index repeat its predicate
# word for word (SQLite only uses a partial index when the query's WHERE visibly implies it, and
# never through bound parameters), so each is written once, here.
SCANNABLE_ACCOUNT = "(textpay_enabled OR autopay_enabled) AND NOT opted_out AND status = 'active'"
ACCOUNT_IN_EPISODE = "episode_prompts > 0 OR autopay_failures > 0 OR episode_autopay_charges > 0"
# Accounts the runway rule may offer to (`textpay.runway`): TextPay on without AutoPay (runway
# never starts a charge nobody asked for), reachable, active, with a usual pace on record.
RUNWAY_SCANNABLE = (
    "textpay_enabled AND NOT autopay_enabled AND NOT opted_out AND status = 'active' "
    "AND usage_pace_cents IS NOT NULL"
)
# Hours of calls the balance buys at the stored pace, rounded down: the runway index's key.
RUNWAY_HOURS = "balance_cents * usage_pace_hours / usage_pace_cents"
USAGE_ENTRY = "kind = 'usage'"
DEPOSIT_ENTRY = "kind = 'deposit'"
INBOUND_MESSAGE = "direction = 'inbound'"
WAITING_MESSAGE = "direction = 'outbound' AND status = 'pending'"
# Outbound texts not yet settled with Twilio: what `/metrics` counts as the outbox's depth.
OPEN_OUTBOUND_MESSAGE = "direction = 'outbound' AND status IN ('pending', 'dispatching', 'unknown')"
UNSETTLED_ATTEMPT = "status = 'pending'"
UNTOLD_ATTEMPT = "status <> 'pending' AND notified_at IS NULL"


class Language(StrEnum):
    ENGLISH = "en"
    SPANISH = "es"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class LedgerKind(StrEnum):
    DEPOSIT = "deposit"  # money in from the subscriber's card
    USAGE = "usage"  # call charges posted by the calling platform
    CREDIT = "credit"  # goodwill credit from an operator
    REFUND = "refund"  # a charge given back to the account by an operator
    FEE = "fee"  # a fee taken from the balance
    ADJUSTMENT = "adjustment"  # an operator correction, either sign
    CARD_REFUND = "card_refund"  # money given back to the card a deposit came from


# The sign each kind of entry must carry; 0 means either sign is allowed.
LEDGER_KIND_SIGN: dict[LedgerKind, int] = {
    LedgerKind.DEPOSIT: 1,
    LedgerKind.USAGE: -1,
    LedgerKind.CREDIT: 1,
    LedgerKind.REFUND: 1,
    LedgerKind.FEE: -1,
    LedgerKind.ADJUSTMENT: 0,
    LedgerKind.CARD_REFUND: -1,
}

# Field names shared by the global settings row and each facility's overrides, in display order.
SETTING_FIELDS: tuple[str, ...] = (
    "low_balance_threshold_cents",
    "preset_amount_cents",
    "min_deposit_cents",
    "max_deposit_cents",
    "daily_deposit_limit_cents",
    "deposit_fee_cents",
    "prompt_ttl_minutes",
    "prompt_cooldown_hours",
    "quiet_hours_start",
    "quiet_hours_end",
    "daily_message_cap",
    "runway_days",
    # Passcode rules (`textpay.passcodes`): null at every level means the rule never applies.
    "passcode_over_cents",
    "passcode_new_phone_days",
)
# Settings whose global value may be null (the rule they set is off); every other setting
# always has a global value.
NULLABLE_SETTINGS: frozenset[str] = frozenset(
    {"runway_days", "passcode_over_cents", "passcode_new_phone_days"}
)


class GlobalSettings(SQLModel, table=True):
    """Operator defaults; a single row with id 1. Facilities and accounts override them."""

    __tablename__ = "global_settings"
    __table_args__ = (CheckConstraint("id = 1", name="ck_global_settings_single_row"),)

    id: int = Field(default=1, primary_key=True)
    low_balance_threshold_cents: int = _cents(default=500)
    preset_amount_cents: int = _cents(default=2500)
    min_deposit_cents: int = _cents(default=500)
    # The FCC requires that deposits of at least $50 be allowed; the default leaves room above it.
    max_deposit_cents: int = _cents(default=20_000)
    daily_deposit_limit_cents: int = _cents(default=50_000)
    deposit_fee_cents: int = _cents(default=0)
    prompt_ttl_minutes: int = Field(default=24 * 60)
    prompt_cooldown_hours: int = Field(default=72)
    quiet_hours_start: str = Field(default="08:00", max_length=5)
    quiet_hours_end: str = Field(default="21:00", max_length=5)
    daily_message_cap: int = Field(default=3)
    # Offer also when the calls left at the usual pace fall below this many days (null: off).
    runway_days: int | None = Field(default=None)
    # A YES adding more than this (cents), or from a phone on its account for fewer than this
    # many days, needs the account's passcode, when it has one. Null: never.
    passcode_over_cents: int | None = _cents(nullable=True)
    passcode_new_phone_days: int | None = Field(default=None)
    # Per-state sending windows stricter than the default: {"FL": ["08:00", "20:00"], ...}.
    state_quiet_hours: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_STATE_WINDOWS.items()},
        sa_column=Column(JSON, nullable=False),
    )
    updated_at: datetime = _timestamp()


class Facility(SQLModel, table=True):
    """A facility (prison, jail) whose accounts share overrides of the global settings.

    Every override column is nullable: null means "inherit the global value".
    """

    __tablename__ = "facility"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(default="", max_length=200)
    # Where the facility is (IANA name): the zone for its accounts whose own zone is unknown and
    # whose number has no usable area code (toll-free, non-geographic).
    timezone: str | None = Field(default=None, max_length=64)
    low_balance_threshold_cents: int | None = _cents(nullable=True)
    preset_amount_cents: int | None = _cents(nullable=True)
    min_deposit_cents: int | None = _cents(nullable=True)
    max_deposit_cents: int | None = _cents(nullable=True)
    daily_deposit_limit_cents: int | None = _cents(nullable=True)
    deposit_fee_cents: int | None = _cents(nullable=True)
    prompt_ttl_minutes: int | None = Field(default=None)
    prompt_cooldown_hours: int | None = Field(default=None)
    quiet_hours_start: str | None = Field(default=None, max_length=5)
    quiet_hours_end: str | None = Field(default=None, max_length=5)
    daily_message_cap: int | None = Field(default=None)
    runway_days: int | None = Field(default=None)
    passcode_over_cents: int | None = _cents(nullable=True)
    passcode_new_phone_days: int | None = Field(default=None)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Account(SQLModel, table=True):
    """A prepaid calling account and the phone that owns it.

    `balance_cents` is a cache of the sum of the account's ledger entries, updated only by
    `textpay.ledger.post` in the same transaction as the entry.
    """

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint("balance_cents >= 0", name="ck_account_balance_not_negative"),
        CheckConstraint("language IN ('en', 'es')", name="ck_account_language"),
        CheckConstraint("status IN ('active', 'suspended', 'closed')", name="ck_account_status"),
        # The low-balance scan reads only this index: enrolled, reachable, active accounts, ordered
        # by balance, so "balance below threshold" is a short range scan however many accounts
        # are healthy.
        Index(
            "ix_account_low_balance_scan",
            "balance_cents",
            postgresql_where=text(SCANNABLE_ACCOUNT),
            sqlite_where=text(SCANNABLE_ACCOUNT),
        ),
        # Accounts in a low-balance episode, for the sweep that re-arms them once topped up.
        Index(
            "ix_account_in_episode",
            "balance_cents",
            postgresql_where=text(ACCOUNT_IN_EPISODE),
            sqlite_where=text(ACCOUNT_IN_EPISODE),
        ),
        # The runway rule's accounts by the hours of calls their balance buys, so "runway below
        # N days" is a range scan too, whatever the number of accounts (`textpay.lowbalance`).
        Index(
            "ix_account_runway_scan",
            text(f"({RUNWAY_HOURS})"),
            postgresql_where=text(RUNWAY_SCANNABLE),
            sqlite_where=text(RUNWAY_SCANNABLE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_number: str = Field(max_length=40, unique=True)
    phone: str = Field(max_length=16, index=True)  # E.164
    # Where the number's area code is, worked out once when the phone is set (the scan would
    # otherwise parse every low account's number): its US state and every zone it spans.
    phone_state: str | None = Field(default=None, max_length=2)
    phone_zones: str = Field(default="", max_length=200)  # comma-separated IANA names
    nickname: str = Field(default="", max_length=40)
    language: str = Field(default=Language.ENGLISH.value, max_length=2)
    timezone: str | None = Field(default=None, max_length=64)
    facility_id: int | None = Field(
        default=None, sa_column_args=[ForeignKey("facility.id")], index=True
    )
    textpay_enabled: bool = Field(default=True)
    autopay_enabled: bool = Field(default=False)
    preset_amount_cents: int | None = _cents(nullable=True)
    # Indexed so that the scan finds the highest override without reading every account.
    threshold_cents: int | None = Field(default=None, sa_type=BigInteger, index=True)
    # The account's own runway setting (null: its facility's, else the global one). Indexed,
    # like the threshold, for the scan's highest value in force.
    runway_days: int | None = Field(default=None, index=True)
    # Its usual pace as of its latest call charge (`textpay.runway`): `usage_pace_cents` of
    # calls per `usage_pace_hours` hours, holding until `usage_pace_until`; all null without an
    # estimate. Written only by `textpay.balances.record_usage`, with the charge, all three at
    # once, cents and hours both positive (`textpay.runway.pace`). (No CHECK says so: SQLite
    # cannot add one to a table without rebuilding it, which its foreign keys forbid.)
    usage_pace_cents: int | None = _cents(nullable=True)
    usage_pace_hours: int | None = Field(default=None)
    usage_pace_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default=AccountStatus.ACTIVE.value, max_length=16)
    opted_out: bool = Field(default=False)
    opted_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    balance_cents: int = _cents(default=0)
    balance_updated_at: datetime = _timestamp()
    # The current low-balance episode: how many offers it has had and when the last went out.
    # Cleared ("re-armed") when the balance climbs back to the threshold; `episode_seq` counts
    # episodes and AutoPay restarts, so AutoPay's slots (one try each) are never reused.
    episode_seq: int = Field(default=0)
    episode_prompts: int = Field(default=0)
    episode_last_prompt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # AutoPay charges that succeeded in this episode: one is enough until the balance recovers.
    episode_autopay_charges: int = Field(default=0)
    # AutoPay declines in this episode, and when the next try is due.
    autopay_failures: int = Field(default=0)
    autopay_retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the phone became this account's: set at enrolment and whenever the number changes
    # (`passcode_new_phone_days` asks a new phone for the passcode).
    phone_since: datetime = _timestamp()
    # The subscriber's 4-digit passcode (`textpay.passcodes`): only a salted scrypt hash, never
    # the digits, never in the audit trail or an API answer. Wrong passcodes in a row (the
    # count restarts after a day without one), and the lock the third one sets.
    passcode_hash: str | None = Field(default=None, max_length=255)
    passcode_failures: int = Field(default=0)
    passcode_failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    passcode_locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The account's own passcode rules (null: the facility's, else the global ones).
    passcode_over_cents: int | None = _cents(nullable=True)
    passcode_new_phone_days: int | None = Field(default=None)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class PaymentMethod(SQLModel, table=True):
    """The card on file for an account: the gateway's opaque token and what may be shown of it.

    A card number is never stored: the token is all TextPay can charge, and brand/last 4/expiry
    are only for wording messages.
    """

    __tablename__ = "payment_method"
    # The daily card-expiry job reads the cards expiring around this month (`textpay.card_expiry`).
    __table_args__ = (Index("ix_payment_method_expiry", "exp_year", "exp_month"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")], unique=True)
    token: str = Field(max_length=255)
    # The processor's customer the card belongs to (Stripe's `cus_...`); None for the sandbox.
    customer: str | None = Field(default=None, max_length=255)
    brand: str = Field(default="card", max_length=20)
    last4: str = Field(max_length=4)
    exp_month: int | None = Field(default=None)
    exp_year: int | None = Field(default=None)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class LedgerEntry(SQLModel, table=True):
    """One movement of money on an account. Append-only: never updated, never deleted.

    `reference` is unique across the ledger and namespaced by its source (`usage:<ref>`,
    `credit:<idempotency key>`, ...), which is what makes every posting idempotent.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount_cents <> 0", name="ck_ledger_entry_nonzero"),
        CheckConstraint("balance_after_cents >= 0", name="ck_ledger_entry_balance_after"),
        CheckConstraint(
            "kind IN ('deposit', 'usage', 'credit', 'refund', 'fee', 'adjustment', 'card_refund')",
            name="ck_ledger_entry_kind",
        ),
        Index("ix_ledger_entry_account_id_id", "account_id", "id"),
        # An account's recent call charges, for its usual pace (`textpay.balances`).
        Index(
            "ix_ledger_entry_usage",
            "account_id",
            "created_at",
            postgresql_where=text(USAGE_ENTRY),
            sqlite_where=text(USAGE_ENTRY),
        ),
        # An account's deposits of the last 24 hours, for the daily limit (every YES and top-up
        # reads them): without it the sum read every entry the account ever had.
        Index(
            "ix_ledger_entry_deposit",
            "account_id",
            "created_at",
            postgresql_where=text(DEPOSIT_ENTRY),
            sqlite_where=text(DEPOSIT_ENTRY),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")])
    kind: str = Field(max_length=16)
    amount_cents: int = _cents()
    balance_after_cents: int = _cents()
    reference: str = Field(max_length=200, unique=True)
    memo: str = Field(default="", max_length=500)
    created_at: datetime = _timestamp()


class SandboxCharge(SQLModel, table=True):
    """The sandbox gateway's own record of the charges it has made, keyed by idempotency key.

    It stands for the processor's side of the wire: it is written by the gateway in its own
    transaction, never inside TextPay's, so a reconciler can ask it what really happened.
    """

    __tablename__ = "sandbox_charge"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    token: str = Field(max_length=255)
    amount_cents: int = _cents()
    initiator: str = Field(max_length=10)
    status: str = Field(max_length=16)
    decline_reason: str | None = Field(default=None, max_length=40)
    charge_id: str = Field(max_length=40, unique=True)
    created_at: datetime = _timestamp()
    settles_at: datetime = _timestamp()


class SandboxRefund(SQLModel, table=True):
    """The sandbox gateway's record of a refund of one of its charges, keyed by idempotency key."""

    __tablename__ = "sandbox_refund"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    charge_id: str = Field(max_length=40, index=True)
    amount_cents: int = _cents()
    status: str = Field(max_length=16)
    failure_reason: str | None = Field(default=None, max_length=40)
    refund_id: str = Field(max_length=40, unique=True)
    created_at: datetime = _timestamp()


class AuditLogEntry(SQLModel, table=True):
    """Who changed what, when, with the state before and after; one per operator change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=60)
    entity_type: str = Field(max_length=40)
    entity_id: str = Field(max_length=60)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _timestamp(index=True)


class PromptStatus(StrEnum):
    PENDING = "pending"  # offered, waiting for the subscriber
    ACCEPTED = "accepted"  # YES received; a charge is in flight
    FUNDED = "funded"  # charged and posted
    FAILED = "failed"  # the card was declined or the charge failed
    DECLINED = "declined"  # the subscriber said NO
    EXPIRED = "expired"  # nobody answered in time
    CANCELLED = "cancelled"  # STOP, or an operator, withdrew it


# A prompt in one of these states still holds its account: no second offer may be made.
OPEN_PROMPT_STATUSES = (PromptStatus.PENDING.value, PromptStatus.ACCEPTED.value)


class Prompt(SQLModel, table=True):
    """An offer to top up an account, made by text, answered by YES or NO.

    Every transition is a conditional update (`WHERE status = ...`) so that two replies racing
    for one prompt cannot both move it; the partial unique index allows one open prompt per
    account.
    """

    __tablename__ = "prompt"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'accepted', 'funded', 'failed', 'declined', 'expired',"
            " 'cancelled')",
            name="ck_prompt_status",
        ),
        Index(
            "ux_prompt_one_open_per_account",
            "account_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'accepted')"),
            sqlite_where=text("status IN ('pending', 'accepted')"),
        ),
        Index("ix_prompt_account_id_id", "account_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")])
    status: str = Field(default=PromptStatus.PENDING.value, max_length=16)
    amount_cents: int = _cents()  # what the offer proposed
    fee_cents: int = _cents(default=0)
    balance_at_offer_cents: int = _cents()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # How the offer's text named the account and which card it named: a YES naming that label
    # may mean this offer even after another account on the phone has taken the label, and a
    # card changed since the offer is not charged on its word (a fresh offer names the new one).
    label: str | None = Field(default=None, max_length=40)
    card_token: str | None = Field(default=None, max_length=255)
    # The first moment a YES may accept this offer: when its text left (the dispatcher's send,
    # or a reply's answer plus a moment to read it). Null while the text waits in the outbox:
    # a subscriber cannot accept an offer they have not been sent.
    acceptable_after: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A YES that needed the account's passcode: when it was asked for and the amount that YES
    # asked for. The offer stays pending; the passcode, within `passcodes.ANSWER_WITHIN`,
    # accepts it for that amount as a YES would.
    passcode_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    passcode_amount_cents: int | None = _cents(nullable=True)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class AttemptStatus(StrEnum):
    PENDING = "pending"  # committed before the gateway call; settled after it
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    FAILED = "failed"


class PaymentAttempt(SQLModel, table=True):
    """One card charge, recorded before the gateway is called and settled after.

    The row committed before the call is what lets a reconciler finish a charge whose process
    died mid-call: it asks the gateway about `idempotency_key` and settles accordingly.
    """

    __tablename__ = "payment_attempt"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'declined', 'failed')",
            name="ck_payment_attempt_status",
        ),
        Index(
            "ix_payment_attempt_unsettled",
            "created_at",
            postgresql_where=text(UNSETTLED_ATTEMPT),
            sqlite_where=text(UNSETTLED_ATTEMPT),
        ),
        # Settled attempts whose outcome nobody has told yet: the reconciler's retry sweep.
        Index(
            "ix_payment_attempt_untold",
            "settled_at",
            postgresql_where=text(UNTOLD_ATTEMPT),
            sqlite_where=text(UNTOLD_ATTEMPT),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")], index=True)
    prompt_id: int | None = Field(
        default=None, sa_column_args=[ForeignKey("prompt.id")], unique=True
    )
    # Random (uuid4), made at phase 1 and sent to the gateway: never derived from database ids,
    # which repeat after a restore and would make a processor replay an old charge's result.
    idempotency_key: str = Field(max_length=100, unique=True)
    # AutoPay's one try per episode and decline count (`account:episode:failures`): a second
    # clock's try for the same slot fails on this key instead of charging again.
    autopay_slot: str | None = Field(default=None, max_length=100, unique=True)
    initiator: str = Field(max_length=10)
    status: str = Field(default=AttemptStatus.PENDING.value, max_length=16)
    amount_cents: int = _cents()  # credited to the account
    fee_cents: int = _cents(default=0)  # charged on top, not credited
    # The card charged, fixed at phase 1: a reconciler charges this one, never a card put on
    # file since, and the receipt names it.
    card_token: str = Field(default="", max_length=255)
    card_customer: str | None = Field(default=None, max_length=255)
    card_brand: str = Field(max_length=20)
    card_last4: str = Field(max_length=4)
    decline_reason: str | None = Field(default=None, max_length=40)
    charge_id: str | None = Field(default=None, max_length=60)
    confirmation: str = Field(max_length=12, unique=True)
    # Where to tell the subscriber the outcome when it is not known in time for the reply.
    notify_phone: str = Field(max_length=16)
    language: str = Field(default=Language.ENGLISH.value, max_length=2)
    created_at: datetime = _timestamp()
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the subscriber was told the outcome (the webhook's reply, or a queued text). Claimed
    # by a conditional update, so the outcome is told once; still null after settlement means
    # telling failed and the reconciler tries again.
    notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MessageDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Message(SQLModel, table=True):
    """Every text in and out. Inbound rows are keyed by Twilio's MessageSid and keep the reply
    we gave, so a retried webhook gets the same answer; outbound rows are the outbox.

    Outbound status: `pending` (waiting in our outbox) → `dispatching` (claimed by a
    dispatcher) → Twilio's own statuses (`queued`, `sent`, `delivered`, ...), or `failed`,
    `canceled` (withdrawn before it went: STOP, an offer no longer live, a phone moved),
    `withheld` (queued for a number already opted out: recorded, never sent), or `unknown`
    (sent, no answer: never re-sent, left for an operator).

    Bodies are stored with card-number-like digit runs already masked.
    """

    __tablename__ = "message"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound')", name="ck_message_direction"),
        Index("ix_message_phone_id", "phone", "id"),
        # The texts a number sent in the last minute, for the flood limit (read on every inbound
        # text): without it the count read every text the number ever sent or was sent.
        Index(
            "ix_message_inbound",
            "phone",
            "created_at",
            postgresql_where=text(INBOUND_MESSAGE),
            sqlite_where=text(INBOUND_MESSAGE),
        ),
        Index(
            "ix_message_outbox",
            "engine_initiated",
            "send_after",
            postgresql_where=text(WAITING_MESSAGE),
            sqlite_where=text(WAITING_MESSAGE),
        ),
        Index(
            "ix_message_open_outbound",
            "status",
            postgresql_where=text(OPEN_OUTBOUND_MESSAGE),
            sqlite_where=text(OPEN_OUTBOUND_MESSAGE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(max_length=8)
    phone: str = Field(max_length=16)  # the subscriber's number, E.164
    account_id: int | None = Field(default=None, sa_column_args=[ForeignKey("account.id")])
    # The offer an offer or reminder text carries: the dispatcher drops the text if the offer
    # is no longer live when its turn comes.
    prompt_id: int | None = Field(default=None, sa_column_args=[ForeignKey("prompt.id")])
    body: str = Field(default="", max_length=2000)
    kind: str = Field(default="", max_length=20)
    status: str = Field(max_length=16)
    send_after: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Texts TextPay starts itself (offers, AutoPay notices) obey quiet hours and the daily cap
    # and go after answers to the subscriber's own texts (receipts), which are never held.
    engine_initiated: bool = Field(default=False)
    attempts: int = Field(default=0)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    twilio_sid: str | None = Field(default=None, max_length=64, unique=True)
    error_code: str | None = Field(default=None, max_length=10)
    reply_body: str | None = Field(default=None, max_length=2000)
    # The web request that recorded an inbound text (its `X-Request-Id`), to find its log lines.
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class StatusReport(SQLModel, table=True):
    """A delivery status that arrived before we knew the message's SID.

    Twilio may call back within milliseconds of accepting a message, before the dispatcher has
    recorded the SID it was given; the report waits here and is applied when the SID is stored.
    """

    __tablename__ = "status_report"

    id: int | None = Field(default=None, primary_key=True)
    twilio_sid: str = Field(max_length=64, index=True)
    status: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=10)
    created_at: datetime = _timestamp()


class ScanStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ScanRun(SQLModel, table=True):
    """A low-balance scan an operator asked for (`POST /admin/scan`): queued by the web, run by
    a clock process, its counts kept for `GET /admin/scans/{id}`. Web workers never run jobs."""

    __tablename__ = "scan_run"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_scan_run_status"
        ),
        Index("ix_scan_run_status", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=ScanStatus.QUEUED.value, max_length=8)
    requested_by: str = Field(default="", max_length=100)
    prompted: int = Field(default=0)
    autopay_charged: int = Field(default=0)
    held: int = Field(default=0)
    skipped: int = Field(default=0)
    errors: int = Field(default=0)
    created_at: datetime = _timestamp()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    AUTOPAY_ON = "autopay_on"
    AUTOPAY_OFF = "autopay_off"


class PhoneConsent(SQLModel, table=True):
    """Whether a phone number may be texted: consent belongs to the number, not to an account.

    One row per number that ever said STOP or START (or was opted out by its carrier); a number
    with no row has said nothing and may be texted. `Account.opted_out` is a copy kept for the
    scan's index, written only by `textpay.consent` from this row. The history is in
    `consent_event`.
    """

    __tablename__ = "phone_consent"

    phone: str = Field(max_length=16, primary_key=True)  # E.164
    opted_out: bool = Field(default=False)
    changed_at: datetime = _timestamp()


class Lease(SQLModel, table=True):
    """A named lock held until `expires_at` by one process (the scan's leader on SQLite, which
    has no advisory locks). Taken by a conditional update, so two holders cannot overlap."""

    __tablename__ = "lease"

    name: str = Field(max_length=40, primary_key=True)
    holder: str = Field(default="", max_length=100)
    expires_at: datetime = _timestamp()


class ConsentEvent(SQLModel, table=True):
    """A subscriber's consent changing, with when and the words that changed it (TCPA records)."""

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_phone", "phone", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(max_length=16)
    account_id: int | None = Field(default=None, sa_column_args=[ForeignKey("account.id")])
    kind: str = Field(max_length=16)
    words: str = Field(default="", max_length=200)
    source: str = Field(max_length=20)  # sms, carrier (error 21610), admin
    created_at: datetime = _timestamp()


__all__ = [
    "ID_MAX",
    "LEDGER_KIND_SIGN",
    "NULLABLE_SETTINGS",
    "OPEN_PROMPT_STATUSES",
    "SETTING_FIELDS",
    "Account",
    "AccountStatus",
    "AttemptStatus",
    "AuditLogEntry",
    "CardLink",
    "ConsentEvent",
    "ConsentKind",
    "Facility",
    "GlobalSettings",
    "Language",
    "Lease",
    "LedgerEntry",
    "LedgerKind",
    "Message",
    "MessageDirection",
    "PaymentAttempt",
    "PaymentMethod",
    "PhoneConsent",
    "Prompt",
    "PromptStatus",
    "SandboxCharge",
    "ScanRun",
    "ScanStatus",
    "StatusReport",
    "fit",
]


class CardRefundStatus(StrEnum):
    PENDING = "pending"  # the debit is posted; the gateway has not answered yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the gateway refused; the debit was given back to the balance


class CardRefund(SQLModel, table=True):
    """Money an operator gives back to the card a deposit came from.

    Recorded, with its `card_refund` debit, before the gateway is called (the debit holds the
    money so that calls cannot spend it meanwhile), and settled after, like a charge: a refund the
    gateway refuses is given back to the balance by a second entry, never by editing the first.
    """

    __tablename__ = "card_refund"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name="ck_card_refund_status"
        ),
        CheckConstraint("amount_cents > 0", name="ck_card_refund_amount"),
        Index(
            "ix_card_refund_unsettled",
            "created_at",
            postgresql_where=text(UNSETTLED_ATTEMPT),
            sqlite_where=text(UNSETTLED_ATTEMPT),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")], index=True)
    # The charge refunded (its deposit is the ledger entry the operator named).
    attempt_id: int = Field(sa_column_args=[ForeignKey("payment_attempt.id")], index=True)
    amount_cents: int = _cents()
    reason: str = Field(max_length=200)
    # The operator's Idempotency-Key (a replay answers the first refund), and ours for the
    # gateway (random, like a charge's).
    request_key: str = Field(max_length=200, unique=True)
    idempotency_key: str = Field(max_length=100, unique=True)
    status: str = Field(default=CardRefundStatus.PENDING.value, max_length=16)
    refund_id: str | None = Field(default=None, max_length=60)
    failure_reason: str | None = Field(default=None, max_length=40)
    actor: str = Field(max_length=100)
    created_at: datetime = _timestamp()
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Dispute(SQLModel, table=True):
    """A chargeback the card holder's bank opened against one of our charges.

    Kept for the operator to see; it posts nothing and never blocks the account (a chargeback
    is the card holder's right, and punishing it is what regulators have banned in this trade).
    """

    __tablename__ = "dispute"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")], index=True)
    attempt_id: int | None = Field(default=None, sa_column_args=[ForeignKey("payment_attempt.id")])
    gateway_dispute_id: str = Field(max_length=100, unique=True)
    amount_cents: int = _cents()
    reason: str = Field(default="", max_length=60)
    status: str = Field(max_length=40)
    created_at: datetime = _timestamp()
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class GatewayEvent(SQLModel, table=True):
    """A processor's webhook event already applied: its id is unique, so a redelivered event is
    acknowledged and changes nothing."""

    __tablename__ = "gateway_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=255, unique=True)
    type: str = Field(max_length=100)
    received_at: datetime = _timestamp()


class CardLink(SQLModel, table=True):
    """A short-lived link a subscriber opens to put a card on file (`textpay.card_links`).

    Only the SHA-256 of the link's random token is kept: a database dump, a backup or an
    operator's query never holds a link that works. A link is bound to the number it was texted
    to and one account, works once (`used_at`, set by a conditional update) and for 30 minutes.
    """

    __tablename__ = "card_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    phone: str = Field(max_length=16)  # E.164: the number the link was texted to
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")], index=True)
    language: str = Field(default=Language.ENGLISH.value, max_length=2)
    # The form's CSRF value: random, shown only in the page the link opens (not a credential on
    # its own: without the token nothing can be posted).
    csrf: str = Field(max_length=64)
    created_at: datetime = _timestamp()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Stripe's Checkout Session (setup mode) started from this link, when there is one.
    checkout_session_id: str | None = Field(default=None, max_length=255)


class OperatorRole(StrEnum):
    """What an operator may do, each role everything the one before may: `viewer` reads,
    `agent` also changes accounts and moves money (credits, usage, card refunds, scans),
    `admin` also changes settings, facilities and operators."""

    VIEWER = "viewer"
    AGENT = "agent"
    ADMIN = "admin"


class Operator(SQLModel, table=True):
    """A person who signs in to the console or calls the admin API (`textpay.operators`).

    The email is stored lower-cased, so the unique key makes it unique whatever its case. Only
    a salted scrypt hash of the password is kept. `failed_sign_ins` counts wrong passwords in a
    row; the fifth locks sign-in until `locked_until`. A disabled operator keeps its row (the
    audit trail names it) and can do nothing.
    """

    __tablename__ = "operator"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'agent', 'admin')", name="ck_operator_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)
    name: str = Field(default="", max_length=100)
    role: str = Field(max_length=8)
    password_hash: str = Field(max_length=255)
    failed_sign_ins: int = Field(default=0)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Raised by signing out: a console session carries the value it signed in under, so signing
    # out ends every session of the operator's, a copied cookie included.
    session_generation: int = Field(default=0)
    created_at: datetime = _timestamp()
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OperatorToken(SQLModel, table=True):
    """An operator's API token: only the SHA-256 of the random token is kept (the token itself
    is shown once, when minted). `last_used_at` is refreshed at most once a minute."""

    __tablename__ = "operator_token"

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(sa_column_args=[ForeignKey("operator.id")], index=True)
    name: str = Field(default="", max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _timestamp()
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CardExpiryNoticeKind(StrEnum):
    FIRST_WARNING = "30_days"  # the card expires within 30 days
    SECOND_WARNING = "7_days"  # within 7 days, and it is still the card on file
    AUTOPAY_SKIPPED = "autopay_skipped"  # AutoPay did not charge it: it has expired


class CardExpiryNotice(SQLModel, table=True):
    """A text telling a subscriber their card on file expires soon, or has expired and AutoPay
    did not charge it (`textpay.card_expiry`): one row per card, kind and (for AutoPay) episode.

    The unique key is what makes each text go once, however often the job runs and however
    many clocks run it. A card is named by `card_key` (a SHA-256 of its token and expiry, never
    the token): a new card, or a new expiry for the same one, is a new key, so its warnings
    start afresh.
    """

    __tablename__ = "card_expiry_notice"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('30_days', '7_days', 'autopay_skipped')", name="ck_card_expiry_notice_kind"
        ),
        UniqueConstraint(
            "account_id", "card_key", "kind", "episode", name="ux_card_expiry_notice_once"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(sa_column_args=[ForeignKey("account.id")])
    card_key: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    # AutoPay's low-balance episode (`Account.episode_seq`) for `autopay_skipped`; 0 otherwise.
    episode: int = Field(default=0)
    # What the text said, for an operator reading the row (the card's last 4 and expiry).
    last4: str = Field(max_length=4)
    exp_month: int
    exp_year: int
    message_id: int | None = Field(default=None, sa_column_args=[ForeignKey("message.id")])
    created_at: datetime = _timestamp()
