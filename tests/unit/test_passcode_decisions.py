"""The passcode's decision table: when a YES needs the passcode, and what four digits do. Pure.

Every row runs in English (`YES`) and Spanish (`SI`), and its reply is rendered in the
account's language, so each case is shown to read right in both.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.test_conversation import account as any_account
from textpay import replies
from textpay.conversation import (
    AccountFacts,
    AskPasscode,
    Facts,
    Fund,
    OfferFacts,
    PasscodeTried,
    decide,
    parse,
)
from textpay.segments import fold

NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)
VOICE = replies.Voice(support="textpay.example/help")


def account(language: str, **changes: Any) -> AccountFacts:
    """The decision table's account (`test_conversation.account`), in `language`, with a
    passcode asked for deposits over $50.00."""
    return any_account(
        **{"language": language, "has_passcode": True, "passcode_over_cents": 5000, **changes}
    )


def offer(**changes: Any) -> OfferFacts:
    values: dict[str, Any] = {
        "prompt_id": 10,
        "account_id": 1,
        "status": "pending",
        "amount_cents": 2500,
        "fee_cents": 0,
        "expires_at": NOW + timedelta(days=1),
        "live": True,
        **changes,
    }
    return OfferFacts(**values)


ASKED = {"passcode": "open", "passcode_amount_cents": 10_000, "passcode_requested_at": NOW}
LOCKED = {"passcode_locked_until": NOW + timedelta(hours=20)}

# (case, account changes, offer changes, text (YES / SI: the keyword), whether the passcode
# typed is right, effects, reply key, words the English and Spanish replies hold)
ROWS: list[
    tuple[
        str,
        dict[str, Any],
        dict[str, Any],
        str,
        bool | None,
        tuple[Any, ...],
        str | None,
        tuple[str, str],
    ]
] = [
    (
        "under the amount: YES pays as today",
        {},
        {},
        "{yes}",
        None,
        (Fund(10, 1, 2500),),
        None,
        ("", ""),
    ),
    (
        "exactly the amount: YES pays",
        {},
        {},
        "{yes} 50",
        None,
        (Fund(10, 1, 5000),),
        None,
        ("", ""),
    ),
    (
        "over the amount: the passcode is asked for",
        {},
        {},
        "{yes} 100",
        None,
        (AskPasscode(10, 1, 10_000),),
        "passcode_asked",
        (
            "reply with your 4-digit passcode to add $100.00 to acct ...4821",
            "responda con su clave de 4 dígitos para agregar $100.00 a la cuenta ...4821",
        ),
    ),
    (
        "a new phone: the passcode is asked for any amount",
        {"new_phone": True},
        {},
        "{yes}",
        None,
        (AskPasscode(10, 1, 2500),),
        "passcode_asked",
        ("add $25.00", "agregar $25.00"),
    ),
    (
        "no passcode on the account: the rules do not apply",
        {"has_passcode": False, "new_phone": True},
        {},
        "{yes} 100",
        None,
        (Fund(10, 1, 10_000),),
        None,
        ("", ""),
    ),
    (
        "no amount rule (null): only a new phone asks",
        {"passcode_over_cents": None},
        {},
        "{yes} 200",
        None,
        (Fund(10, 1, 20_000),),
        None,
        ("", ""),
    ),
    (
        "locked: a YES that needs the passcode charges nothing",
        LOCKED,
        {},
        "{yes} 100",
        None,
        (),
        "passcode_locked",
        ("locked until 10:05am tomorrow after 3 wrong passcodes", "bloqueados hasta mañana 10:05"),
    ),
    (
        "locked: a YES that needs none still pays",
        LOCKED,
        {},
        "{yes}",
        None,
        (Fund(10, 1, 2500),),
        None,
        ("", ""),
    ),
    (
        "a YES again while asked: asked again, for the new amount",
        {},
        ASKED,
        "{yes} 60",
        None,
        (AskPasscode(10, 1, 6000),),
        "passcode_asked",
        ("add $60.00", "agregar $60.00"),
    ),
    (
        "the right passcode funds the amount the YES asked for",
        {},
        ASKED,
        "4821",
        True,
        (PasscodeTried(1, right=True), Fund(10, 1, 10_000)),
        None,
        ("", ""),
    ),
    (
        "a wrong passcode: two tries left",
        {},
        ASKED,
        "1111",
        False,
        (PasscodeTried(1, right=False),),
        "passcode_wrong",
        (
            "wrong passcode for acct ...4821, so nothing was charged. 2 tries left.",
            "clave incorrecta para la cuenta ...4821; no se cobró nada. Quedan 2 intentos.",
        ),
    ),
    (
        "the second wrong passcode: one try left",
        {"passcode_tries_left": 2},
        ASKED,
        "1111",
        False,
        (PasscodeTried(1, right=False),),
        "passcode_wrong",
        ("1 try left.", "Queda 1 intento."),
    ),
    (
        "the third wrong passcode locks, and says how to reach support",
        {"passcode_tries_left": 1},
        ASKED,
        "1111",
        False,
        (PasscodeTried(1, right=False, lock=True),),
        "passcode_locked_now",
        (
            "locked for 24 hours. Nothing was charged. For help, contact textpay.example/help",
            "bloqueados por 24 horas. No se cobró nada. Para ayuda, contacte a "
            "textpay.example/help",
        ),
    ),
    (
        "a passcode while locked is not checked",
        LOCKED,
        ASKED,
        "4821",
        None,
        (),
        "passcode_locked",
        ("locked until", "bloqueados hasta"),
    ),
    (
        "the right passcode, but the day's limit was reached meanwhile",
        {"deposited_last_24h_cents": 45_000},
        ASKED,
        "4821",
        True,
        (PasscodeTried(1, right=True),),
        "daily_limit",
        ("daily limit", "límite diario"),
    ),
    (
        "the right passcode, but the card was removed meanwhile",
        {"card_last4": None},
        ASKED,
        "4821",
        True,
        (PasscodeTried(1, right=True),),
        "no_card",
        ("no card", "no tiene tarjeta"),
    ),
    (
        "after 10 minutes: the request lapsed, nothing is charged",
        {},
        {**ASKED, "passcode": "lapsed"},
        "4821",
        None,
        (),
        "passcode_lapsed",
        (
            "after the 10-min limit, so nothing was charged to acct ...4821. Reply YES to start",
            "después del límite de 10 min; no se cobró nada a la cuenta ...4821. Responda SI",
        ),
    ),
    (
        "a second passcode text once funded charges nothing",
        {},
        {**ASKED, "passcode": "used", "status": "funded", "live": False},
        "4821",
        None,
        (),
        "passcode_used",
        ("already done, so nothing more was charged", "no se cobró nada más"),
    ),
    (
        "a second passcode text while the charge is in flight",
        {},
        {**ASKED, "passcode": "used", "status": "accepted", "live": False},
        "4821",
        None,
        (),
        "already_processing",
        ("already being processed", "ya se está procesando"),
    ),
    (
        "four digits with no request: today's answer (a label alone means nothing)",
        {},
        {},
        "4821",
        None,
        (),
        "not_understood",
        ("didn't understand", "no entendimos"),
    ),
    (
        "YES, a label and an amount while asked: asked again for that amount",
        {},
        ASKED,
        "{yes} 4821 100",
        None,
        (AskPasscode(10, 1, 10_000),),
        "passcode_asked",
        ("add $100.00", "agregar $100.00"),
    ),
    (
        "YES and a label under the amount while asked: pays as today",
        {},
        ASKED,
        "{yes} 4821",
        None,
        (Fund(10, 1, 2500),),
        None,
        ("", ""),
    ),
    ("NO while asked declines the offer", {}, ASKED, "NO", None, None, "declined", ("", "")),
]


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_passcode_decision(row: tuple[Any, ...], language: str) -> None:
    _, account_changes, offer_changes, text, right, effects, key, words = row
    facts = Facts(
        accounts=(account(language, **account_changes),),
        offers=(offer(**offer_changes),),
        passcode_right=right,
    )
    typed = text.format(yes="YES" if language == "en" else "SI")
    decision = decide(facts, parse(typed))
    if effects is not None:
        assert decision.effects == effects
    assert (decision.reply.key if decision.reply else None) == key
    if decision.reply is not None:
        said = replies.render(decision.reply, facts, language=language, now=NOW, voice=VOICE)
        expected = words[0] if language == "en" else words[1]
        # Spanish is folded when folding saves a segment: compare without accents too.
        assert fold(expected) in fold(said)


def test_a_passcode_is_checked_against_the_latest_request_only() -> None:
    """Two accounts on the phone, both asked: four digits answer the one asked last."""
    second = replace(account("en"), account_id=2, label="7730")
    facts = Facts(
        accounts=(account("en"), second),
        offers=(
            offer(**ASKED),
            offer(
                prompt_id=20,
                account_id=2,
                **{
                    **ASKED,
                    "passcode_amount_cents": 6000,
                    "passcode_requested_at": NOW + timedelta(minutes=1),
                },
            ),
        ),
        passcode_right=True,
    )
    assert decide(facts, parse("4821")).effects == (
        PasscodeTried(2, right=True),
        Fund(20, 2, 6000),
    )


def test_a_passcode_nobody_checked_never_charges() -> None:
    facts = Facts(accounts=(account("en"),), offers=(offer(**ASKED),), passcode_right=None)
    assert decide(facts, parse("4821")).effects == ()


def test_four_digits_from_an_opted_out_number_or_no_account_are_answered_as_today() -> None:
    opted_out = Facts(accounts=(account("en"),), offers=(offer(**ASKED),), opted_out=True)
    reply = decide(opted_out, parse("4821")).reply
    assert reply is not None
    assert reply.key == "still_opted_out"
    nobody = decide(Facts(accounts=()), parse("4821")).reply
    assert nobody is not None
    assert nobody.key == "unknown_number"
