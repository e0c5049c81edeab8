"""Keeping card numbers out of everything TextPay writes.

Subscribers sometimes text their card number. It must never reach the database, a log line or a
reply: any run of 12 or more digits (spaces and hyphens between them allowed, as people type
cards) is masked before the text is stored or logged.
"""

from __future__ import annotations

import re

# 12+ digits, optionally grouped by single spaces or hyphens ("4242 4242 4242 4242").
CARD_NUMBER_PATTERN = re.compile(r"\d(?:[ -]?\d){11,}")
MASK = "[card number removed]"
# Control characters other than tab and newlines: never meaningful in a text, and PostgreSQL
# refuses NUL outright.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def mask_card_numbers(text: str) -> tuple[str, bool]:
    """The text with card-like digit runs replaced, and whether anything was replaced."""
    masked, count = CARD_NUMBER_PATTERN.subn(MASK, text)
    return masked, count > 0


def storable(text: str) -> str:
    """Text safe to keep and log: card numbers masked, control characters dropped."""
    return _CONTROL.sub("", mask_card_numbers(text)[0])
