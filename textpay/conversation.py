"""The conversation: what a subscriber's text means, and what TextPay should do about it.

Pure on purpose: `parse` turns text into a `Command`, `decide` turns the account facts and a
command into a `Decision` (a reply to give and effects to apply). No database, no clock, no
network, no framework: the engine gathers the facts, applies the effects and renders the reply,
so every rule here can be tested as a table.

Rules that matter most (docs/architecture.md, Invariants): opt-out words win over everything;
`YES` from an opted-out number is an opt-in, never a payment; `YES` with no live offer charges
nothing; an expired or failed offer is offered again rather than charged; a card number in a
message stops any payment; an amount is charged only as typed, on the account named. A top-up on
demand (`ADD 20`, or a YES with no live offer) is answered with an offer, never a charge: only
the next YES, once that offer can be accepted, funds it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from textpay.money import ascii_digits, parse_amount
from textpay.redaction import mask_card_numbers, passcode_typed


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
    CARD = "card"
    TOP_UP = "top_up"
    PASSCODE = "passcode"  # four digits alone: a passcode while one is asked for
    EMPTY = "empty"
    UNKNOWN = "unknown"


# First words, after accents and punctuation are stripped and letters upper-cased.
_KEYWORDS: dict[str, tuple[Intent, bool]] = {  # word → (intent, is Spanish)
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
        (Intent.OPT_OUT, False),
    ),
    **dict.fromkeys(("ALTO", "PARAR", "CANCELAR", "BAJA", "DETENER"), (Intent.OPT_OUT, True)),
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
    "CARD": (Intent.CARD, False),
    "TARJETA": (Intent.CARD, True),
    "ADD": (Intent.TOP_UP, False),
    "TOPUP": (Intent.TOP_UP, False),
    "AGREGAR": (Intent.TOP_UP, True),
    "RECARGAR": (Intent.TOP_UP, True),
    "RECARGA": (Intent.TOP_UP, True),
}  # fmt: skip
_LANGUAGE_OF_WORD = {"ENGLISH": "en", "INGLES": "en", "ESPANOL": "es", "SPANISH": "es"}
# Opt-out words honoured anywhere in a short text (README), → whether the word is Spanish.
# `opt out` and `opt-out` are two words and are matched as a pair.
_OPT_OUT_WORDS = {word: spanish for word, (intent, spanish) in _KEYWORDS.items()
                  if intent is Intent.OPT_OUT}  # fmt: skip
# A text of at most this many words is "short": an opt-out word anywhere in it opts out
# ("please stop", "STOP texting me", "cancelar por favor", "ok stop sending these please").
# Longer texts opt out only when they start with one; a long message that merely mentions
# "the end of the month" is not read as a revocation. Eight words holds every way of saying
# stop we have seen, while a question long enough to use "end" in passing is longer.
SHORT_TEXT_WORDS = 8
# Amounts written in words are not guessed at: the subscriber is asked to write digits.
_NUMBER_WORDS = frozenset(
    "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE FIFTEEN TWENTY THIRTY "
    "FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY HUNDRED UNO DOS TRES CUATRO CINCO SEIS SIETE OCHO "
    "NUEVE DIEZ QUINCE VEINTE TREINTA CUARENTA CINCUENTA SESENTA SETENTA OCHENTA NOVENTA CIEN "
    "CIENTO".split()
)
# Units that say the number beside them is not dollars (`40 cents`, `40 c`, `40 pesos`):
# nothing is charged rather than dollars being guessed. (`dollars`, `bucks` are tolerated.)
_NOT_DOLLARS = frozenset(
    "C CT CTS CENT CENTS CENTAVO CENTAVOS PESO PESOS EUR EURO EUROS MXN".split()
)
# Around a word, these are punctuation and emoji, not part of it: `¡Sí!`, `(40)`, `yes👍`,
# `40.` at the end of a sentence. Never trimmed: `$`, other currency signs, `-` and `+` (a
# sign), `.` and `,` in front (`.40`, `,5`), `#`: they change what a number means.
_TRIMMED_CATEGORIES = frozenset({"So", "Sk", "Cf", "Cc", "Mn", "Me", "Ps", "Pe", "Pi", "Pf"})
_TRIMMED_IN_FRONT = frozenset("!?¡¿\"':;*")
_TRIMMED_BEHIND = frozenset("!?¡¿\"':;*.,…")
# A word that may be an account's label: letters, digits and the punctuation account numbers
# use, optionally after `#` or the `...` TextPay writes labels with (`#4821`, `...4821`).
_APOSTROPHES = "'\u2019"  # typed and curly (phones curl apostrophes as people type)
_NAME = re.compile(r"(?:#|\.\.\.|…)?(?P<name>[A-Z0-9][A-Z0-9._-]*)")


@dataclass(frozen=True)
class Figure:
    """A number typed after the keyword.

    `text` is how it is compared with the labels of the accounts on the phone: upper-case,
    digits in ASCII (`٤٨٢١` → `4821`), without a leading `#` or `...`. `cents` is its value when
    it can be read as an amount (`money.parse_amount`); None when it can only name an account:
    a bare number of four or more digits (`4821`, `1000`), `#4821`, `ACCT-4821`, `40C`.
    """

    text: str
    cents: int | None


@dataclass(frozen=True)
class Reading:
    """What the figures of a text say once the labels of the phone's accounts are known."""

    named: tuple[str, ...]  # the labels named (upper-case), in the order typed
    amount_cents: int | None  # the one amount typed, if exactly one was, cleanly
    bad_amount: bool  # something looked like money but is neither an amount nor a label


@dataclass(frozen=True)
class Command:
    """What a text asks for.

    Which account a number names cannot be known from the text alone, so the numbers typed
    after the keyword are kept as `figures`, and `read` tells, given the labels of the accounts
    on the phone, which accounts they name and what amount (if any) was asked for: a figure that
    is an account's label names it and is never an amount (docs/architecture.md).
    """

    intent: Intent
    figures: tuple[Figure, ...] = ()
    language: str | None = None  # the language asked for by ENGLISH / ESPANOL
    spanish: bool = False  # the keyword itself was Spanish
    # Something after the keyword looked like money whatever the labels: a number in words,
    # `40 cents`, `-5`, `40¢`, `1,5`, `.40`, digits of two scripts.
    bad_amount: bool = False
    card_number: bool = False  # the text held a card number (it has been masked)
    passcode: str | None = None  # PASSCODE: the four digits, in ASCII (never stored)

    def read(self, labels: Iterable[str]) -> Reading:
        """The accounts named and the amount asked for, among accounts labelled `labels`."""
        known = {label.upper() for label in labels}
        named: list[str] = []
        amounts: list[int | None] = []
        for figure in self.figures:
            if figure.text in known:
                if figure.text not in named:
                    named.append(figure.text)
            else:
                amounts.append(figure.cents)
        # Two amounts, or a figure that is neither an amount nor a label (`YES 1000` on a
        # phone with no account ...1000), and nothing is charged.
        bad = self.bad_amount or len(amounts) > 1 or None in amounts
        amount = amounts[0] if amounts and not bad else None
        return Reading(tuple(named), amount, bad)


def _plain(word: str) -> str:
    """Upper case without accents or apostrophes (`Sí` → `SI`, `don't` → `DONT`)."""
    decomposed = unicodedata.normalize("NFKD", word)
    kept = (c for c in decomposed if not unicodedata.combining(c) and c not in _APOSTROPHES)
    return "".join(kept).upper()


def _is_trimmed(char: str, behind: bool) -> bool:
    category = unicodedata.category(char)
    if category in _TRIMMED_CATEGORIES:
        return True
    return category == "Po" and char in (_TRIMMED_BEHIND if behind else _TRIMMED_IN_FRONT)


def _trim(token: str) -> str:
    start, end = 0, len(token)
    while start < end and _is_trimmed(token[start], behind=False):
        start += 1
    while end > start and _is_trimmed(token[end - 1], behind=True):
        end -= 1
    return token[start:end]


def _tokens(text: str) -> list[str]:
    """The words of a text as typed (split at spaces), without the punctuation and emoji
    around them; words that were only punctuation or emoji are gone."""
    return [t for t in (_trim(raw) for raw in text.split()) if t]


def _keyword(token: str) -> tuple[str, str]:
    """The keyword a first word starts with, and what is glued after it (`YES-40` → `YES`,
    `-40`). A first word with a digit right after its letters (`YES40`, `Y2K`) has no keyword."""
    end = 0
    while end < len(token) and (
        token[end].isalpha() or token[end] in _APOSTROPHES or unicodedata.combining(token[end])
    ):
        end += 1
    if end < len(token) and unicodedata.category(token[end]).startswith("N"):
        return _plain(token), ""
    return _plain(token[:end]), _trim(token[end:])


def _opt_out(tokens: list[str]) -> bool | None:
    """Whether the text opts out: None if not, else whether the opt-out word was Spanish.

    Words are compared whole (`weekend` holds no `end`, `stopped` is not `stop`); `opt out`,
    `opt-out` and `optout` all count. The first word counts in a text of any length, any word
    in a short one."""
    words = [w for token in tokens for w in re.split(r"[^A-Z0-9]+", _plain(token)) if w]
    short = len(tokens) <= SHORT_TEXT_WORDS
    for index, word in enumerate(words):
        if index > 0 and not short:
            break
        if word in _OPT_OUT_WORDS:
            return _OPT_OUT_WORDS[word]
        if word == "OPT" and words[index + 1 : index + 2] == ["OUT"]:
            return False
    return None


def parse(text: str) -> Command:
    """What a text asks for. Pure: the same text always parses the same way."""
    # A card number is read as a gap between words: what is around it still parses (`STOP`
    # still opts out), and `decide` answers any other text holding one with a warning.
    blanked, card_number = mask_card_numbers(text, " ")
    tokens = _tokens(blanked)
    if not tokens:
        return Command(Intent.EMPTY, card_number=card_number)
    typed = passcode_typed(blanked)
    if typed is not None:  # `decide` reads it as a passcode only while one is asked for
        return Command(Intent.PASSCODE, passcode=typed)
    spanish_stop = _opt_out(tokens)
    if spanish_stop is not None:  # opt-out wins over everything, YES and amounts included
        return Command(Intent.OPT_OUT, spanish=spanish_stop, card_number=card_number)
    first, glued = _keyword(tokens[0])
    rest = ([glued] if glued else []) + tokens[1:]
    if first == "AUTO" and not glued and [_plain(t) for t in rest[:1]] == ["PAY"]:
        first, rest = "AUTOPAY", rest[1:]
    if first == "AUTOPAY":
        return _autopay(rest, card_number)
    if first == "TOP" and not glued and [_plain(t) for t in rest[:1]] == ["UP"]:
        first, rest = "TOPUP", rest[1:]
    intent, spanish = _KEYWORDS.get(first, (Intent.UNKNOWN, False))
    if intent is Intent.LANGUAGE:
        return Command(intent, language=_LANGUAGE_OF_WORD[first], spanish=spanish,
                       card_number=card_number)  # fmt: skip
    if intent in (Intent.CONFIRM, Intent.DECLINE, Intent.CARD, Intent.TOP_UP):
        return _with_amount(Command(intent, spanish=spanish, card_number=card_number), rest)
    return Command(intent, spanish=spanish, card_number=card_number)


def _autopay(rest: list[str], card_number: bool) -> Command:
    switch = _plain(rest[0]) if rest else ""
    if switch in {"ON", "SI"}:
        return _with_amount(Command(Intent.AUTOPAY_ON, card_number=card_number), rest[1:])
    if switch in {"OFF", "NO"}:
        return _with_amount(Command(Intent.AUTOPAY_OFF, card_number=card_number), rest[1:])
    return Command(Intent.UNKNOWN, card_number=card_number)


def _looks_like_money(token: str) -> bool:
    """Holds a digit of any script, a number-like sign (`²`, `½`) or a currency sign."""
    return any(unicodedata.category(c)[0] == "N" or unicodedata.category(c) == "Sc" for c in token)


def _is_sign(token: str) -> bool:
    """A dash, minus or plus on its own (`-`, `+`, `—`)."""
    return all(unicodedata.category(c) in ("Pd", "Sm") for c in token)


def _figure(token: str) -> Figure | None:
    """A money-looking word as a figure, or None when it is neither a clean amount nor
    something that could be an account's label (`-5`, `40¢`, `1,5`, `$`, digits of two
    scripts)."""
    written = ascii_digits(token)
    # Only letters, ASCII digits and ASCII punctuation go on: `²` would otherwise become `2`
    # below, and `¢`, `€` or a full-width dollar sign are not dollars.
    if written is None or not all(c.isascii() or c.isalpha() for c in written):
        return None
    cents = parse_amount(written)
    key = _plain(written)
    if cents is not None:
        return Figure(key, cents)
    name = _NAME.fullmatch(key)
    return Figure(name["name"], None) if name else None


def _with_amount(command: Command, rest: list[str]) -> Command:
    """Read what follows the keyword: account labels and an amount (`YES 4821`, `YES $40`),
    words in between tolerated (`yes 40 dollars please`)."""
    figures: list[Figure] = []
    bad = False
    for index, token in enumerate(rest):
        if _is_sign(token) and any(_looks_like_money(t) for t in rest[index + 1 : index + 2]):
            bad = True  # `YES - 5` may be minus five: nothing is charged rather than $5
            continue
        if not _looks_like_money(token):
            # Other words are ignored, except amounts in words and units that are not dollars.
            bad = bad or _plain(token) in _NUMBER_WORDS | _NOT_DOLLARS
            continue
        figure = _figure(token)
        if figure is None:
            bad = True
        else:
            figures.append(figure)
    return Command(
        command.intent,
        figures=tuple(figures),
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
    # Days of calls left at the account's usual pace (`textpay.runway`), when known.
    runway_days: int | None = None
    # Passcodes (`textpay.passcodes`): whether the account has one; a YES adding more than
    # `passcode_over_cents`, or from a phone new to the account, needs it; passcode payments
    # are locked until `passcode_locked_until` (None: not locked) after too many wrong ones.
    has_passcode: bool = False
    passcode_over_cents: int | None = None
    new_phone: bool = False
    passcode_locked_until: datetime | None = None
    passcode_tries_left: int = 3


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
    # How the offer's text named the account, when known: a YES naming that label may mean
    # this offer even if another account on the phone has taken the label since.
    label_sent: str | None = None
    # A passcode a YES asked for on this offer: "open" (four digits now answer it), "lapsed"
    # (not answered in time, or the offer lapsed), "used" (answered: the offer was accepted);
    # None when none was asked for lately. With the amount that YES asked for.
    passcode: str | None = None
    passcode_amount_cents: int | None = None
    passcode_requested_at: datetime | None = None
    # Funded within the last `JUST_FUNDED` (facts.offer_facts): a plain YES now is most likely
    # the same YES sent twice, and is not read as a request for another top-up.
    just_funded: bool = False


@dataclass(frozen=True)
class Facts:
    accounts: tuple[AccountFacts, ...]
    offers: tuple[OfferFacts, ...] = ()
    opted_out: bool = False
    # Twilio's own opt-out handling answers STOP/START/HELP for the sender: record, don't reply.
    carrier_answers_keywords: bool = False
    # The engine's check of a PASSCODE text against the passcode of the account whose request
    # is open (`passcode_request`); None when nothing was checked.
    passcode_right: bool | None = None

    def account(self, account_id: int) -> AccountFacts:
        return next(a for a in self.accounts if a.account_id == account_id)


@dataclass(frozen=True)
class Reply:
    """Which words to send (a key of `textpay.replies.TEMPLATES`) and about what."""

    key: str
    account_id: int | None = None
    account_ids: tuple[int, ...] = ()
    amount_cents: int | None = None
    count: int | None = None  # passcode tries left


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
class TopUp:
    """Answer with an offer to add `amount_cents` (None: the account's preset, or its open
    offer as it is) to the account: a fresh one, or its open offer when that is what was asked
    for. Never a charge: the next YES funds it once the subscriber could have read it."""

    account_id: int
    amount_cents: int | None = None


@dataclass(frozen=True)
class SetAutopay:
    account_ids: tuple[int, ...]
    enabled: bool
    amount_cents: int | None = None


@dataclass(frozen=True)
class SetLanguage:
    language: str


@dataclass(frozen=True)
class AskPasscode:
    """Charge nothing yet: the offer waits for the account's passcode, for this amount."""

    prompt_id: int
    account_id: int
    amount_cents: int


@dataclass(frozen=True)
class PasscodeTried:
    """A passcode was checked: a right one clears the wrong tries, a wrong one counts, and the
    last wrong one allowed locks passcode payments."""

    account_id: int
    right: bool
    lock: bool = False


Effect = (
    OptOut | OptIn | Fund | DeclineOffer | OfferAgain | TopUp | SetAutopay | SetLanguage
    | AskPasscode | PasscodeTried
)  # fmt: skip


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
        # STOP always takes effect (it is idempotent, and stops an account that joined the
        # number since), from any number, enrolled or not; it is confirmed once: carriers
        # expect a repeated STOP to get no reply.
        quiet = carrier_keyword or facts.opted_out
        return Decision(None if quiet else Reply("opted_out"), (OptOut(),))
    if not facts.accounts:
        if intent is Intent.OPT_IN or (facts.opted_out and intent is Intent.CONFIRM):
            # Consent belongs to the number: START from a number with no account yet is
            # remembered too, so that an account enrolled on it later may be texted.
            return Decision(None if carrier_keyword else Reply("opted_in"), (OptIn(),))
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
    if intent is Intent.CARD:
        return _card(facts, command)
    if intent is Intent.TOP_UP:
        return _top_up(facts, command)
    if intent is Intent.PASSCODE:
        return _passcode(facts)
    return Decision(Reply("not_understood"))


def _amount(facts: Facts, command: Command) -> tuple[list[int], Reading]:
    """The accounts a text names (by their labels among every account on the phone, offer or
    not) and what it says about an amount. A number that is a label is never an amount."""
    sent = [(o.label_sent, o.account_id) for o in facts.offers if o.live and o.label_sent]
    owners: dict[str, set[int]] = {}
    for label, account_id in [*((a.label, a.account_id) for a in facts.accounts), *sent]:
        owners.setdefault(label.upper(), set()).add(account_id)
    reading = command.read(owners)
    # A label that names two accounts (one has it now, another's offer was texted with it; or
    # account numbers that differ only in case) names both: the reply asks which.
    return [a for label in reading.named for a in sorted(owners[label])], reading


def _chosen(named: list[int], candidates: list[int]) -> int | None:
    """The account the subscriber means among `candidates`: the one named, or the only
    candidate when none is named. None when that is ambiguous (two named, several candidates)
    or the account named is not a candidate."""
    if named:
        return named[0] if len(named) == 1 and named[0] in candidates else None
    return candidates[0] if len(candidates) == 1 else None


def _choices(account_ids: list[int]) -> Reply:
    return Reply("which_account", account_ids=tuple(account_ids))


def _confirm(facts: Facts, command: Command) -> Decision:
    named, reading = _amount(facts, command)
    live = {o.account_id: o for o in facts.offers if o.live}
    if len(named) == 1 and named[0] not in live:
        # `YES 0050` speaks of ...0050 alone: never of another account's offer.
        return _confirm_without_offer(facts, named[0], reading)
    if not live:
        return _nothing_live(facts, named, reading)
    chosen = _chosen(named, list(live))
    if chosen is None:
        return Decision(_choices(list(live)))
    offer = live[chosen]
    account = facts.account(chosen)
    if not account.payable_by_text:
        return Decision(Reply("not_payable", account_id=chosen))
    if reading.bad_amount:
        return Decision(Reply("bad_amount", account_id=chosen))
    amount = offer.amount_cents if reading.amount_cents is None else reading.amount_cents
    if account.card_last4 is None:
        return Decision(Reply("no_card", account_id=chosen))
    if not account.min_deposit_cents <= amount <= account.max_deposit_cents:
        return Decision(Reply("out_of_limits", account_id=chosen, amount_cents=offer.amount_cents))
    if account.deposited_last_24h_cents + amount > account.daily_limit_cents:
        return Decision(Reply("daily_limit", account_id=chosen))
    if needs_passcode(account, amount):
        return _ask_passcode(account, offer.prompt_id, amount)
    return Decision(None, (Fund(offer.prompt_id, chosen, amount),))


def _confirm_without_offer(facts: Facts, account_id: int, reading: Reading) -> Decision:
    """YES naming an account with no live offer: its payment in flight, its lapsed offer made
    again (a plain YES), or a top-up offer (an amount typed, or no offer to make again).
    Nothing is charged."""
    if not facts.account(account_id).payable_by_text:
        return Decision(Reply("not_payable", account_id=account_id))
    statuses = {o.status for o in facts.offers if o.account_id == account_id}
    if "accepted" in statuses:
        return Decision(Reply("already_processing", account_id=account_id))
    # A pending one here is past its expiry, or not yet acceptable (sent a moment ago).
    if statuses & {"expired", "failed", "pending"} and _plain_yes(reading):
        return Decision(None, (OfferAgain(account_id),))
    if _plain_yes(reading) and any(o.just_funded for o in facts.offers
                                   if o.account_id == account_id):  # fmt: skip
        return Decision(Reply("just_funded", account_id=account_id))
    return _offer_top_up(facts, account_id, reading)


def _nothing_live(facts: Facts, named: list[int], reading: Reading) -> Decision:
    """YES with no live offer anywhere on the phone (and none or several accounts named): a
    payment in flight says so; a lapsed offer is made again; else a top-up is offered."""
    in_flight = [o for o in facts.offers if o.status == "accepted"]
    if in_flight:
        return Decision(Reply("already_processing", account_id=in_flight[0].account_id))
    lapsed = [o.account_id for o in facts.offers if o.status in ("expired", "failed")]
    lapsed += [o.account_id for o in facts.offers if o.status == "pending" and not o.live]
    if lapsed:
        chosen = _chosen(named, lapsed)
        if chosen is None:
            return Decision(_choices(lapsed))
        if not facts.account(chosen).payable_by_text:
            return Decision(Reply("not_payable", account_id=chosen))
        if _plain_yes(reading):
            return Decision(None, (OfferAgain(chosen),))
        return _offer_top_up(facts, chosen, reading)
    if _plain_yes(reading):
        # A YES resent after its payment went through (a nervous second tap, a text that crossed
        # the receipt) is told so; another top-up is one ADD away. `YES 20` still asks for one.
        funded = _chosen(named, [o.account_id for o in facts.offers if o.just_funded])
        if funded is not None:
            return Decision(Reply("just_funded", account_id=funded))
    return _top_up_of(facts, named, reading)


def _plain_yes(reading: Reading) -> bool:
    """A YES with no amount (good or bad) typed: a lapsed offer is made again as it was."""
    return reading.amount_cents is None and not reading.bad_amount


def _top_up(facts: Facts, command: Command) -> Decision:
    """ADD [amount] [account] (AGREGAR): a top-up offer on demand, for the only account on the
    phone or the one named. Never a charge."""
    named, reading = _amount(facts, command)
    return _top_up_of(facts, named, reading)


def _top_up_of(facts: Facts, named: list[int], reading: Reading) -> Decision:
    every = [a.account_id for a in facts.accounts]
    # Unnamed, the top-up is for the one account a text can pay (a closed account beside it
    # is not a choice); named, for that account, payable or not (the reply then says why not).
    payable = [a.account_id for a in facts.accounts if a.payable_by_text] or every
    chosen = _chosen(named, every) if named else _chosen([], payable)
    if chosen is None:
        return Decision(Reply("which_account_top_up", account_ids=tuple(payable)))
    return _offer_top_up(facts, chosen, reading)


def _offer_top_up(facts: Facts, account_id: int, reading: Reading) -> Decision:
    """A top-up offer for this account, if one may be made: the amount typed (else its open
    offer's, else its preset) within its limits, a card to charge, nothing in flight. The
    limits are checked again when a YES accepts the offer."""
    account = facts.account(account_id)
    if not account.payable_by_text:
        return Decision(Reply("not_payable", account_id=account_id))
    if reading.bad_amount:
        return Decision(Reply("bad_amount", account_id=account_id))
    newest = next((o for o in facts.offers if o.account_id == account_id), None)
    if newest is not None and newest.status == "accepted":
        return Decision(Reply("already_processing", account_id=account_id))
    if account.card_last4 is None:
        return Decision(Reply("no_card", account_id=account_id))
    amount = reading.amount_cents
    if amount is None and newest is not None and newest.status == "pending":
        offered = newest.amount_cents  # the open offer is given again as it is
    else:
        offered = account.preset_amount_cents if amount is None else amount
    if not account.min_deposit_cents <= offered <= account.max_deposit_cents:
        return Decision(Reply("top_up_out_of_limits", account_id=account_id))
    if account.deposited_last_24h_cents + offered > account.daily_limit_cents:
        return Decision(Reply("daily_limit", account_id=account_id))
    return Decision(None, (TopUp(account_id, amount),))


def _decline(facts: Facts, command: Command) -> Decision:
    live = [o for o in facts.offers if o.live]
    if not live:
        return Decision(Reply("no_offer_to_decline"))
    named, _ = _amount(facts, command)
    # NO without a name declines every live offer (declining never costs anything); NO with
    # names declines only theirs.
    declined = [o for o in live if not named or o.account_id in named]
    if not declined:
        return Decision(Reply("no_offer_for_account", account_id=named[0]))
    return Decision(
        Reply("declined", account_ids=tuple(o.account_id for o in declined)),
        tuple(DeclineOffer(o.prompt_id) for o in declined),
    )


def _autopay_on(facts: Facts, command: Command) -> Decision:
    named, reading = _amount(facts, command)
    chosen = _chosen(named, [a.account_id for a in facts.accounts])
    if chosen is None:
        return Decision(
            Reply("which_account_autopay", account_ids=tuple(a.account_id for a in facts.accounts))
        )
    account = facts.account(chosen)
    if not account.payable_by_text:
        return Decision(Reply("not_payable", account_id=chosen))
    if reading.bad_amount:
        return Decision(Reply("bad_amount", account_id=chosen))
    if account.card_last4 is None:
        return Decision(Reply("no_card", account_id=chosen))
    amount = reading.amount_cents
    if amount is not None and not (
        account.min_deposit_cents <= amount <= account.max_deposit_cents
    ):
        return Decision(
            Reply("out_of_limits", account_id=chosen, amount_cents=account.preset_amount_cents)
        )
    charged = account.preset_amount_cents if amount is None else amount
    if needs_passcode(account, charged):
        # AutoPay would charge that much with nobody asked: where a YES of the same amount
        # needs the passcode, AutoPay is not switched on by text at all.
        return Decision(Reply("autopay_needs_passcode", account_id=chosen, amount_cents=charged))
    return Decision(
        Reply("autopay_on", account_id=chosen, amount_cents=amount),
        (SetAutopay((chosen,), True, amount),),
    )


def _autopay_off(facts: Facts, command: Command) -> Decision:
    enrolled = [a.account_id for a in facts.accounts if a.autopay_enabled]
    named, _ = _amount(facts, command)
    # Figures that name no account are ignored: turning AutoPay off never moves money.
    if named:
        enrolled = [a for a in enrolled if a in named]
    if not enrolled:
        return Decision(Reply("autopay_already_off"))
    return Decision(
        Reply("autopay_off", account_ids=tuple(enrolled)),
        (SetAutopay(tuple(enrolled), False),),
    )


def _card(facts: Facts, command: Command) -> Decision:
    """CARD (or CARD 4821): a link to put a card on file for the only account on the phone, or
    the one named; with several and none named, which one? Nothing is charged either way. The
    engine makes the link (`textpay.card_links`) when it renders the reply."""
    named, _ = _amount(facts, command)
    chosen = _chosen(named, [a.account_id for a in facts.accounts])
    if chosen is None:
        return Decision(
            Reply("which_account_card", account_ids=tuple(a.account_id for a in facts.accounts))
        )
    return Decision(Reply("card_link", account_id=chosen))


# ---------------------------------------------------------------------------------------------
# Passcodes


def needs_passcode(account: AccountFacts, amount_cents: int) -> bool:
    """Whether a YES adding `amount_cents` needs the account's passcode: only an account with
    one, and only when the deposit is over `passcode_over_cents` or the phone is new to it."""
    if not account.has_passcode:
        return False
    over = account.passcode_over_cents
    return account.new_phone or (over is not None and amount_cents > over)


def _ask_passcode(account: AccountFacts, prompt_id: int, amount_cents: int) -> Decision:
    if account.passcode_locked_until is not None:
        return Decision(Reply("passcode_locked", account_id=account.account_id))
    return Decision(
        Reply("passcode_asked", account_id=account.account_id, amount_cents=amount_cents),
        (AskPasscode(prompt_id, account.account_id, amount_cents),),
    )


def passcode_request(facts: Facts) -> OfferFacts | None:
    """The offer whose passcode four digits answer now: the latest one asked for, still open."""
    asked = [o for o in facts.offers if o.passcode == "open" and o.live]
    return max(asked, key=lambda o: o.passcode_requested_at or o.expires_at, default=None)


def _passcode(facts: Facts) -> Decision:
    """Four digits alone. While a YES's passcode request is open, a passcode: the right one
    accepts the offer as that YES would have (through the same checks again: the limits or the
    card may have changed meanwhile), a wrong one counts. Otherwise they mean what they meant
    before passcodes: nothing, unless a request lapsed or was answered a moment ago."""
    offer = passcode_request(facts)
    if offer is None:
        recent = [o for o in facts.offers if o.passcode is not None]
        if not recent:
            return Decision(Reply("not_understood"))
        if recent[0].passcode == "used":
            key = "already_processing" if recent[0].status == "accepted" else "passcode_used"
            return Decision(Reply(key, account_id=recent[0].account_id))
        return Decision(Reply("passcode_lapsed", account_id=recent[0].account_id))
    account = facts.account(offer.account_id)
    chosen = account.account_id
    if not account.payable_by_text:
        return Decision(Reply("not_payable", account_id=chosen))
    if account.passcode_locked_until is not None:
        return Decision(Reply("passcode_locked", account_id=chosen))
    if facts.passcode_right is None:  # not checked: nothing can be charged on it
        return Decision(Reply("not_understood"))
    if not facts.passcode_right:
        left = account.passcode_tries_left - 1
        if left <= 0:
            return Decision(Reply("passcode_locked_now", account_id=chosen),
                            (PasscodeTried(chosen, right=False, lock=True),))  # fmt: skip
        return Decision(Reply("passcode_wrong", account_id=chosen, count=left),
                        (PasscodeTried(chosen, right=False),))  # fmt: skip
    amount = offer.amount_cents if offer.passcode_amount_cents is None \
        else offer.passcode_amount_cents  # fmt: skip
    tried = PasscodeTried(chosen, right=True)
    if account.card_last4 is None:
        return Decision(Reply("no_card", account_id=chosen), (tried,))
    if not account.min_deposit_cents <= amount <= account.max_deposit_cents:
        return Decision(Reply("out_of_limits", account_id=chosen, amount_cents=offer.amount_cents),
                        (tried,))  # fmt: skip
    if account.deposited_last_24h_cents + amount > account.daily_limit_cents:
        return Decision(Reply("daily_limit", account_id=chosen), (tried,))
    return Decision(None, (tried, Fund(offer.prompt_id, chosen, amount)))
