"""Phone numbers as people type them become E.164; anything else is a clear field error."""

from __future__ import annotations

import pytest

from textpay.errors import ValidationFailed
from textpay.phones import to_e164


@pytest.mark.parametrize(
    "written",
    ["(212) 555-0147", "212-555-0147", "212.555.0147", "2125550147", "+1 212 555 0147",
     "1 (212) 555-0147", "+12125550147", "  (212) 555-0147  "],
)  # fmt: skip
def test_us_spellings_meet_at_one_number(written: str) -> None:
    assert to_e164(written) == "+12125550147"


def test_international_numbers_keep_their_country() -> None:
    assert to_e164("+52 55 1234 5678") == "+525512345678"
    assert to_e164("020 7946 0018", default_region="GB") == "+442079460018"


@pytest.mark.parametrize("written", ["", "   ", "555-0147", "hello", "+1 212 555 01478", "911"])
def test_non_numbers_are_field_errors(written: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        to_e164(written, field="phone")
    assert [error.field for error in raised.value.errors] == ["phone"]
