"""`unique_labels` (neighbours in reversed-digit order) and `label_among` (one account at a
time, as the scan labels) against the rule as `textpay.labels` states it, written the plain
way: account numbers of any length, letters and punctuation, shared tails, digits of other
scripts (not digits a keypad types, so not part of a label)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textpay.labels import label_among, unique_labels


def _reference(numbers: list[str]) -> dict[str, str]:
    """The last 4 ASCII digits (all of them when fewer), else the last 5, 6 ... until no other
    account's digits end that way; when no tail does, the whole account number."""
    ascii_digits = "0123456789"
    labels = {}
    for number in numbers:
        own = "".join(c for c in number if c in ascii_digits)
        others = ["".join(c for c in o if c in ascii_digits) for o in numbers if o != number]
        labels[number] = number
        for length in range(max(min(4, len(own)), 1), len(own) + 1):
            if not any(other.endswith(own[-length:]) for other in others):
                labels[number] = own[-length:]
                break
    return labels


_CHARS = st.sampled_from(
    [
        *"0123456789" * 3,
        *"01" * 6,
        *"A-# a",
        "\u0661",
        "\u0663",
        "\uff15",
        "\u00b2",
        "\U0001d7d8",
        "\u00df",
    ]
)
_ANY = st.lists(st.text(_CHARS, max_size=12), min_size=1, max_size=12, unique=True)
_SHARED_TAIL = st.tuples(
    st.text(_CHARS, max_size=6), st.lists(st.text(_CHARS, max_size=5), min_size=1, max_size=10)
).map(lambda t: list(dict.fromkeys(head + t[0] for head in t[1])))


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(_ANY, _SHARED_TAIL))
def test_labels_follow_the_stated_rule(numbers: list[str]) -> None:
    expected = _reference(numbers)
    assert unique_labels(numbers) == expected
    assert {n: label_among(n, numbers) for n in numbers} == expected
