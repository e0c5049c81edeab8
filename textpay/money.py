"""Money as people read and type it: `$3.10` out, `40`, `$40`, `40.50` in.

Amounts are integer cents everywhere inside TextPay; this module is the only place that turns
them into text or text into them, without ever touching a float.
"""

from __future__ import annotations

import re

_AMOUNT = re.compile(r"^\$?(\d{1,7})(?:\.(\d{1,2}))?\$?$")


def format_cents(cents: int) -> str:
    """`310` → `$3.10`; `-190` → `-$1.90`; `250000` → `$2,500.00`."""
    sign = "-" if cents < 0 else ""
    dollars, remainder = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{remainder:02d}"


def parse_amount(text: str) -> int | None:
    """Cents from how a subscriber writes dollars (`40`, `$40`, `40.5`, `40.50`, `1,000`).

    Returns None for anything that is not plainly an amount, rather than guessing.
    """
    cleaned = text.strip().replace(",", "")
    match = _AMOUNT.match(cleaned)
    if not match:
        return None
    dollars, fraction = match.groups()
    cents = int(dollars) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)
    return cents or None
