"""The Stripe stand-in, driven by the real `stripe` SDK over HTTP, as the gateway will drive it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from openapi_core.validation.schemas import oas30_read_schema_validators_factory
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.standin.stripe import TEST_CARDS, StripeStandIn, _spec

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk_test_standin_tests"
SECRET = "whsec_test_standin"


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(0.01)


class Receiver:
    """A webhook endpoint on 127.0.0.1 keeping what it was posted (raw body, headers)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.status = 200
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/stripe/webhook"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((request.get_data(), dict(request.headers)))
        return Response("ok", status=self.status)(environ, start_response)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in list(self.received)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.stop()


@pytest.fixture
def standin(receiver: Receiver) -> Iterator[StripeStandIn]:
    server = StripeStandIn(webhook_secret=SECRET, webhook_url=receiver.url, slow_seconds=30)
    with server:
        yield server


def client_for(server: StripeStandIn, timeout: float = 5.0, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key,
        base_addresses={"api": server.url},
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=0,
    )


@pytest.fixture
def client(standin: StripeStandIn) -> stripe.StripeClient:
    return client_for(standin)


def charge_params(pm: str, customer: str | None = None, **extra: Any) -> dict[str, Any]:
    """What the gateway sends to charge a card on file."""
    params: dict[str, Any] = {
        "amount": 2000,
        "currency": "usd",
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
        "metadata": {"textpay_key": "topup-1", "account": "42"},
        "description": "TextPay top-up",
        "statement_descriptor_suffix": "TOPUP",
    }
    if customer:
        params["customer"] = customer
    return {**params, **extra}


def conforms(kind: str, obj: dict[str, Any]) -> None:
    """The object is one Stripe's description (API 2024-04-10) accepts as a `kind`."""
    _, spec, _ = _spec()
    schema = spec / "components" / "schemas" / kind
    validator = oas30_read_schema_validators_factory.create(spec, schema).validator
    errors = list(_real(validator.iter_errors(obj)))
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors]


def _real(errors: Any) -> Iterator[Any]:
    """The innermost errors, less `null` for a `nullable` field: openapi-schema-validator
    refuses `null` where `nullable` sits beside `anyOf` or `enum`, as Stripe writes many."""
    for error in errors:
        if error.instance is None and error.schema.get("nullable"):
            continue
        if error.context:
            yield from _real(error.context)
        else:
            yield error


# -- customers and payment methods --


def test_customer_is_created_and_retrieved(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "email": "ana@example.com",
            "name": "Ana",
            "description": "account 42",
            "metadata": {"textpay_account": "42"},
        }
    )
    assert customer.id.startswith("cus_")
    again = client.v1.customers.retrieve(customer.id)
    assert again.to_dict() == customer.to_dict()
    assert (again.email, again.name, again.description) == ("ana@example.com", "Ana", "account 42")
    assert again.metadata.to_dict() == {"textpay_account": "42"}
    conforms("customer", customer.to_dict())
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nobody")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_attach_makes_a_payment_method_of_the_customer(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create()
    method = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert method.id.startswith("pm_")
    assert method.id != "pm_card_visa"
    assert method.customer == customer.id
    assert (method.card.brand, method.card.last4) == ("visa", "4242")
    assert (method.card.exp_month, method.card.exp_year) == (12, 2034)
    assert client.v1.payment_methods.retrieve(method.id).customer == customer.id
    conforms("payment_method", method.to_dict())
    listed = client.v1.customers.payment_methods.list(customer.id, params={"type": "card"})
    assert [m.id for m in listed.data] == [method.id]

    with pytest.raises(stripe.InvalidRequestError) as unknown_pm:
        client.v1.payment_methods.attach("pm_nonesuch", params={"customer": customer.id})
    assert (unknown_pm.value.code, unknown_pm.value.param) == ("resource_missing", "payment_method")
    with pytest.raises(stripe.InvalidRequestError) as unknown_customer:
        client.v1.payment_methods.attach("pm_card_visa", params={"customer": "cus_nobody"})
    assert (unknown_customer.value.code, unknown_customer.value.param) == (
        "resource_missing",
        "customer",
    )


# -- payment intents, by test card --


@pytest.mark.parametrize(
    ("pm", "brand", "last4"),
    [
        ("pm_card_visa", "visa", "4242"),
        ("pm_card_mastercard", "mastercard", "4444"),
    ],
)
def test_good_cards_succeed_with_a_charge(
    standin: StripeStandIn, client: stripe.StripeClient, pm: str, brand: str, last4: str
) -> None:
    customer = client.v1.customers.create()
    method = client.v1.payment_methods.attach(pm, params={"customer": customer.id})
    intent = client.v1.payment_intents.create(params=charge_params(method.id, customer.id))
    assert intent.status == "succeeded"
    assert (intent.amount, intent.amount_received, intent.currency) == (2000, 2000, "usd")
    assert (intent.customer, intent.payment_method) == (customer.id, method.id)
    assert intent.metadata.to_dict() == {"textpay_key": "topup-1", "account": "42"}
    assert intent.statement_descriptor_suffix == "TOPUP"
    assert intent.latest_charge.startswith("ch_")
    conforms("payment_intent", intent.to_dict())
    charge = standin.charges[intent.latest_charge]
    assert (charge["amount"], charge["payment_intent"], charge["amount_refunded"]) == (
        2000,
        intent.id,
        0,
    )
    card = charge["payment_method_details"]["card"]
    assert (card["brand"], card["last4"], charge["status"]) == (brand, last4, "succeeded")
    expanded = client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    assert expanded.latest_charge.id == intent.latest_charge


@pytest.mark.parametrize(
    ("pm", "code", "decline_code", "last4"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline", "0002"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds", "9995"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", "0069"),
        ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card", "9987"),
        ("pm_card_authenticationRequired", "authentication_required", None, "3184"),
    ],
)
def test_declines_raise_card_errors(
    standin: StripeStandIn,
    client: stripe.StripeClient,
    *,
    pm: str,
    code: str,
    decline_code: str | None,
    last4: str,
) -> None:
    assert TEST_CARDS[pm].last4 == last4
    customer = client.v1.customers.create()
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(params=charge_params(pm, customer.id))
    error = declined.value
    assert (error.http_status, error.code, error.error.decline_code) == (402, code, decline_code)
    assert error.error.type == "card_error"
    assert error.user_message
    intent = error.error.payment_intent
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == code
    assert standin.payment_intents[intent.id]["status"] == "requires_payment_method"
    conforms("payment_intent", intent.to_dict())
    conforms("error", json.loads(error.http_body))
    if code == "authentication_required":  # Stripe's own 3DS rule: no charge went to the bank
        assert error.error.charge is None
        assert intent.latest_charge is None
    else:
        assert standin.charges[error.error.charge]["status"] == "failed"
        assert intent.latest_charge == error.error.charge


def test_unknown_payment_method_is_refused(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.payment_intents.create(params=charge_params("pm_card_nonesuch"))
    assert (refused.value.code, refused.value.param) == ("resource_missing", "payment_method")
    assert standin.payment_intents == {}


def test_what_was_sent_is_recorded_nested(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    client.v1.payment_intents.create(
        params=charge_params("pm_card_visa"), options={"idempotency_key": "topup-1"}
    )
    [sent] = standin.sent("/v1/payment_intents")
    assert sent.idempotency_key == "topup-1"
    assert not sent.replayed
    assert sent.status == 200
    assert sent.params["metadata"] == {"textpay_key": "topup-1", "account": "42"}
    assert (sent.params["amount"], sent.params["confirm"], sent.params["off_session"]) == (
        2000,
        True,
        True,
    )


# -- idempotency --


def test_same_key_same_request_replays_the_answer(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    first = client.v1.payment_intents.create(
        params=charge_params("pm_card_visa"), options={"idempotency_key": "k-1"}
    )
    again = client.v1.payment_intents.create(
        params=charge_params("pm_card_visa"), options={"idempotency_key": "k-1"}
    )
    assert again.id == first.id
    assert len(standin.payment_intents) == 1
    assert again.last_response.body == first.last_response.body  # byte for byte
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert [r.replayed for r in standin.sent("/v1/payment_intents")] == [False, True]

    with pytest.raises(stripe.IdempotencyError) as reused:
        client.v1.payment_intents.create(
            params=charge_params("pm_card_visa", amount=2500), options={"idempotency_key": "k-1"}
        )
    assert reused.value.http_status == 400
    assert "same parameters" in reused.value.user_message
    assert "'k-1'" in reused.value.user_message
    assert len(standin.payment_intents) == 1

    standin.expire_keys()  # 24 hours later: the key is new again, and so is the payment
    later = client.v1.payment_intents.create(
        params=charge_params("pm_card_visa"), options={"idempotency_key": "k-1"}
    )
    assert later.id != first.id
    assert len(standin.payment_intents) == 2


def test_a_decline_is_replayed_too(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    answers = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(
                params=charge_params("pm_card_chargeDeclined"), options={"idempotency_key": "d-1"}
            )
        answers.append(declined.value)
    assert answers[0].http_body == answers[1].http_body
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert len(standin.payment_intents) == 1


def test_slow_card_times_out_and_is_found_afterwards(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    impatient = client_for(standin, timeout=0.5)
    params = charge_params("pm_card_slow", metadata={"textpay_key": "slow-1"})
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.payment_intents.create(params=params, options={"idempotency_key": "s-1"})
    [made] = standin.payment_intents.values()  # made when the request arrived
    assert made["status"] == "succeeded"

    found = client.v1.payment_intents.search(params={"query": "metadata['textpay_key']:'slow-1'"})
    assert [i.id for i in found.data] == [made["id"]]

    with pytest.raises(stripe.APIError) as busy:  # the first request is still being answered
        client.v1.payment_intents.create(params=params, options={"idempotency_key": "s-1"})
    # the SDK makes a 409 an APIError and leaves `.code` unset: the code is in `.error`
    assert busy.value.http_status == 409
    assert busy.value.error.code == "idempotency_key_in_use"

    standin.release()
    wait_until(lambda: standin.in_flight() == 0)
    replayed = client.v1.payment_intents.create(params=params, options={"idempotency_key": "s-1"})
    assert replayed.id == made["id"]
    assert replayed.status == "succeeded"
    assert replayed.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(standin.payment_intents) == 1


def test_slow_card_answers_after_slow_seconds() -> None:
    with StripeStandIn(slow_seconds=0.3) as server:
        began = time.monotonic()
        intent = client_for(server).v1.payment_intents.create(params=charge_params("pm_card_slow"))
        assert time.monotonic() - began >= 0.3
        assert intent.status == "succeeded"


# -- processing, refunds, search --


def test_processing_payment_finishes_either_way(
    standin: StripeStandIn, client: stripe.StripeClient, receiver: Receiver
) -> None:
    good = client.v1.payment_intents.create(params=charge_params("pm_card_processing"))
    bad = client.v1.payment_intents.create(params=charge_params("pm_card_processing"))
    assert good.status == bad.status == "processing"

    standin.finish(good.id, succeeded=True)
    assert client.v1.payment_intents.retrieve(good.id).status == "succeeded"
    standin.finish(bad.id, succeeded=False)
    failed = client.v1.payment_intents.retrieve(bad.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.decline_code == "insufficient_funds"

    events = receiver.events()
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("payment_intent.succeeded", good.id),
        ("payment_intent.payment_failed", bad.id),
    ]
    assert [d.status for d in standin.deliveries] == [200, 200]


def test_refunds_partial_full_and_refused(
    standin: StripeStandIn, client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent = client.v1.payment_intents.create(params=charge_params("pm_card_visa"))
    part = client.v1.refunds.create(
        params={
            "payment_intent": intent.id,
            "amount": 500,
            "reason": "requested_by_customer",
            "metadata": {"textpay_refund": "r-1"},
        }
    )
    assert (part.status, part.amount, part.charge, part.payment_intent) == (
        "succeeded",
        500,
        intent.latest_charge,
        intent.id,
    )
    conforms("refund", part.to_dict())
    delivery = standin.wait_for_delivery("charge.refunded")
    assert delivery.status == 200
    [event] = receiver.events()
    assert event["request"]["id"] == part.last_response.request_id  # caused by that request
    assert event["request"]["idempotency_key"] == standin.sent("/v1/refunds")[0].idempotency_key
    assert client.v1.events.retrieve(event["id"]).type == "charge.refunded"
    refunded = event["data"]["object"]
    assert (refunded["id"], refunded["amount_refunded"], refunded["refunded"]) == (
        intent.latest_charge,
        500,
        False,
    )
    assert [r["id"] for r in refunded["refunds"]["data"]] == [part.id]

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1501})
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})  # what is left
    assert rest.amount == 1500
    assert standin.charges[intent.latest_charge]["refunded"] is True
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1})
    assert again.value.code == "charge_already_refunded"
    with pytest.raises(stripe.InvalidRequestError) as bad_reason:
        client.v1.refunds.create(params={"payment_intent": intent.id, "reason": "changed_mind"})
    assert bad_reason.value.param == "reason"
    assert len(standin.refunds) == 2


def test_a_pending_refund_stays_pending_until_finished_either_way(
    standin: StripeStandIn, client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent = client.v1.payment_intents.create(params=charge_params("pm_card_pendingRefund"))
    assert intent.status == "succeeded"
    good = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    bad = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 700})
    assert good.status == bad.status == "pending"
    conforms("refund", good.to_dict())
    assert client.v1.refunds.retrieve(good.id).status == "pending"
    assert standin.charges[intent.latest_charge]["amount_refunded"] == 1200

    standin.finish_refund(good.id)
    standin.finish_refund(bad.id, succeeded=False)
    assert client.v1.refunds.retrieve(good.id).status == "succeeded"
    failed = client.v1.refunds.retrieve(bad.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    conforms("refund", failed.to_dict())
    # A failed refund's money is the merchant's again.
    assert standin.charges[intent.latest_charge]["amount_refunded"] == 500
    with pytest.raises(ValueError, match="not pending"):
        standin.finish_refund(good.id)
    wait_until(lambda: len(receiver.events()) == 4)
    updates = [e for e in receiver.events() if e["type"] == "charge.refund.updated"]
    assert [(e["data"]["object"]["id"], e["data"]["object"]["status"]) for e in updates] == [
        (good.id, "succeeded"),
        (bad.id, "failed"),
    ]


def test_refund_of_an_unpaid_intent_is_refused(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(params=charge_params("pm_card_chargeDeclined"))
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": declined.value.error.payment_intent.id})
    assert refused.value.http_status == 400
    assert standin.refunds == {}


def test_search_lags_when_asked_to() -> None:
    with StripeStandIn(search_lag=0.3) as server:
        stripe_client = client_for(server)
        intent = stripe_client.v1.payment_intents.create(params=charge_params("pm_card_visa"))
        query = {"query": "metadata['textpay_key']:'topup-1'"}
        assert stripe_client.v1.payment_intents.search(params=query).data == []
        assert stripe_client.v1.payment_intents.retrieve(intent.id).id == intent.id
        wait_until(lambda: stripe_client.v1.payment_intents.search(params=query).data)


def test_search_by_metadata(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    made = {}
    for key, account in (("a", "1"), ("b", "1"), ("c", "2")):
        made[key] = client.v1.payment_intents.create(
            params=charge_params("pm_card_visa", metadata={"textpay_key": key, "account": account})
        ).id

    def search(query: str, **extra: Any) -> Any:
        return client.v1.payment_intents.search(params={"query": query, **extra})

    found = search("metadata['account']:'1'")
    assert found.object == "search_result"
    assert found.url == "/v1/payment_intents/search"
    assert [i.id for i in found.data] == [made["b"], made["a"]]  # newest first
    assert [
        i.id for i in search("metadata['account']:'1' AND metadata['textpay_key']:'a'").data
    ] == [made["a"]]
    assert search("metadata['account']:'3'").data == []
    assert [i.id for i in search("status:'succeeded' AND amount:2000").data] == [
        made["c"],
        made["b"],
        made["a"],
    ]
    first = search("metadata['account']:'1'", limit=1)
    assert first.has_more
    assert first.next_page
    second = search("metadata['account']:'1'", limit=1, page=first.next_page)
    assert [i.id for i in second.data] == [made["a"]]
    assert not second.has_more
    with pytest.raises(stripe.InvalidRequestError) as unreadable:
        search("metadata['account']~'1'")
    assert unreadable.value.param == "query"
    listed = client.v1.payment_intents.list(params={"limit": 2})
    assert [i.id for i in listed.data] == [made["c"], made["b"]]
    assert listed.has_more


# -- validation and auth --


@pytest.mark.parametrize(
    ("change", "param", "message"),
    [
        ({"amount": "abc"}, "amount", "Invalid integer: abc"),
        ({"confirm_now": True}, "confirm_now", "Received unknown parameter: confirm_now"),
        ({"currency": None}, "currency", "Missing required param: currency."),
        ({"capture_method": "later"}, "capture_method", "Invalid capture_method"),
        ({"metadata": {"note": {"deep": "x"}}}, "metadata[note]", "Invalid"),
        ({"statement_descriptor_suffix": "X" * 23}, "statement_descriptor_suffix", "at most 22"),
    ],
)
def test_requests_stripe_would_refuse_are_refused(
    standin: StripeStandIn,
    client: stripe.StripeClient,
    *,
    change: dict[str, Any],
    param: str,
    message: str,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.payment_intents.create(
            params=charge_params("pm_card_visa", **change), options={"idempotency_key": "v-1"}
        )
    error = refused.value
    assert (error.http_status, error.error.type, error.param) == (
        400,
        "invalid_request_error",
        param,
    )
    assert message in error.user_message
    assert standin.payment_intents == {}
    # a refused request keeps no key: the same key with a good request goes through
    intent = client.v1.payment_intents.create(
        params=charge_params("pm_card_visa"), options={"idempotency_key": "v-1"}
    )
    assert intent.status == "succeeded"


def test_unknown_paths_and_missing_keys(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.raw_request("get", "/v1/payouts")
    assert unknown.value.http_status == 404
    assert "Unrecognized request URL" in str(unknown.value)
    with pytest.raises(stripe.AuthenticationError):
        client_for(standin, key="pk_test_publishable").v1.customers.create()
    with pytest.raises(stripe.AuthenticationError):
        client_for(standin, key="sk_live_real").v1.customers.create()
    assert standin.customers == {}


# -- webhook events --


def test_events_are_signed_like_stripes(standin: StripeStandIn) -> None:
    obj = {"id": "pi_123", "object": "payment_intent", "amount": 500}
    payload, header = standin.event("payment_intent.succeeded", obj)
    event = stripe.Webhook.construct_event(payload, header, SECRET)
    assert (event.type, event.data.object.id, event.api_version, event.livemode) == (
        "payment_intent.succeeded",
        "pi_123",
        "2024-04-10",
        False,
    )
    assert event.id.startswith("evt_")
    conforms("event", json.loads(payload))
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace(b"500", b"900"), header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    stale_payload, stale = standin.event(
        "payment_intent.succeeded", obj, timestamp=int(time.time()) - 600
    )
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(stale_payload, stale, SECRET)


def test_deliver_and_redeliver_reach_the_endpoint(
    standin: StripeStandIn, receiver: Receiver
) -> None:
    assert standin.deliver("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    receiver.status = 500
    [event] = standin.events
    assert standin.redeliver(event["id"]) == 500
    assert [d.status for d in standin.deliveries] == [200, 500]
    (first, _first_headers), (second, _second_headers) = receiver.received
    assert first == second  # the same event, the same bytes
    for body, headers in receiver.received:
        assert headers["Content-Type"].startswith("application/json")
        verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], SECRET)
        assert verified.id == event["id"]


def test_disputes_open_and_close(
    standin: StripeStandIn, client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent = client.v1.payment_intents.create(params=charge_params("pm_card_visa"))
    dispute = standin.dispute(intent.id)
    assert dispute["id"].startswith("dp_")
    assert (dispute["charge"], dispute["payment_intent"], dispute["amount"]) == (
        intent.latest_charge,
        intent.id,
        2000,
    )
    assert (dispute["status"], dispute["reason"]) == ("needs_response", "fraudulent")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert refused.value.code == "charge_disputed"
    closed = standin.close_dispute(dispute["id"], status="lost")
    assert closed["status"] == "lost"
    assert [(e["type"], e["data"]["object"]["status"]) for e in receiver.events()] == [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.closed", "lost"),
    ]


# -- as a process --


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_runs_as_a_process_and_logs_paths_only(receiver: Receiver) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.standin.stripe",
            "--port",
            "0",
            "--webhook-url",
            receiver.url,
            "--webhook-secret",
            "whsec_process",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("stripe stand-in listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        remote = stripe.StripeClient(
            KEY,
            base_addresses={"api": url},
            http_client=stripe.RequestsClient(timeout=5),
            max_network_retries=0,
        )
        intent = remote.v1.payment_intents.create(
            params=charge_params("pm_card_processing", metadata={"textpay_key": "secret-ish"})
        )
        remote.v1.payment_intents.search(params={"query": "metadata['textpay_key']:'secret-ish'"})
        with pytest.raises(stripe.InvalidRequestError):
            remote.v1.payment_intents.create(params={"amount": 2000})  # no currency
        assert post_json(url + "/_finish", {"payment_intent": intent.id})["status"] == "succeeded"
    finally:
        process.terminate()
        _, log = process.communicate(timeout=10)
    [(body, headers)] = receiver.received
    assert stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_process")
    assert '"GET /v1/payment_intents/search" 200' in log
    assert '"POST /v1/payment_intents" 400' in log
    assert "secret-ish" not in log
    assert "query" not in log
    assert "amount" not in log


# -- Checkout in setup mode --


def setup_session(
    client: stripe.StripeClient, customer: str, **extra: Any
) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "mode": "setup",
        "customer": customer,
        "payment_method_types": ["card"],
        "success_url": "https://textpay.example/card/t/done",
        "cancel_url": "https://textpay.example/card/t",
        "locale": "en",
        "metadata": {"textpay_card_link": "ref-1"},
        "setup_intent_data": {"metadata": {"textpay_card_link": "ref-1"}},
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]


def test_a_setup_checkout_session_saves_a_card_and_tells_the_webhook(
    client: stripe.StripeClient, standin: StripeStandIn, receiver: Receiver
) -> None:
    customer = client.v1.customers.create(params={"description": "account 42"}).id
    session = setup_session(client, customer)
    assert session.id.startswith("cs_test_")
    assert session.url == f"{standin.url}/checkout/{session.id}"
    assert (session.mode, session.status, session.customer) == ("setup", "open", customer)
    conforms("checkout.session", standin.checkout_sessions[session.id])
    assert session.setup_intent is not None
    intent = client.v1.setup_intents.retrieve(str(session.setup_intent))
    assert (intent.status, intent.payment_method) == ("requires_payment_method", None)
    assert intent.metadata.to_dict() == {"textpay_card_link": "ref-1"}

    completed = standin.complete_checkout(session.id, "pm_card_mastercard")
    assert completed["status"] == "complete"
    intent = client.v1.setup_intents.retrieve(str(session.setup_intent))
    assert intent.status == "succeeded"
    conforms("setup_intent", standin.setup_intents[intent.id])
    method = client.v1.payment_methods.retrieve(str(intent.payment_method))
    assert method.customer == customer
    assert method.card is not None
    assert method.card.last4 == "4444"
    event = wait_until(
        lambda: next(
            (e for e in receiver.events() if e["type"] == "checkout.session.completed"), None
        )
    )
    assert event["data"]["object"]["setup_intent"] == intent.id
    assert event["data"]["object"]["metadata"] == {"textpay_card_link": "ref-1"}
    with pytest.raises(ValueError, match="not open"):
        standin.complete_checkout(session.id)


def test_checkout_sessions_are_refused_as_stripe_would(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={}).id
    with pytest.raises(stripe.InvalidRequestError) as no_currency:
        setup_session(client, customer, payment_method_types=None)
    assert no_currency.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        setup_session(client, customer, card_number="4242424242424242")
    assert unknown.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as bad_mode:
        setup_session(client, customer, mode="sideways")
    assert bad_mode.value.param == "mode"
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        setup_session(client, "cus_nobody")
    assert no_customer.value.code == "resource_missing"


def test_the_checkout_page_works_without_script(
    client: stripe.StripeClient, standin: StripeStandIn
) -> None:
    customer = client.v1.customers.create(params={}).id
    session = setup_session(client, customer)
    assert session.url is not None
    with urllib.request.urlopen(session.url, timeout=5) as page:
        html = page.read().decode()
    assert "<script" not in html
    assert 'value="pm_card_mastercard" checked' in html
    assert 'href="https://textpay.example/card/t"' in html

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    form = b"card=pm_card_visa"
    with pytest.raises(urllib.error.HTTPError) as answered:
        opener.open(urllib.request.Request(session.url, data=form, method="POST"), timeout=5)
    assert answered.value.code == 303
    assert answered.value.headers["Location"] == "https://textpay.example/card/t/done"
    assert standin.checkout_sessions[session.id]["status"] == "complete"
