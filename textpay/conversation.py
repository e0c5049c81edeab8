"""The conversation: what a subscriber's text means, and what TextPay should do about it.

Pure on purpose: `parse` turns text into a `Command`, `decide` turns the account facts and a
command into a `Decision` (a reply to give and effects to apply). No database, no clock, no
network, no framework: the engine gathers the facts, applies the effects and renders the reply,
so every rule here can be tested as a table.

Rules that matter most (DESIGN §3): opt-out words win over everything; `YES` from an opted-out
number is an opt-in, never a payment; `YES` with no live offer charges nothing; an expired or
failed offer is offered again rather than charged; a card number in a message stops any payment.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from textpay.money import parse_amount
from textpay.redaction import CARD_NUMBER_PATTERN


class Intent(StrEnum):
    CONFIRM = "confirm"
    DECLINE = "decline"
    BALANCE = "balance"
    HELP = "help"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    AUTOPAY_ON = "autopay_on"
    AUTOPAY_OFF = "autopay_off"
    LANGUAGE = "language"
    EMPTY = "empty"
    UNKNOWN = "unknown"


# First words, after accents and punctuation are stripped and letters upper-cased.
_KEYWORDS: dict[str, tuple[Intent, bool]] = {  # word → (intent, is Spanish)
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
        (Intent.OPT_OUT, False),
    ),
    **dict.fromkeys(("ALTO", "PARAR"), (Intent.OPT_OUT, True)),
    **dict.fromkeys(("START", "UNSTOP"), (Intent.OPT_IN, False)),
    "COMENZAR": (Intent.OPT_IN, True),
    "YES": (Intent.CONFIRM, False),
    "Y": (Intent.CONFIRM, False),
    "SI": (Intent.CONFIRM, True),
    "NO": (Intent.DECLINE, False),
    "N": (Intent.DECLINE, False),
    "BAL": (Intent.BALANCE, False),
    "BALANCE": (Intent.BALANCE, False),
    "SALDO": (Intent.BALANCE, True),
    "HELP": (Intent.HELP, False),
    "INFO": (Intent.HELP, False),
    "AYUDA": (Intent.HELP, True),
    "ENGLISH": (Intent.LANGUAGE, False),
    "INGLES": (Intent.LANGUAGE, True),
    "ESPANOL": (Intent.LANGUAGE, True),
    "SPANISH": (Intent.LANGUAGE, False),
}  # fmt: skip
_LANGUAGE_OF_WORD = {"ENGLISH": "en", "INGLES": "en", "ESPANOL": "es", "SPANISH": "es"}
# Amounts written in words are not guessed at: the subscriber is asked to write digits.
_NUMBER_WORDS = frozenset(
    "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE FIFTEEN TWENTY THIRTY "
    "FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY HUNDRED UNO DOS TRES CUATRO CINCO SEIS SIETE OCHO "
    "NUEVE DIEZ QUINCE VEINTE TREINTA CUARENTA CINCUENTA SESENTA SETENTA OCHENTA NOVENTA CIEN "
    "CIENTO".split()
)
_NOT_A_WORD = re.compile(r"[^A-Z0-9$.,]+")
_HAS_DIGIT = re.compile(r"\d")
_ACCOUNT_SUFFIX = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class Command:
    """What a text asks for.

    `number` is a bare four-digit number after the keyword, which may name an account by the
    last 4 of its number (`YES 4821`) or be an amount in dollars; `decide` tells which.
    """

    intent: Intent
    amount_cents: int | None = None
    number: str | None = None
    language: str | None = None  # the language asked for by ENGLISH / ESPANOL
    spanish: bool = False  # the keyword itself was Spanish
    bad_amount: bool = False  # something after the keyword looked like money but was not
    card_number: bool = False  # the text held a card number (it has been masked)


def words_of(text: str) -> list[str]:
    """Upper-case words without accents or punctuation (`¡Sí!` → `SI`); `$`, `.`, `,` stay
    inside words so that amounts survive."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return [w for w in (w.strip(".,") for w in _NOT_A_WORD.sub(" ", plain).split()) if w]


def parse(text: str) -> Command:
    card_number = bool(CARD_NUMBER_PATTERN.search(text))
    words = words_of(CARD_NUMBER_PATTERN.sub(" ", text))
    if not words:
        return Command(Intent.EMPTY, card_number=card_number)
    first, rest = words[0], words[1:]
    if first == "AUTO" and rest[:1] == ["PAY"]:
        first, rest = "AUTOPAY", rest[1:]
    if first == "AUTOPAY":
        return _autopay(rest, card_number)
    intent, spanish = _KEYWORDS.get(first, (Intent.UNKNOWN, False))
    if intent is Intent.LANGUAGE:
        return Command(intent, language=_LANGUAGE_OF_WORD[first], spanish=spanish)
    if intent in (Intent.CONFIRM, Intent.DECLINE):
        return _with_amount(Command(intent, spanish=spanish, card_number=card_number), rest)
    return Command(intent, spanish=spanish, card_number=card_number)


def _autopay(rest: list[str], card_number: bool) -> Command:
    switch = rest[0] if rest else ""
    if switch in {"ON", "SI"}:
        return _with_amount(Command(Intent.AUTOPAY_ON, card_number=card_number), rest[1:])
    if switch in {"OFF", "NO"}:
        return _with_amount(Command(Intent.AUTOPAY_OFF, card_number=card_number), rest[1:])
    return Command(Intent.UNKNOWN, card_number=card_number)


def _with_amount(command: Command, rest: list[str]) -> Command:
    """Read an optional account suffix and amount after the keyword (`YES 4821`, `YES $40`)."""
    number = None
    amount = None
    bad = False
    for word in rest:
        if word in _NUMBER_WORDS:
            bad = True
            continue
        if not _HAS_DIGIT.search(word):
            continue  # "yes please": other words are tolerated and ignored
        if _ACCOUNT_SUFFIX.match(word) and number is None:
            number = word
            continue
        parsed = parse_amount(word)
        if parsed is None or amount is not None:
            bad = True
        else:
            amount = parsed
    return Command(
        command.intent,
        amount_cents=amount,
        number=number,
        spanish=command.spanish,
        bad_amount=bad,
        card_number=command.card_number,
    )


# ---------------------------------------------------------------------------------------------
# Facts in, decisions out


@dataclass(frozen=True)
class AccountFacts:
    account_id: int
    label: str  # last 4 of the account number
    nickname: str
    language: str
    timezone: str
    balance_cents: int
    balance_as_of: datetime
    autopay_enabled: bool
    card_last4: str | None
    preset_amount_cents: int
    threshold_cents: int
    min_deposit_cents: int
    max_deposit_cents: int
    daily_limit_cents: int
    deposited_last_24h_cents: int
    # False for an account that is suspended, closed or has TextPay switched off: a text can
    # never charge it (BAL still answers).
    payable_by_text: bool = True
    # True when `timezone` is only a guess among several (an area code spanning zones, no zone
    # known for the account or its facility): times in texts then name their zone ("8:00am CT").
    zone_named: bool = False


@dataclass(frozen=True)
class OfferFacts:
    """The latest offer of one account. `live` is pending and not yet expired."""

    prompt_id: int
    account_id: int
    status: str
    amount_cents: int
    fee_cents: int
    expires_at: datetime
    live: bool


@dataclass(frozen=True)
class Facts:
    accounts: tuple[AccountFacts, ...]
    offers: tuple[OfferFacts, ...] = ()
    opted_out: bool = False
    # Twilio's own opt-out handling answers STOP/START/HELP for the sender: record, don't reply.
    carrier_answers_keywords: bool = False

    def account(self, account_id: int) -> AccountFacts:
        return next(a for a in self.accounts if a.account_id == account_id)


@dataclass(frozen=True)
class Reply:
    """Which words to send (a key of `textpay.replies.TEMPLATES`) and about what."""

    key: str
    account_id: int | None = None
    account_ids: tuple[int, ...] = ()
    amount_cents: int | None = None


@dataclass(frozen=True)
class OptOut:
    """Stop everything for this number at once, cancelling open offers."""


@dataclass(frozen=True)
class OptIn:
    pass


@dataclass(frozen=True)
class Fund:
    prompt_id: int
    account_id: int
    amount_cents: int


@dataclass(frozen=True)
class DeclineOffer:
    prompt_id: int


@dataclass(frozen=True)
class OfferAgain:
    account_id: int


@dataclass(frozen=True)
class SetAutopay:
    account_ids: tuple[int, ...]
    enabled: bool
    amount_cents: int | None = None


@dataclass(frozen=True)
class SetLanguage:
    language: str


Effect = OptOut | OptIn | Fund | DeclineOffer | OfferAgain | SetAutopay | SetLanguage


@dataclass(frozen=True)
class Decision:
    """What to do. `reply` is None when the outcome of an effect is the reply (a receipt, a
    fresh offer) or when Twilio already answered the keyword for us."""

    reply: Reply | None
    effects: tuple[Effect, ...] = ()


def decide(facts: Facts, command: Command) -> Decision:
    intent = command.intent
    carrier_keyword = facts.carrier_answers_keywords
    if intent is Intent.OPT_OUT:
        if facts.opted_out:
            return Decision(None)  # one confirmation only
        return Decision(None if carrier_keyword else Reply("opted_out"), (OptOut(),))
    if not facts.accounts:
        if intent is Intent.HELP:
            return Decision(None if carrier_keyword else Reply("help"))
        return Decision(Reply("unknown_number"))
    if facts.opted_out:
        if intent in (Intent.OPT_IN, Intent.CONFIRM):
            # Twilio treats YES as an opt-in keyword: it re-subscribes, it never pays.
            return Decision(None if carrier_keyword else Reply("opted_in"), (OptIn(),))
        if intent is Intent.HELP:
            return Decision(None if carrier_keyword else Reply("help"))
        return Decision(Reply("still_opted_out"))
    if command.card_number:
        return Decision(Reply("card_number_warning"))
    if intent is Intent.EMPTY:
        return Decision(Reply("help"))  # an empty or picture-only text gets the help line
    if intent is Intent.OPT_IN:
        return Decision(None if carrier_keyword else Reply("opted_in"))
    if intent is Intent.HELP:
        return Decision(None if carrier_keyword else Reply("help"))
    if intent is Intent.BALANCE:
        return Decision(Reply("balance"))
    if intent is Intent.LANGUAGE:
        assert command.language is not None
        return Decision(Reply("language_set"), (SetLanguage(command.language),))
    if intent is Intent.CONFIRM:
        return _confirm(facts, command)
    if intent is Intent.DECLINE:
        return _decline(facts, command)
    if intent is Intent.AUTOPAY_ON:
        return _autopay_on(facts, command)
    if intent is Intent.AUTOPAY_OFF:
        return _autopay_off(facts, command)
    return Decision(Reply("not_understood"))


def _chosen(facts: Facts, command: Command, candidates: list[int]) -> int | None:
    """The account the subscriber means among `candidates`: the one named by its last 4, or
    the only candidate. None when it is ambiguous."""
    if command.number is not None:
        named = [a for a in candidates if facts.account(a).label == command.number]
        if len(named) == 1:
            return named[0]
    return candidates[0] if len(candidates) == 1 else None


def _amount(facts: Facts, command: Command, account_id: int) -> int | None:
    """The amount asked for, if any. A bare 4-digit number that is the chosen account's last 4
    named the account; any other is dollars (`YES 1000` is $1,000.00)."""
    if command.amount_cents is not None:
        return command.amount_cents
    if command.number is not None and command.number != facts.account(account_id).label:
        return parse_amount(command.number)
    return None


def _choices(account_ids: list[int]) -> Reply:
    return Reply("which_account", account_ids=tuple(account_ids))


def _confirm(facts: Facts, command: Command) -> Decision:
    live = [o for o in facts.offers if o.live]
    if live:
        chosen = _chosen(facts, command, [o.account_id for o in live])
        if chosen is None:
            return Decision(_choices([o.account_id for o in live]))
        offer = next(o for o in live if o.account_id == chosen)
        account = facts.account(chosen)
        amount = _amount(facts, command, chosen) or offer.amount_cents
        if command.bad_amount:
            return Decision(Reply("bad_amount", account_id=chosen))
        if account.card_last4 is None:
            return Decision(Reply("no_card", account_id=chosen))
        if not account.min_deposit_cents <= amount <= account.max_deposit_cents:
            return Decision(
                Reply("out_of_limits", account_id=chosen, amount_cents=offer.amount_cents)
            )
        if account.deposited_last_24h_cents + amount > account.daily_limit_cents:
            return Decision(Reply("daily_limit", account_id=chosen))
        return Decision(None, (Fund(offer.prompt_id, chosen, amount),))

    in_flight = [o for o in facts.offers if o.status == "accepted"]
    if in_flight:
        return Decision(Reply("already_processing", account_id=in_flight[0].account_id))
    lapsed = [o.account_id for o in facts.offers if o.status in ("expired", "failed")]
    lapsed += [o.account_id for o in facts.offers if o.status == "pending" and not o.live]
    if lapsed:
        chosen = _chosen(facts, command, lapsed)
        if chosen is None:
            return Decision(_choices(lapsed))
        return Decision(None, (OfferAgain(chosen),))
    return Decision(Reply("no_offer"))


def _decline(facts: Facts, command: Command) -> Decision:
    live = [o for o in facts.offers if o.live]
    if not live:
        return Decision(Reply("no_offer_to_decline"))
    chosen = _chosen(facts, command, [o.account_id for o in live])
    declined = [o for o in live if chosen is None or o.account_id == chosen]
    return Decision(
        Reply("declined", account_ids=tuple(o.account_id for o in declined)),
        tuple(DeclineOffer(o.prompt_id) for o in declined),
    )


def _autopay_on(facts: Facts, command: Command) -> Decision:
    chosen = _chosen(facts, command, [a.account_id for a in facts.accounts])
    if chosen is None:
        return Decision(
            Reply("which_account_autopay", account_ids=tuple(a.account_id for a in facts.accounts))
        )
    account = facts.account(chosen)
    amount = _amount(facts, command, chosen)
    if command.bad_amount:
        return Decision(Reply("bad_amount", account_id=chosen))
    if account.card_last4 is None:
        return Decision(Reply("no_card", account_id=chosen))
    if amount is not None and not (
        account.min_deposit_cents <= amount <= account.max_deposit_cents
    ):
        return Decision(
            Reply("out_of_limits", account_id=chosen, amount_cents=account.preset_amount_cents)
        )
    return Decision(
        Reply("autopay_on", account_id=chosen, amount_cents=amount),
        (SetAutopay((chosen,), True, amount),),
    )


def _autopay_off(facts: Facts, command: Command) -> Decision:
    enrolled = [a.account_id for a in facts.accounts if a.autopay_enabled]
    if command.number is not None:
        enrolled = [a for a in enrolled if facts.account(a).label == command.number]
    if not enrolled:
        return Decision(Reply("autopay_already_off"))
    return Decision(
        Reply("autopay_off", account_ids=tuple(enrolled)),
        (SetAutopay(tuple(enrolled), False),),
    )
