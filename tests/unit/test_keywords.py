"""The keyword table in fixtures/keywords.csv, run through the pure parser."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from textpay.conversation import Intent, parse

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "fixtures" / "keywords.csv"


def cases() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_table_is_substantial() -> None:
    rows = cases()
    assert len(rows) >= 60
    assert {row["intent"] for row in rows} == {intent.value for intent in Intent}


@pytest.mark.parametrize("row", cases(), ids=lambda row: repr(row["text"]))
def test_keyword(row: dict[str, str]) -> None:
    text = row["text"].encode("latin-1", "backslashreplace").decode("unicode_escape")
    command = parse(text)
    assert command.intent.value == row["intent"]
    assert command.amount_cents == (int(row["amount_cents"]) if row["amount_cents"] else None)
    assert command.number == (row["number"] or None)
    assert command.language == (row["language"] or None)
    assert command.spanish is bool(row["spanish"])
    assert command.bad_amount is bool(row["bad_amount"])
    assert command.card_number is bool(row["card_number"])


def test_conversation_imports_nothing_from_flask_sqlmodel_or_twilio() -> None:
    probe = (
        "import sys, textpay.conversation\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('flask', 'sqlmodel', 'sqlalchemy', 'twilio'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
