"""The keyword table in fixtures/keywords.csv, run through the pure parser.

Which account a number names depends on the phone's accounts, so every row is read as if the
phone had accounts labelled ...4821, ...7730 and ...0050: `names` lists the labels a row names,
`amount_cents` the amount it asks for, `bad_amount` whether it looked like money but was not
an amount (nothing is charged then).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from textpay.conversation import Intent, parse

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "fixtures" / "keywords.csv"
LABELS = ("4821", "7730", "0050")


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
    reading = command.read(LABELS)
    assert command.intent.value == row["intent"]
    assert reading.amount_cents == (int(row["amount_cents"]) if row["amount_cents"] else None)
    assert " ".join(reading.named) == row["names"]
    assert command.language == (row["language"] or None)
    assert command.spanish is bool(row["spanish"])
    assert reading.bad_amount is bool(row["bad_amount"])
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
