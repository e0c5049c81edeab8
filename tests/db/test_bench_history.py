"""The benchmark's seeded history (`bench.webhook.seed_history`) leaves the ledger sound and
stays out of what the benchmark reports TextPay wrote during its run."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from bench import webhook
from textpay import ledger
from textpay.db import unit_of_work


def test_history_keeps_the_ledger_sound_and_out_of_the_run_s_outcome(
    engine: Engine, database_url: str
) -> None:
    webhook.seed_textpay(database_url, 3)
    before = webhook.textpay_outcome(database_url)
    assert webhook.seed_history(database_url, 2) > 0
    with unit_of_work(engine) as session:
        assert ledger.verify(session) == []
    assert webhook.textpay_outcome(database_url) == before
