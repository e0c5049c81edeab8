"""What a text costs on the wire: its encoding, how many SMS segments it is sent as, and the
folding that keeps it in the cheap encoding.

Owns the SMS arithmetic (3GPP TS 23.038 and concatenated SMS as carriers bill it), and nothing
else: pure functions of a string, no I/O.

- A text made only of the GSM-7 alphabet goes as GSM-7: 160 septets in one segment, 153 a
  segment when it needs more (7 septets carry the concatenation header). Characters of the
  extension table (`^ { } \\ [ ] ~ | €` and form feed) take two septets (an escape and the
  character), and an escape pair is never split across two segments.
- One character outside that alphabet turns the whole text into UCS-2: 70 UTF-16 code units in
  one segment, 67 a segment when it needs more. A character outside the Basic Multilingual Plane
  (most emoji) is two code units, and a surrogate pair is never split.
- `fold` replaces characters the way Twilio's Smart Encoding does (curly quotes, dashes, odd
  spaces, letters with accents GSM-7 lacks: `á` → `a`), so that a text that only missed GSM-7 by
  a few characters goes in the cheaper encoding.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# The GSM 03.38 default alphabet (the escape character itself left out: it is not text).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each is sent as an escape plus the character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM7 = 160
PART_GSM7 = 153
SINGLE_UCS2 = 70
PART_UCS2 = 67

# What Twilio's Smart Encoding transliterates, by what it becomes (our own grouping of its
# published list: quotation marks, apostrophes, dashes, spaces and a few symbols).
_FOLDS_TO = {
    '"': "«»“”„‟″ʺ˝ˮ❝❞〝〞＂",  # noqa: RUF001 (these look-alikes are the point)
    "'": "‘’‚‛′ʹʻʼʽˈˊˋ´`❛❜＇",  # noqa: RUF001
    "-": "‐‑‒–—―⁃−﹘﹣－",  # noqa: RUF001
    " ": "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000\u2028\u2029\t",
    "": "\u200b\u200c\u200d\u2060\ufeff\u00ad",  # invisible: dropped
    ",": "，",  # noqa: RUF001
    ".": "．",  # noqa: RUF001
    ":": "：",  # noqa: RUF001
    ";": "；",  # noqa: RUF001
    "/": "⁄∕／",  # noqa: RUF001
    "<": "‹＜",  # noqa: RUF001
    ">": "›＞",  # noqa: RUF001
    "*": "∗＊",  # noqa: RUF001
    "!": "！",  # noqa: RUF001
    "?": "？",  # noqa: RUF001
    "(": "（",  # noqa: RUF001
    ")": "）",  # noqa: RUF001
    "...": "…",
}
_FOLD = {char: folded for folded, chars in _FOLDS_TO.items() for char in chars}


_GSM7_ANY = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM-7 alphabet or its extension table."""
    return _GSM7_ANY.issuperset(text)


def encoding(text: str) -> Encoding:
    """How `text` is sent: GSM-7 when it can be, else UCS-2."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def segments(text: str) -> int:
    """How many SMS segments `text` is sent as (what carriers bill). An empty text is one:
    a message is never less than one segment."""
    if is_gsm7(text):
        if GSM7_EXTENSION.isdisjoint(text):  # every character one unit: no packing to do
            return 1 if len(text) <= SINGLE_GSM7 else -(-len(text) // PART_GSM7)
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part = SINGLE_GSM7, PART_GSM7
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part = SINGLE_UCS2, PART_UCS2
    if sum(units) <= single:
        return 1
    # Pack greedily: a character (an escape pair, a surrogate pair) that does not fit in what
    # is left of a segment starts the next one.
    count, used = 1, 0
    for size in units:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def fold_char(char: str) -> str:
    """One character as Smart Encoding would send it (unchanged when it is GSM-7 already or
    has no GSM-7 look-alike)."""
    if char in GSM7_BASIC or char in GSM7_EXTENSION:
        return char
    if char in _FOLD:
        return _FOLD[char]
    # A letter with an accent GSM-7 lacks (á, í, ó, ú, ç, ā ...) loses the accent.
    base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    if base and all(c in GSM7_BASIC for c in base):
        return base
    return char


def fold(text: str) -> str:
    """`text` with every character Smart Encoding would replace replaced. The result is GSM-7
    unless the text holds something with no look-alike (an emoji, Chinese)."""
    if is_gsm7(text):
        return text
    return "".join(fold_char(c) for c in text)
