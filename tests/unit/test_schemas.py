"""Operator input shapes: cents are integers, unknown fields are errors, no field takes a card."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from textpay.operator_settings import FacilityIn
from textpay.schemas import AccountCreate, AccountUpdate, StrictInput, UsageIn


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


def _operator_models() -> list[type[StrictInput]]:
    """Every shape of operator input (FacilityIn, from textpay.operator_settings, included)."""
    found: list[type[StrictInput]] = []
    waiting: list[type[StrictInput]] = [StrictInput]
    while waiting:
        model = waiting.pop()
        found.append(model)
        waiting.extend(model.__subclasses__())
    return [model for model in found if model.model_fields]


@pytest.mark.parametrize("card", ["4242424242424242", "4242.4242.4242.4242", "3782 822463 10005"])
def test_no_operator_field_takes_a_card_number_but_the_exempt_ones(card: str) -> None:
    # A phone is kept only as its E.164 form after libphonenumber validates it; a usage
    # reference is the calling platform's id of a call. Every other field refuses a card.
    exempt = {("AccountCreate", "phone"), ("AccountUpdate", "phone"), ("UsageIn", "reference")}
    models = _operator_models()
    assert FacilityIn in models
    assert {m.__name__ for m in models} >= {"AccountCreate", "PaymentMethodIn", "CreditIn"}
    for model in models:
        for name in model.model_fields:
            try:
                model.model_validate({name: card})
                errors = []
            except ValidationError as error:
                errors = error.errors(include_input=False)
            refused = any(error["loc"][:1] == (name,) for error in errors)
            assert refused is ((model.__name__, name) not in exempt), (model.__name__, name)
            assert card not in str(errors)
