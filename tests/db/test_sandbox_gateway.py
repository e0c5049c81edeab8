"""The sandbox gateway: fixed outcomes per test token, one charge per idempotency key."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from textpay.db import unit_of_work
from textpay.models import SandboxCharge
from textpay.payments import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    GatewayKeyReuse,
    GatewayTimeout,
    Initiator,
    RefundStatus,
    SandboxGateway,
)


def charges(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(SandboxCharge)).one())


def charge(
    gateway: SandboxGateway,
    token: str,
    key: str,
    *,
    cents: int = 2500,
    initiator: Initiator = Initiator.CUSTOMER,
    timeout: float = 5,
) -> ChargeResult:
    return gateway.charge(
        ChargeRequest(token=token, amount_cents=cents, idempotency_key=key, initiator=initiator),
        timeout_seconds=timeout,
    )


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        ("tok_visa", ChargeStatus.SUCCEEDED, None),
        ("tok_mastercard", ChargeStatus.SUCCEEDED, None),
        ("tok_chargeDeclined", ChargeStatus.DECLINED, "card_declined"),
        ("tok_insufficientFunds", ChargeStatus.DECLINED, "insufficient_funds"),
        ("tok_expiredCard", ChargeStatus.DECLINED, "expired_card"),
        ("tok_processingError", ChargeStatus.FAILED, "processing_error"),
        ("tok_authenticationRequired", ChargeStatus.DECLINED, "authentication_required"),
        ("tok_neverHeardOfIt", ChargeStatus.DECLINED, "unknown_token"),
    ],
)
def test_each_test_token_has_its_documented_outcome(
    engine: Engine, token: str, status: ChargeStatus, reason: str | None
) -> None:
    gateway = SandboxGateway(engine)
    result = charge(gateway, token, f"prompt-{token}")
    assert (result.status, result.decline_reason) == (status, reason)
    assert gateway.retrieve(f"prompt-{token}") == result


def test_the_same_key_returns_the_first_result_and_charges_once(engine: Engine) -> None:
    gateway = SandboxGateway(engine)
    first = charge(gateway, "tok_visa", "prompt-1")
    for _ in range(3):
        again = charge(gateway, "tok_visa", "prompt-1")
        assert again == first
    assert charges(engine) == 1
    with pytest.raises(GatewayKeyReuse):
        charge(gateway, "tok_visa", "prompt-1", cents=4000)
    assert charges(engine) == 1
    assert gateway.retrieve("never-used") is None


def test_slow_card_outlasts_the_caller_and_completes_anyway(engine: Engine) -> None:
    slept: list[float] = []
    gateway = SandboxGateway(engine, slow_seconds=30, sleep=slept.append)
    with pytest.raises(GatewayTimeout):
        charge(gateway, "tok_slow", "prompt-slow", timeout=2)
    assert slept == [2]  # it waited as long as the caller allowed, no longer
    pending = gateway.retrieve("prompt-slow")
    assert pending is not None
    assert pending.status is ChargeStatus.PENDING

    quick = SandboxGateway(engine, slow_seconds=0)
    settled = charge(quick, "tok_slow", "prompt-slow-2", initiator=Initiator.MERCHANT, timeout=2)
    assert settled.succeeded
    assert charges(engine) == 2


def test_slow_card_settles_for_the_reconciler(engine: Engine) -> None:
    gateway = SandboxGateway(engine, slow_seconds=0.2)
    with pytest.raises(GatewayTimeout):
        charge(gateway, "tok_slow", "prompt-crash", timeout=0.05)
    time.sleep(0.25)  # the processor finishes after the caller gave up
    result = gateway.retrieve("prompt-crash")
    assert result is not None
    assert result.status is ChargeStatus.SUCCEEDED


def test_concurrent_first_use_of_a_key_charges_once(engine: Engine) -> None:
    gateway = SandboxGateway(engine)
    barrier = threading.Barrier(8)
    ids: list[str | None] = []

    def worker() -> None:
        barrier.wait()
        ids.append(charge(gateway, "tok_visa", "prompt-race").charge_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert charges(engine) == 1


def test_a_refund_is_found_again_by_its_id(engine: Engine) -> None:
    gateway = SandboxGateway(engine)
    charged = charge(gateway, "tok_visa", "k-refunded")
    made = gateway.refund(charge_id=charged.charge_id or "", amount_cents=700,
                          idempotency_key="r-1", reason="asked", timeout_seconds=1)  # fmt: skip
    assert made.status is RefundStatus.SUCCEEDED
    assert gateway.retrieve_refund(made.refund_id or "", timeout_seconds=1) == made
    # An id it never made is not a failure (nothing would say the money is not on the card).
    unknown = gateway.retrieve_refund("re_sandbox_unknown", timeout_seconds=1)
    assert (unknown.status, unknown.refund_id) == (RefundStatus.PENDING, "re_sandbox_unknown")
