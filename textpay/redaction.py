"""Keeping card numbers and passcodes out of everything TextPay writes.

Subscribers sometimes text their card number, and operators sometimes paste one into the wrong
field. It must never reach the database, a log line or a text (PCI DSS): in a subscriber's
message it is masked before the text is stored, logged or read; in an operator's field it is
refused (`textpay.schemas`).

What counts as a card number, however it was typed:

- A digit is any decimal digit of any script as NFKC reads it: ASCII, full-width,
  Arabic-Indic, Devanagari and every other script's digits, mathematical and superscript
  digits, circled digits, keycap emoji.
- A run is digits whose groups are apart by at most `MAX_GAP` separator characters:
  punctuation and symbols of any kind (`.`, `_`, `/`, `,`, `(`, `)`, dashes, `|`, `*`, ...) and
  spaces of any kind, where a stretch of whitespace (spaces, tabs, newlines, no-break spaces)
  counts as one. Invisible characters (zero-width space and joiners, soft hyphen, direction
  marks, byte-order mark, variation selectors, combining marks, control characters) count as
  nothing. A letter or a currency sign ends a run (so does a number sign that NFKC does not
  read as digits), so two numbers with a word between them, `YES $40 $25`, stay apart.
- A run is a card number when it holds 15 or more digits (every card of 15 to 19 digits; a
  15- or 16-digit card mistyped; a card with its expiry or security code typed after it), or 13
  or 14 digits that pass the Luhn check (13-digit Visa, 14-digit Diners).

The whole run is masked, separators inside it included; what is around it is kept as typed.

A passcode (`textpay.passcodes`) is a text of four digits and nothing else (`passcode_typed`):
any such text is stored as `PASSCODE_MASK`, whether or not a passcode was asked for, and while
one is asked for every run of four digits in any text is masked too (`mask_four_digit_runs`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MASK = "[card number removed]"
PASSCODE_MASK = "[passcode removed]"
PASSCODE_DIGITS = 4
# Four decimal digits of any script, not part of a longer run of digits.
_FOUR_DIGITS = re.compile(r"(?<!\d)\d{4}(?!\d)")
MIN_DIGITS = 13  # a run shorter than this is never a card number
ALWAYS_DIGITS = 15  # from here on a run is a card number whatever its check digit
MAX_GAP = 3  # separator characters allowed between two digits of one run (` - `, `) (`)

# Control characters other than tab and newlines: never meaningful in a text, and PostgreSQL
# refuses NUL outright.
_CONTROL = frozenset(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
# Letters that show as blank space (Hangul fillers): invisible, not words.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Cc"})

_DIGIT, _SPACE, _GAP, _INVISIBLE, _BREAK = range(5)
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a digit doubled, its two digits added up


def _kind(char: str) -> int:
    """What one character (already NFKC-normalised) is to a run of digits."""
    if char.isdecimal():
        return _DIGIT
    if char.isspace():
        return _SPACE
    category = unicodedata.category(char)
    if category in _INVISIBLE_CATEGORIES or char in _BLANK_LETTERS:
        return _INVISIBLE
    if category[0] in "LN" or category == "Sc":
        return _BREAK
    return _GAP


def _read(text: str) -> Iterator[tuple[int, str]]:
    """Each character of `text` as NFKC reads it, with where it was typed (NFKC may turn one
    character into several: `⑫` → `12`)."""
    for index, char in enumerate(text):
        if char.isascii():
            yield index, char
        else:
            for part in unicodedata.normalize("NFKC", char):
                yield index, part


def luhn_valid(digits: list[int]) -> bool:
    """The Luhn (mod 10) check that every card number's last digit satisfies."""
    odd = digits[-1::-2]  # from the check digit leftwards, every other digit as it is
    even = digits[-2::-2]  # and the others doubled, their two digits added up
    return (sum(odd) + sum(_DOUBLED[d] for d in even)) % 10 == 0


def is_card_number(digits: list[int]) -> bool:
    """Whether the digits of one run are (or hold) a card number."""
    if len(digits) >= ALWAYS_DIGITS:
        return True
    return len(digits) >= MIN_DIGITS and luhn_valid(digits)


def card_number_spans(text: str) -> list[tuple[int, int]]:
    """Where the card numbers in `text` are: (start, end) slices, in order, not overlapping."""
    readable = text if text.isascii() else unicodedata.normalize("NFKC", text)
    if sum(c.isdecimal() for c in readable) < MIN_DIGITS:
        return []  # the common case: too few digits in all for any card number
    return [(start, end) for start, end, digits in _digit_runs(text) if is_card_number(digits)]


def _digit_runs(text: str) -> list[tuple[int, int, list[int]]]:
    """Every run of digits in `text` (see above): (start, end) slices with the run's digits."""
    runs: list[tuple[int, int, list[int]]] = []
    digits: list[int] = []
    start = end = 0  # where the run's first and last digits were typed
    gap = 0  # separators since the run's last digit
    in_space = False  # the last separator was whitespace (a stretch of it counts once)

    def close() -> None:
        nonlocal digits
        if digits:
            runs.append((start, end + 1, digits))
        digits = []

    for index, char in _read(text):
        kind = _kind(char)
        if kind == _DIGIT:
            if digits and gap > MAX_GAP:
                close()
            if not digits:
                start = index
            digits.append(unicodedata.decimal(char))
            end, gap, in_space = index, 0, False
        elif kind == _SPACE:
            gap += 0 if in_space else 1
            in_space = True
        elif kind == _GAP:
            gap += 1
            in_space = False
        elif kind == _BREAK:
            close()
            gap, in_space = 0, False
        elif digits and gap == 0:  # invisible, on a digit (keycap `4️⃣`): masked with it
            end = index
    close()
    return runs


def has_card_number(text: str) -> bool:
    return bool(card_number_spans(text))


def mask_card_numbers(text: str, mask: str = MASK) -> tuple[str, bool]:
    """The text with each card number replaced by `mask`, and whether there was any."""
    spans = card_number_spans(text)
    if not spans:
        return text, False
    kept: list[str] = []
    previous = 0
    for start, end in spans:
        kept += [text[previous:start], mask]
        previous = end
    kept.append(text[previous:])
    return "".join(kept), True


def without_control_characters(text: str) -> str:
    return "".join(c for c in text if c not in _CONTROL) if not text.isprintable() else text


def storable(text: str) -> str:
    """Text safe to keep and log: control characters dropped, then card numbers masked (in
    that order, so that a control character typed between digits hides nothing)."""
    return mask_card_numbers(without_control_characters(text))[0]


def passcode_typed(text: str) -> str | None:
    """The passcode (as ASCII digits) of a text that is four digits and nothing else: decimal
    digits of any script as NFKC reads them (`1234`, full-width, Arabic-Indic, keycaps), with
    only spaces, punctuation and invisible characters around or between them. None for any
    other text (`YES 1234`, `12345`); `12 34` and `#1234` are four digits too."""
    digits: list[str] = []
    for _, char in _read(text):
        kind = _kind(char)
        if kind == _DIGIT:
            digits.append(str(unicodedata.decimal(char)))
            if len(digits) > PASSCODE_DIGITS:
                return None
        elif kind == _BREAK:
            return None  # a letter, a currency sign, another kind of number
    return "".join(digits) if len(digits) == PASSCODE_DIGITS else None


def mask_four_digit_runs(text: str, *, keep: frozenset[str] = frozenset()) -> str:
    """`text` with every four digits written `PASSCODE_MASK` (while a passcode is asked for,
    `my code is 1234` is kept without it): a run of digits that holds four in all, however
    they were spaced or written (`24 68`, `2-4-6-8`, `②④⑥⑧`), and any four digits on their
    own inside a longer run (`YES 100 1234`). Four digits in `keep` (ASCII: the labels of the
    phone's accounts, which a passcode never is) stay as written."""
    kept: list[str] = []
    previous = 0
    for start, end, digits in _digit_runs(text):
        if len(digits) == PASSCODE_DIGITS and "".join(map(str, digits)) not in keep:
            kept += [text[previous:start], PASSCODE_MASK]
            previous = end
    kept.append(text[previous:])
    return _FOUR_DIGITS.sub(
        lambda found: found[0] if found[0] in keep else PASSCODE_MASK, "".join(kept)
    )
