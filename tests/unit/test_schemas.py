"""Operator input shapes: cents are integers, unknown fields are errors, cards are never tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from textpay.schemas import AccountCreate, AccountUpdate, UsageIn


@pytest.mark.parametrize("amount", ['"2500"', "25.00", "2500.0", "2.5e3", "true", "null", "[1]"])
def test_cents_must_be_a_json_integer(amount: str) -> None:
    raw = f'{{"amount_cents": {amount}, "reference": "r"}}'
    with pytest.raises(ValidationError):
        UsageIn.model_validate_json(raw)
    assert (
        UsageIn.model_validate_json('{"amount_cents": 2500, "reference": "r"}').amount_cents == 2500
    )


@pytest.mark.parametrize(
    "token",
    ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "tok_4111111111111111"],
)
def test_a_card_number_is_never_accepted_as_a_token(token: str) -> None:
    raw = f'{{"account_number": "A", "phone": "1", "payment_method": {{"token": "{token}"}}}}'
    with pytest.raises(ValidationError) as raised:
        AccountCreate.model_validate_json(raw)
    assert token not in str(raised.value.errors(include_input=False))


def test_patch_knows_which_fields_were_sent() -> None:
    patch = AccountUpdate.model_validate_json('{"nickname": "Dad", "threshold_cents": null}')
    assert patch.changes() == {"nickname": "Dad", "threshold_cents": None}
