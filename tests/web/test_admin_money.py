"""Usage debits and operator credits: money moves once per reference, and the ledger agrees."""

from __future__ import annotations

import threading
from typing import Any

from click.testing import CliRunner
from flask import Flask

from tests.conftest import AdminClient
from tests.web.test_admin_accounts import problem
from webhooks.cli import cli


def verify_ledger(database_url: str) -> Any:
    return CliRunner().invoke(cli, ["verify-ledger"], env={"DATABASE_URL": database_url})


def balance(admin: AdminClient, account_id: int) -> int:
    value: int = admin.get(f"/admin/accounts/{account_id}").get_json()["balance_cents"]
    return value


def test_usage_drains_credit_refills_and_the_ledger_is_clean(
    admin: AdminClient, database_url: str
) -> None:
    account = admin.enrol()
    account_id = account["id"]
    assert admin.credit(account_id, 2500, "welcome-1").status_code == 201
    drained = admin.usage(account_id, 2190, "call-0001")
    assert drained.status_code == 201
    entry = drained.get_json()
    assert entry["kind"] == "usage"
    assert entry["amount_cents"] == -2190
    assert entry["balance_after_cents"] == 310
    assert entry["reference"] == "usage:call-0001"
    assert balance(admin, account_id) == 310

    refill = admin.credit(account_id, 1000, "goodwill-7")
    assert refill.status_code == 201
    assert refill.get_json()["balance_after_cents"] == 1310
    assert balance(admin, account_id) == 1310

    ledger = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()
    assert ledger["balance_cents"] == 1310
    assert [(e["kind"], e["amount_cents"]) for e in ledger["entries"]] == [
        ("credit", 1000),
        ("usage", -2190),
        ("credit", 2500),
    ]
    assert sum(e["amount_cents"] for e in ledger["entries"]) == 1310

    result = verify_ledger(database_url)
    assert result.exit_code == 0, result.output
    assert "ledger ok" in result.output


def test_replayed_usage_reference_posts_once_and_returns_the_original(
    admin: AdminClient,
) -> None:
    account_id = admin.enrol()["id"]
    admin.credit(account_id, 5000, "seed")
    first = admin.usage(account_id, 300, "call-42")
    assert first.status_code == 201
    assert first.headers["Idempotent-Replayed"] == "false"
    for _ in range(3):
        again = admin.usage(account_id, 300, "call-42")
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()
    assert balance(admin, account_id) == 4700
    entries = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()["entries"]
    assert len(entries) == 2


def test_replayed_credit_key_posts_once_and_returns_the_original(admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    first = admin.credit(account_id, 1500, "refund-2026-11-26-01")
    assert first.status_code == 201
    again = admin.credit(account_id, 1500, "refund-2026-11-26-01")
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert balance(admin, account_id) == 1500
    credits = admin.get(
        "/admin/audit", query_string={"entity_type": "account", "entity_id": account_id}
    ).get_json()["entries"]
    assert [e["action"] for e in credits].count("ledger.credit") == 1


def test_a_reference_reused_for_a_different_posting_is_refused(admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    other_id = admin.enrol(account_number="OTHER", phone="2125550100")["id"]
    admin.credit(account_id, 5000, "seed")
    admin.credit(other_id, 5000, "seed-other")
    admin.usage(account_id, 300, "call-42")

    problem(admin.usage(account_id, 999, "call-42"), 409, "idempotency-conflict")
    problem(admin.usage(other_id, 300, "call-42"), 409, "idempotency-conflict")
    problem(admin.credit(account_id, 1, "seed"), 409, "idempotency-conflict")
    assert balance(admin, account_id) == 4700
    assert balance(admin, other_id) == 5000


def test_usage_beyond_the_balance_is_refused(admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    admin.credit(account_id, 500, "seed")
    body = problem(admin.usage(account_id, 501, "call-1"), 409, "insufficient-balance")
    assert "500" in body["detail"]
    assert balance(admin, account_id) == 500
    # The reference was not used up by the refusal: the platform can post it correctly.
    assert admin.usage(account_id, 500, "call-1").status_code == 201
    assert balance(admin, account_id) == 0


def test_credit_needs_an_idempotency_key(admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    response = admin.post(
        f"/admin/accounts/{account_id}/credits", json={"amount_cents": 100, "reason": "x"}
    )
    problem(response, 400, "missing-idempotency-key")
    assert balance(admin, account_id) == 0


def test_refund_kind_and_ledger_paging(admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    refund = admin.post(
        f"/admin/accounts/{account_id}/credits",
        json={"amount_cents": 250, "reason": "dropped call", "kind": "refund"},
        headers={"Idempotency-Key": "r-1"},
    )
    assert refund.get_json()["kind"] == "refund"
    for i in range(4):
        admin.credit(account_id, 100, f"k{i}")
    page = admin.get(f"/admin/accounts/{account_id}/ledger", query_string={"limit": 3})
    first = page.get_json()
    assert len(first["entries"]) == 3
    rest = admin.get(
        f"/admin/accounts/{account_id}/ledger", query_string={"before": first["next_before"]}
    ).get_json()
    assert [e["kind"] for e in rest["entries"]] == ["credit", "refund"]


def test_concurrent_usage_and_credits_lose_nothing(app: Flask, admin: AdminClient) -> None:
    """20 threads post to one account at once; every entry lands and the cache stays exact."""
    account_id = admin.enrol()["id"]
    assert admin.credit(account_id, 10_000, "seed").status_code == 201
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        thread_admin = AdminClient(app.test_client())
        barrier.wait()
        if n % 2:
            response = thread_admin.usage(account_id, 100 + n, f"call-{n}")
        else:
            response = thread_admin.credit(account_id, 200 + n, f"credit-{n}")
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [201] * 20
    ledger = admin.get(f"/admin/accounts/{account_id}/ledger").get_json()
    assert len(ledger["entries"]) == 21
    expected = (
        10_000 + sum(200 + n for n in range(0, 20, 2)) - sum(100 + n for n in range(1, 20, 2))
    )
    assert ledger["balance_cents"] == expected
    assert sum(e["amount_cents"] for e in ledger["entries"]) == expected
    # Each entry's running balance is consistent with the order the lock imposed.
    running = 0
    for entry in reversed(ledger["entries"]):
        running += entry["amount_cents"]
        assert entry["balance_after_cents"] == running


def test_concurrent_replays_of_one_reference_post_once(app: Flask, admin: AdminClient) -> None:
    account_id = admin.enrol()["id"]
    admin.credit(account_id, 10_000, "seed")
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def worker() -> None:
        thread_admin = AdminClient(app.test_client())
        barrier.wait()
        statuses.append(thread_admin.usage(account_id, 700, "call-dup").status_code)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 9 + [201]
    assert balance(admin, account_id) == 9_300
