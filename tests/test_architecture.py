"""The domain core stays free of the web framework and the scheduler (DESIGN §2)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import textpay

ROOT = Path(__file__).resolve().parents[1]


def test_importing_any_textpay_module_loads_neither_flask_nor_apscheduler() -> None:
    modules = sorted(
        info.name for info in pkgutil.walk_packages(textpay.__path__, prefix="textpay.")
    )
    assert "textpay.ledger" in modules  # the walk found the package's modules
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'apscheduler'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == ""
