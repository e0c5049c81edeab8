"""Money as people read and type it: `$3.10` out, `40`, `$40`, `40.50`, `$1,000.00` in.

Amounts are integer cents everywhere inside TextPay; this module is the only place that turns
them into text or text into them, without ever touching a float.

Reading is strict on purpose: a text moves money, so an amount is read only when it can be read
one way. What is accepted:

- dollars in digits, with or without `$` in front: `40`, `$40`;
- cents after a decimal point, one or two digits: `40.50`, `$40.5` (both $40.50: a single
  digit after the point can only mean tenths of a dollar);
- thousands grouped by commas in threes: `$1,000`, `1,000.00`, `$1,000.00`;
- four or more dollar digits only with `$` or a decimal point: `$1000`, `1000.00` (a bare
  `1000` may be an account number, and a bare `1,000` reads as 1 in half of the Americas);
- digits of any one script, each read for its exact value (`unicodedata.decimal`): `٤٠` (Arabic-
  Indic) is 40, and so are full-width digits. Digits of two scripts in one amount are refused, as
  Unicode's security guidance advises; superscripts and other number-like signs (`²`, `½`) are
  not decimal digits and are refused.

Anything else is refused rather than guessed: `-5`, `+5`, `40¢`, `.40`, `40,50`, `1,5`,
`40.505`, `40$`, `€40`, `$ 40`.
"""

from __future__ import annotations

import re
import unicodedata

# After digits are made ASCII: optional $, dollars (plain or grouped by commas), optional cents.
_AMOUNT = re.compile(r"\$?(?P<dollars>[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.(?P<cents>[0-9]{1,2}))?")
# Fewer than four dollar digits need nothing more; four or more need a $ or a decimal point.
_SHORT_BARE = re.compile(r"[0-9]{1,3}")


def format_cents(cents: int) -> str:
    """`310` → `$3.10`; `-190` → `-$1.90`; `250000` → `$2,500.00`."""
    sign = "-" if cents < 0 else ""
    dollars, remainder = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{remainder:02d}"


def ascii_digits(text: str) -> str | None:
    """`text` with its decimal digits written as ASCII (`٤٠` → `40`), other characters left as
    they are; None when its digits come from more than one script (`4` and an Arabic-Indic
    zero)."""
    zeros: set[int] = set()
    written: list[str] = []
    for char in text:
        if unicodedata.category(char) == "Nd":
            value = unicodedata.decimal(char)
            zeros.add(ord(char) - value)
            written.append(str(value))
        else:
            written.append(char)
    return "".join(written) if len(zeros) <= 1 else None


def parse_amount(text: str) -> int | None:
    """Cents from how a subscriber writes dollars, by the rules above; None for anything that
    is not plainly an amount. `$0` is 0 (an amount, if not one anyone may pay)."""
    written = ascii_digits(text.strip())
    if written is None:
        return None
    match = _AMOUNT.fullmatch(written)
    if match is None:
        return None
    dollars, cents = match["dollars"], match["cents"]
    marked = written.startswith("$") or cents is not None
    if not marked and not _SHORT_BARE.fullmatch(dollars):
        return None  # `1000`, `1,000`: four or more digits need a $ or a decimal point
    return int(dollars.replace(",", "")) * 100 + int((cents or "0").ljust(2, "0"))
