"""Card numbers typed any way are masked, and the text around them still means what it said.

The table of formats is in tests/card_numbers.py; tests/web/test_card_numbers.py sends the same
table through the webhook and the admin API.
"""

from __future__ import annotations

import pytest

from tests.card_numbers import CARD_TEXTS, NOT_CARDS, VISA, CardText, digits_of
from tests.unit.test_conversation import ONE_OFFER
from textpay.conversation import Intent, OptOut, decide, parse
from textpay.redaction import (
    MASK,
    MAX_GAP,
    card_number_spans,
    has_card_number,
    mask_card_numbers,
    storable,
)


def test_the_table_is_substantial() -> None:
    assert len(CARD_TEXTS) >= 40
    assert len({case.name for case in CARD_TEXTS}) == len(CARD_TEXTS)
    assert len({case.text for case in CARD_TEXTS}) == len(CARD_TEXTS)
    assert len(NOT_CARDS) >= 5


@pytest.mark.parametrize("case", CARD_TEXTS, ids=lambda case: case.name)
def test_a_card_number_is_masked_however_it_is_typed(case: CardText) -> None:
    kept = storable(case.text)
    assert MASK in kept
    assert case.digits not in digits_of(kept)
    assert not has_card_number(kept)
    assert storable(kept) == kept


@pytest.mark.parametrize("case", CARD_TEXTS, ids=lambda case: case.name)
def test_a_card_number_however_typed_gets_the_warning_and_charges_nothing(case: CardText) -> None:
    command = parse(case.text)
    assert command.card_number
    decision = decide(ONE_OFFER, command)
    assert decision.reply is not None
    assert decision.reply.key == "card_number_warning"
    assert decision.effects == ()


@pytest.mark.parametrize("text", NOT_CARDS)
def test_numbers_that_are_not_card_numbers_are_kept_as_typed(text: str) -> None:
    assert card_number_spans(text) == []
    assert storable(text) == text
    assert not parse(text).card_number


def test_amounts_and_labels_around_no_card_still_read_as_before() -> None:
    reading = parse("YES 4821 40").read(["4821"])
    assert (reading.named, reading.amount_cents, reading.bad_amount) == (("4821",), 4000, False)
    assert parse("YES $1,000.00").read([]).amount_cents == 100_000
    assert parse("YES 1234567890 40").read(["1234567890"]).amount_cents == 4000


def test_what_is_around_a_card_number_is_kept() -> None:
    text = f"my card is {VISA[:8]} {VISA[8:]}, exp 12/27. YES 40"
    assert storable(text) == f"my card is {MASK}, exp 12/27. YES 40"
    assert storable("(4242)(4242)(4242)(4242)") == f"({MASK})"
    assert mask_card_numbers(f"{VISA} and {VISA}") == (f"{MASK} and {MASK}", True)


def test_the_masked_text_still_parses() -> None:
    # Opt-out words win even next to a card number; other keywords give way to the warning.
    for text in (f"STOP {VISA}", f"{VISA} stop", "4242 4242\n4242 4242\nALTO"):
        command = parse(text)
        assert command.intent is Intent.OPT_OUT
        assert command.card_number
        assert decide(ONE_OFFER, command).effects == (OptOut(),)
    assert parse(f"YES {VISA}").intent is Intent.CONFIRM
    assert parse(f"YES{VISA}").intent is Intent.CONFIRM
    assert parse(VISA).intent is Intent.EMPTY
    language = parse(f"ESPANOL {VISA}")  # was: the language changed, and no warning
    assert language.card_number
    reply = decide(ONE_OFFER, language).reply
    assert reply is not None
    assert reply.key == "card_number_warning"


@pytest.mark.parametrize(
    ("separator", "one_run"),
    [
        ("-" * MAX_GAP, True),
        ("-" * (MAX_GAP + 1), False),
        (" - ", True),
        (" -- ", False),
        (") (", True),
        (")  (", True),  # a stretch of whitespace counts once
        (" \t\n \n ", True),
        ("\u200b" * 10, True),  # invisible characters count for nothing
        ("\x00" * 10, True),  # nor do control characters (dropped before storing)
        ("-\u200b-\u200b-\u200b-", False),
        (" x ", False),  # a letter ends a run
        (" $", False),  # so does a currency sign
        ("\N{VULGAR FRACTION ONE HALF}", True),  # NFKC reads 1, fraction slash, 2
    ],
)
def test_what_joins_two_groups_into_one_run(separator: str, one_run: bool) -> None:
    text = f"{VISA[:8]}{separator}{VISA[8:]}"
    assert has_card_number(text) is one_run
    assert (VISA in digits_of(storable(text))) is not one_run


@pytest.mark.parametrize(
    ("digits", "masked"),
    [
        ("424242424242", False),  # 12 digits: never a card, Luhn-valid or not
        ("4222222222222", True),  # 13, Luhn-valid (Visa)
        ("4222222222223", False),  # 13, not
        ("30569309025904", True),  # 14, Luhn-valid (Diners)
        ("30569309025905", False),  # 14, not
        ("378282246310006", True),  # 15: always (a mistyped Amex is still a card number)
        ("4242424242424241", True),  # 16: always
        ("42424242424242421", True),  # 17, 18, 19: a card with more typed after it
        ("424242424242424212", True),
        ("4242424242424242123", True),
        ("42424242424242421227", True),  # 20 and more: a card with its expiry, say
    ],
)
def test_how_many_digits_make_a_card_number(digits: str, masked: bool) -> None:
    assert has_card_number(digits) is masked
    spaced = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    assert has_card_number(spaced) is masked


def test_a_control_character_between_digits_hides_nothing() -> None:
    # Control characters are dropped before storing: they must not split a card number first.
    kept = storable("4242\x004242\x01\x02\x03\x04\x05" + "4242\x7f4242")
    assert kept == MASK
