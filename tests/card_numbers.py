"""Card numbers as people type them, and texts that only look a little like one.

Shared by the unit tests of `textpay.redaction` and the webhook and admin tests: every text in
CARD_TEXTS must be masked wherever TextPay writes it and answered with the card warning; every
text in NOT_CARDS must be stored exactly as typed and read as usual.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

VISA = "4242424242424242"


@dataclass(frozen=True)
class CardText:
    name: str
    text: str
    digits: str  # the card's digits, in ASCII: they must appear nowhere TextPay writes


def _join(separator: str, groups: tuple[str, ...] = ("4242", "4242", "4242", "4242")) -> str:
    return separator.join(groups)


def _script(zero: str, text: str) -> str:
    """`text` with its ASCII digits written in the script whose zero is `zero`."""
    return "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in text)


def _each_digit(separator: str, digits: str = VISA) -> str:
    return separator.join(digits)


CARD_TEXTS: list[CardText] = [
    CardText("plain", VISA, VISA),
    CardText("single spaces", _join(" "), VISA),
    CardText("hyphens", _join("-"), VISA),
    CardText("dots", _join("."), VISA),
    CardText("double spaces", _join("  "), VISA),
    CardText("tabs", _join("\t"), VISA),
    CardText("newlines", _join("\n"), VISA),
    CardText("CRLF", _join("\r\n"), VISA),
    CardText("blank lines", _join("\n\n"), VISA),
    CardText("underscores", _join("_"), VISA),
    CardText("slashes", _join("/"), VISA),
    CardText("commas", _join(","), VISA),
    CardText("comma and space", _join(", "), VISA),
    CardText("spaced hyphens", _join(" - "), VISA),
    CardText("en dashes", _join("\N{EN DASH}"), VISA),
    CardText("em dashes", _join("\N{EM DASH}"), VISA),
    CardText("minus signs", _join("\N{MINUS SIGN}"), VISA),
    CardText("unicode hyphens", _join("\N{HYPHEN}"), VISA),
    CardText("non-breaking hyphens", _join("\N{NON-BREAKING HYPHEN}"), VISA),
    CardText("full-width hyphens", _join("\N{FULLWIDTH HYPHEN-MINUS}"), VISA),
    CardText("no-break spaces", _join("\N{NO-BREAK SPACE}"), VISA),
    CardText("narrow no-break spaces", _join("\N{NARROW NO-BREAK SPACE}"), VISA),
    CardText("thin spaces", _join("\N{THIN SPACE}"), VISA),
    CardText("ideographic spaces", _join("\N{IDEOGRAPHIC SPACE}"), VISA),
    CardText("zero-width spaces", _join("\N{ZERO WIDTH SPACE}"), VISA),
    CardText("word joiner between every digit", _each_digit("\N{WORD JOINER}"), VISA),
    CardText("soft hyphens", _join("\N{SOFT HYPHEN}"), VISA),
    CardText("right-to-left marks", _join(" \N{RIGHT-TO-LEFT MARK}"), VISA),
    CardText("Hangul fillers", _join("\N{HANGUL FILLER}"), VISA),
    CardText("parentheses", "(4242)(4242)(4242)(4242)", VISA),
    CardText("spaced parentheses", "(4242) (4242) (4242) (4242)", VISA),
    CardText("brackets", "[4242] [4242] [4242] [4242]", VISA),
    CardText("quoted groups", '"4242" "4242" "4242" "4242"', VISA),
    CardText("pipes", _join(" | "), VISA),
    CardText("stars", _join("*"), VISA),
    CardText("colons", _join(":"), VISA),
    CardText("hashes", _join("#"), VISA),
    CardText("plus signs", _join("+"), VISA),
    CardText("middle dots", _join("\N{MIDDLE DOT}"), VISA),
    CardText("bullets", _join(" \N{BULLET} "), VISA),
    CardText("ideographic full stops", _join("\N{IDEOGRAPHIC FULL STOP}"), VISA),
    CardText("full-width commas", _join("\N{FULLWIDTH COMMA}"), VISA),
    CardText("mixed separators", "4242-4242 4242.4242", VISA),
    CardText("a space between every digit", _each_digit(" "), VISA),
    CardText("a dot between every digit", _each_digit("."), VISA),
    CardText("full-width digits", _script("\N{FULLWIDTH DIGIT ZERO}", _join(" ")), VISA),
    CardText("Arabic-Indic digits", _script("\N{ARABIC-INDIC DIGIT ZERO}", _join(" ")), VISA),
    CardText("Persian digits", _script("\N{EXTENDED ARABIC-INDIC DIGIT ZERO}", VISA), VISA),
    CardText("Devanagari digits", _script("\N{DEVANAGARI DIGIT ZERO}", _join("-")), VISA),
    CardText("Bengali digits", _script("\N{BENGALI DIGIT ZERO}", VISA), VISA),
    CardText(
        "mathematical bold digits", _script("\N{MATHEMATICAL BOLD DIGIT ZERO}", _join(" ")), VISA
    ),
    CardText("two scripts", "4242 \u0664\u0662\u0664\u0662 4242 \uff14\uff12\uff14\uff12", VISA),
    CardText("superscript digits", "\u2074\u00b2\u2074\u00b2" * 4, VISA),
    CardText("circled digits", "\u2463\u2461\u2463\u2461 " * 4, VISA),
    CardText("keycap emoji", "".join(f"{d}\ufe0f\u20e3" for d in VISA), VISA),
    CardText("glued to a word", f"card:{VISA}", VISA),
    CardText("glued to YES", f"YES{VISA}", VISA),
    CardText("after YES", f"YES {_join(' ')}", VISA),
    CardText("after SI", f"SI {_join(' ')}", VISA),
    CardText("after YES and an amount", f"YES 40 {_join(' ')}", VISA),
    CardText("after ENGLISH", f"ENGLISH {_join(' ')}", VISA),
    CardText("in a sentence", f"my new card is {_join(' ')} thanks", VISA),
    CardText("with expiry and code", f"{_join(' ')} 12/27 123", VISA),
    CardText("with expiry glued", f"{VISA}1227", VISA),
    CardText("mistyped (fails Luhn)", "4242 4242 4242 4241", "4242424242424241"),
    CardText("Mastercard", "5555 5555 5555 4444", "5555555555554444"),
    CardText("Discover", "6011-1111-1111-1117", "6011111111111117"),
    CardText("JCB", "3566 0020 2036 0505", "3566002020360505"),
    CardText("Amex 4-6-5", "3782 822463 10005", "378282246310005"),
    CardText("Amex mistyped", "3782 822463 10006", "378282246310006"),
    CardText("Diners 14 digits", "3056 930902 5904", "30569309025904"),
    CardText("Visa 13 digits", "4222222222222", "4222222222222"),
    CardText("UnionPay 19 digits", "6221 2600 0000 0000 001", "6221260000000000001"),
    CardText("19 digits, Luhn-valid", "4111111111111111110", "4111111111111111110"),
]

# Texts that must be kept exactly as typed and never answered with the card warning.
NOT_CARDS: list[str] = [
    "YES",
    "YES 40",
    "YES $40.00",
    "YES $1,000.00",
    "YES 4821 40",
    "YES 40 4821",
    "YES 4821 $40.00",
    "YES #4821 40.50",
    "YES 1234567890 40",  # a 10-digit account number and an amount: 12 digits in all
    "YES 1234567890 $40.00",  # a currency sign ends the run
    "YES 4821 7730 0050",  # three labels: 12 digits
    "(212) 555-0147",
    "+1 (212) 555-0147",
    "call me at 212-555-0147 or 212-555-0148",
    "2026-11-26",
    "11/26/2026 2:05pm",
    "1234567890",
    "4222222222223",  # 13 digits that fail the Luhn check
    "12345678901234",  # 14 digits that fail the Luhn check
    "42424242----42424242",  # two groups more than MAX_GAP separators apart
    "YES 40 for 4821, 20 for 7730",
    "YES $40.00 $25.00 $1,000.00",  # currency signs end runs: 14 digits, never one run
    "BAL",
]


def digits_of(text: str) -> str:
    """Every decimal digit in `text`, in ASCII, with nothing between them."""
    return "".join(
        str(unicodedata.decimal(c)) for c in unicodedata.normalize("NFKC", text) if c.isdecimal()
    )
