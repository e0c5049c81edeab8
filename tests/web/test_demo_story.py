"""`textpay demo` in-process, at any hour: its story plays in the subscribers' daytime whenever
it is run, so every YES in it funds, Sis's too once she has put a card that pays on file from
the card link (it once ran its scan "tomorrow morning" and its YES replies at night, before the
offers' texts had gone out, and nothing was funded)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.e2e.test_demo_and_chat import FUNDED
from webhooks import demo


@pytest.mark.parametrize("hour", ["2026-11-27 02:20:00", "2026-11-27 17:00:00"])
def test_the_demo_funds_every_yes_at_any_hour(tmp_path: Path, hour: str) -> None:
    out = io.StringIO()
    with freeze_time(hour, tick=True):
        assert demo.run(out, tmp_path / "demo.db")
    transcript = " ".join(out.getvalue().split())
    funded = sorted(suffix for _, suffix in FUNDED.findall(transcript))
    # Sis after a new card by link; Abuela twice (SI 40, then AGREGAR 20 and SI).
    assert funded == ["3344", "4821", "5566", "7730", "7730", "9012"]
    assert "ledger check: every balance equals the sum of its entries" in transcript
