"""How a text names an account: its label among the accounts on the same phone.

Owns the label rule, which replies (`acct ...4821`) and the parser (`YES 4821`) share:

- A label is the tail of the account number's digits (its ASCII digits in order, letters and
  punctuation left out: `ACCT-4821` → `4821`): the last 4, or the last 5, 6 ... when another
  account on the phone ends in the same digits, until no other account's digits end that way.
  Digits only, so that what a subscriber reads is what they type on a phone keypad.
- An account number with fewer than 4 digits is labelled by all of them.
- When no tail of the digits tells an account apart (`ACCT-4821` and `BCCT-4821` have the
  same digits; `4821` is a tail of `14821`), the label is the whole account number as the
  operator wrote it (`ACCT-4821`), which is unique.

Labels on one phone are then distinct: two tails of one length are distinct by construction,
tails of different lengths differ, and a tail never equals a whole number that fell back (that
number's own tail of the same length would have collided). The one exception is two account
numbers differing only in letter case, which no text can tell apart either.

A text names an account by a word with a digit in it (`YES 4821`, `YES ACCT-4821`, `YES #4821`,
`YES ...4821`; letter case ignored), so an account number without any digit cannot be named
by text: it can still be paid by a plain YES when its offer is the only one on the phone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MIN_LABEL_DIGITS = 4
_NOT_A_DIGIT = re.compile(r"[^0-9]")


def digits_of(account_number: str) -> str:
    """The account number's ASCII digits, in order."""
    return _NOT_A_DIGIT.sub("", account_number)


def unique_labels(account_numbers: Sequence[str]) -> dict[str, str]:
    """Each account number's label among the accounts on one phone (see above)."""
    if len(account_numbers) == 1:  # most phones: the last 4 digits, as the rule below finds
        (number,) = account_numbers
        own = digits_of(number)
        return {number: own[-MIN_LABEL_DIGITS:] if own else number}
    digits = {number: digits_of(number) for number in account_numbers}
    # The shortest unique tail is one digit longer than the longest tail the account shares
    # with another: compared with its neighbours in the order of the reversed digits (those
    # share the longest tails), not with every other account on the phone.
    ordered = sorted((own[::-1], number) for number, own in digits.items())
    shared = [0] * len(ordered)
    for i in range(1, len(ordered)):
        common = _common_start(ordered[i - 1][0], ordered[i][0])
        shared[i - 1] = max(shared[i - 1], common)
        shared[i] = common
    labels: dict[str, str] = {}
    for (_, number), longest_shared in zip(ordered, shared, strict=True):
        own = digits[number]
        length = max(min(MIN_LABEL_DIGITS, len(own)), longest_shared + 1)
        # No tail tells it apart (or it has no digits): the whole number.
        labels[number] = own[-length:] if length <= len(own) else number
    return labels


def label_among(account_number: str, on_phone: Sequence[str]) -> str:
    """One account number's label among the account numbers `on_phone` (itself included), by
    the one rule above: the scan labels each account it offers to this way."""
    return unique_labels(on_phone)[account_number]


def _common_start(a: str, b: str) -> int:
    """How many characters `a` and `b` share from their start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
