"""Reading Stripe's refund events: which key names the refunded charge (`charge_key`).

A charge carries its PaymentIntent's metadata (Stripe copies it), so `charge.refunded` names our
charge's key; a refund's own metadata holds the card refund's key and must never be taken for
the charge's; an expanded PaymentIntent on a refund names it too.
"""

from __future__ import annotations

from typing import Any

from textpay.payments.events import RefundsReported
from textpay.payments.stripe_events import translate

REFUND: dict[str, Any] = {
    "id": "re_1",
    "object": "refund",
    "amount": 1000,
    "status": "succeeded",
    "payment_intent": "pi_1",
    "metadata": {"textpay_key": "card-refund-key"},
}


def test_charge_refunded_names_the_charges_key_from_the_charges_metadata() -> None:
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
              "metadata": {"textpay_key": "charge-key"},
              "refunds": {"object": "list", "data": [REFUND]}}  # fmt: skip
    fact = translate("charge.refunded", {"object": charge})
    assert isinstance(fact, RefundsReported)
    assert (fact.charge_id, fact.charge_key) == ("pi_1", "charge-key")
    assert fact.refunds[0].idempotency_key == "card-refund-key"


def test_charge_refunded_without_metadata_reads_an_expanded_payment_intent() -> None:
    charge = {"id": "ch_1", "payment_intent": {"id": "pi_1", "metadata": {"textpay_key": "k"}},
              "metadata": {}, "refunds": {"data": [REFUND]}}  # fmt: skip
    fact = translate("charge.refunded", {"object": charge})
    assert isinstance(fact, RefundsReported)
    assert (fact.charge_id, fact.charge_key) == ("pi_1", "k")


def test_a_refunds_own_key_is_never_taken_for_the_charges() -> None:
    fact = translate("refund.updated", {"object": REFUND})
    assert isinstance(fact, RefundsReported)
    assert (fact.charge_id, fact.charge_key) == ("pi_1", None)
    expanded = dict(REFUND, payment_intent={"id": "pi_1", "metadata": {"textpay_key": "ck"}})
    fact = translate("refund.updated", {"object": expanded})
    assert isinstance(fact, RefundsReported)
    assert (fact.charge_id, fact.charge_key) == ("pi_1", "ck")
