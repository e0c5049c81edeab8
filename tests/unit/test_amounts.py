"""The amount charged is the amount typed, on the account named, or nothing.

A property test throws texts at the parser and the decision table: YES or SI followed by any mix
of digits of several scripts, `$`, `.`, `,`, `-`, `¢`, spaces and account labels. Whatever it
charges must be exactly what a strict reader of the text sees (written here, independently and
simply) or nothing at all; never a guess.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from textpay.conversation import AccountFacts, Facts, Fund, OfferFacts, decide, parse
from textpay.money import parse_amount

NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)
PRESET = 2500


def account(account_id: int, label: str) -> AccountFacts:
    return AccountFacts(
        account_id=account_id,
        label=label,
        nickname="",
        language="en",
        timezone="America/New_York",
        balance_cents=310,
        balance_as_of=NOW,
        autopay_enabled=False,
        card_last4="4242",
        preset_amount_cents=PRESET,
        threshold_cents=500,
        min_deposit_cents=1,  # limits wide open: only the reading decides what is charged
        max_deposit_cents=10**15,
        daily_limit_cents=10**16,
        deposited_last_24h_cents=0,
    )


# ...4821 has a live $25.00 offer; ...0050, on the same phone, has none.
FACTS = Facts(
    accounts=(account(1, "4821"), account(2, "0050")),
    offers=(OfferFacts(10, 1, "pending", PRESET, 0, NOW + timedelta(days=1), live=True),),
)
LABEL_WITH_OFFER, LABEL_WITHOUT = "4821", "0050"

# Zeros of the digit sets the texts mix: ASCII, Arabic-Indic, Eastern Arabic-Indic (Persian,
# Urdu), Devanagari, Bengali, full width.
ZEROS = (0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xFF10)
DIGITS = "".join(chr(zero + d) for zero in ZEROS for d in range(10))


def looks_like_money(word: str) -> bool:
    return any(c in DIGITS + "$¢²" for c in word)


def strict_reading(text: str) -> int | None:
    """The cents a careful clerk would charge for `text`, or None for "charge nothing".

    After the keyword, each word (a full stop or comma at its end is punctuation) is one of:
    an account label (`...` in front allowed, as TextPay writes labels), which names that
    account; or an amount: optional `$`, dollars (plain, or grouped by commas in threes),
    optional `.` and one or two cent digits, where four or more dollar digits need the `$` or
    the point; all digits from one script. Words without digits, `$` or `¢` are not amounts.
    Anything else, two amounts, naming the account without an offer, or a lone sign right
    before a number: charge nothing. No amount: the offer's."""
    words = [w.rstrip(".,") for w in text.split()[1:] if w.rstrip(".,")]
    amounts: list[int] = []
    for index, word in enumerate(words):
        if set(word) <= set("-+"):
            if looks_like_money("".join(words[index + 1 : index + 2])):
                return None  # a sign before a number: minus five is not five
            continue  # a dash between words
        if not looks_like_money(word):
            continue  # punctuation, like any word, is not an amount
        scripts = {ord(c) - unicodedata.decimal(c) for c in word if c in DIGITS}
        if len(scripts) > 1:
            return None
        ascii_word = "".join(str(unicodedata.decimal(c)) if c in DIGITS else c for c in word)
        label = ascii_word.removeprefix("...")
        if label == LABEL_WITHOUT:
            return None
        if label == LABEL_WITH_OFFER:
            continue
        match = re.fullmatch(
            r"(\$?)([0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.([0-9]{1,2}))?", ascii_word
        )
        if match is None:
            return None
        sign, dollars, cents = match.groups()
        if not sign and cents is None and len(dollars) > 3:
            return None
        amounts.append(int(dollars.replace(",", "")) * 100 + int((cents or "0").ljust(2, "0")))
    if len(amounts) > 1:
        return None
    return amounts[0] if amounts else PRESET


def charged(text: str) -> Fund | None:
    funds = [e for e in decide(FACTS, parse(text)).effects if isinstance(e, Fund)]
    assert len(funds) <= 1
    return funds[0] if funds else None


junk = st.text(alphabet=DIGITS + "$.,-¢² ", min_size=1, max_size=9)
digits_of_one_script = st.sampled_from(ZEROS).flatmap(
    lambda zero: st.text(alphabet="".join(chr(zero + d) for d in range(10)), min_size=1, max_size=7)
)
written_amount = st.builds(
    lambda dollar, whole, cents, grouped: (
        ("$" if dollar else "")
        + (f"{whole:,}" if grouped else str(whole))
        + (f".{cents}" if cents is not None else "")
    ),
    st.booleans(),
    st.integers(min_value=0, max_value=99_999),
    st.one_of(st.none(), st.from_regex(r"[0-9]{1,3}", fullmatch=True)),
    st.booleans(),
)
label = st.sampled_from(["4821", "0050", "...4821", "...0050", "\u0664\u0668\u0662\u0661"])
word = st.one_of(junk, digits_of_one_script, written_amount, label, st.sampled_from(["-", "¢"]))
texts = st.builds(
    lambda keyword, words, gaps: (
        keyword + "".join(g + w for g, w in zip(gaps, words, strict=False))
    ),
    st.sampled_from(["YES", "yes", "Y", "SI", "Sí"]),
    st.lists(word, max_size=3),
    st.lists(st.sampled_from([" ", "  ", "\u00a0"]), min_size=3, max_size=3),
)


@settings(max_examples=1500, deadline=None)
@given(texts)
@example("YES .40")
@example("YES 40¢")
@example("YES -5")
@example("YES - 5")
@example("YES 1,5")
@example("SI 7,5")
@example("YES \u0664\u0660")
@example("YES 0000")
@example("YES 0050")
@example("YES 4821")
@example("YES 1000")
@example("YES $1,000.00")
@example("YES 4\u0660")
def test_what_is_charged_is_what_was_typed_or_nothing(text: str) -> None:
    fund = charged(text)
    expected = strict_reading(text)
    if fund is None:
        return  # charging nothing is always allowed (a card-like run of digits, say)
    assert (fund.prompt_id, fund.account_id) == (10, 1), text  # only ...4821 has an offer
    assert fund.amount_cents == expected, text


@pytest.mark.parametrize(
    ("text", "cents"),
    [("YES", PRESET), ("YES 40", 4000), ("YES $40.5", 4050), ("SI \u0664\u0660", 4000),
     ("YES 4821 $1,000.00", 100_000), ("YES 1000.00", 100_000), ("Y $1000", 100_000),
     ("YES \uff14\uff10.\uff15\uff10", 4050), ("YES ...4821 40", 4000)],
)  # fmt: skip
def test_clean_amounts_are_charged_exactly(text: str, cents: int) -> None:
    fund = charged(text)
    assert fund is not None
    assert fund.amount_cents == cents == strict_reading(text)


@pytest.mark.parametrize(
    "text",
    ["YES .40", "YES 40¢", "YES -5", "YES - 5", "YES 1,5", "SI 7,5", "YES 0000", "YES 0050",
     "YES 1000", "YES 1,000", "YES 4\u0660", "YES 40.505", "YES 40 50", "YES 4821 0050",
     "YES 40$", "YES \u0664\u0660\u066b\u0665"],
)  # fmt: skip
def test_anything_else_that_looks_like_money_charges_nothing(text: str) -> None:
    assert charged(text) is None
    assert strict_reading(text) is None


@pytest.mark.parametrize(
    ("written", "cents"),
    [("40", 4000), ("$40", 4000), ("40.50", 4050), ("$40.5", 4050), ("$1,000.00", 100_000),
     ("1,000.00", 100_000), ("$1000", 100_000), ("1000.00", 100_000), ("$0", 0),
     ("\u0664\u0660", 4000), ("$25.00", 2500), ("$12,345,678.90", 1_234_567_890)],
)  # fmt: skip
def test_parse_amount_reads_dollars_as_typed(written: str, cents: int) -> None:
    assert parse_amount(written) == cents


@pytest.mark.parametrize(
    "written",
    ["1000", "1,000", ".40", "-5", "+5", "40¢", "1,5", "7,5", "40.505", "40$", "$1,00",
     "$ 40", "4\u0660", "\u00b2", "0000", "40.", "1,000,000", "forty", ""],
)  # fmt: skip
def test_parse_amount_refuses_what_it_would_have_to_guess(written: str) -> None:
    assert parse_amount(written) is None
