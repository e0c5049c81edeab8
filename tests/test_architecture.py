"""The layers hold (docs/architecture.md): the domain core stays free of the web framework and
the scheduler, money modules know nothing above them, and one module settles a charge."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import textpay

ROOT = Path(__file__).resolve().parents[1]


def run_probe(probe: str) -> str:
    """Run `probe` in a fresh interpreter (nothing already imported) and return what it
    printed."""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


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
    assert run_probe(probe) == ""


def imports_of(path: Path) -> set[str]:
    """The modules a source file imports, as dotted names (`from textpay import x` counts as
    `textpay.x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_money_modules_know_nothing_of_offers_episodes_or_conversations() -> None:
    """Ledger, funding and payments move money; what follows an outcome is settlement's
    (docs/architecture.md, "Layers")."""
    above_money = {"prompts", "episodes", "offers", "lowbalance", "settlement", "engine",
                   "autopay", "conversation", "replies", "consent", "outbox"}  # fmt: skip
    paths = [ROOT / "textpay" / "ledger.py", ROOT / "textpay" / "funding.py",
             *sorted((ROOT / "textpay" / "payments").glob("*.py"))]  # fmt: skip
    assert len(paths) > 3  # the payments package was found
    for path in paths:
        imported = imports_of(path)
        leaks = sorted(m for m in imported if m.removeprefix("textpay.") in above_money)
        assert leaks == [], f"{path.relative_to(ROOT).as_posix()} imports {leaks}"


def test_only_the_stripe_modules_import_the_stripe_sdk() -> None:
    """Stripe's SDK stays behind the gateway protocol: only `textpay/payments/stripe.py` (the
    gateway) and the payments package's module that reads Stripe's webhook events (named
    `stripe_*.py`) import `stripe`; everything else speaks `textpay.payments`' words."""
    offenders = []
    for path in sorted([*ROOT.glob("textpay/**/*.py"), *ROOT.glob("scheduler/**/*.py"),
                        *ROOT.glob("webhooks/**/*.py")]):  # fmt: skip
        name = path.relative_to(ROOT).as_posix()
        if name == "textpay/payments/stripe.py" or (
            name.startswith("textpay/payments/stripe_") and name.count("/") == 2
        ):
            continue
        leaks = sorted(m for m in imports_of(path) if m.split(".")[0] == "stripe")
        if leaks:
            offenders.append(f"{name} imports {leaks}")
    assert offenders == []
    assert "stripe" in imports_of(ROOT / "textpay" / "payments" / "stripe.py")


def test_only_settlement_finishes_a_charge() -> None:
    """One place settles an outcome, whoever learned it: no other module calls
    `funding.settle` or moves an offer to funded or failed."""
    callers = []
    for path in sorted([*ROOT.glob("textpay/*.py"), *ROOT.glob("scheduler/*.py"),
                        *ROOT.glob("webhooks/**/*.py")]):  # fmt: skip
        source = path.read_text(encoding="utf-8")
        if "funding.settle(" in source or "prompts.settle(" in source:
            callers.append(path.relative_to(ROOT).as_posix())
    assert callers == ["textpay/settlement.py"]


def test_the_scan_takes_account_facts_from_below_the_conversation_engine() -> None:
    """The scan's modules read facts from `textpay.facts`, never from `textpay.engine`, which
    orchestrates a subscriber's turn."""
    for path in [ROOT / "scheduler" / "scan.py", ROOT / "scheduler" / "reconcile.py",
                 *(ROOT / "textpay" / f"{m}.py" for m in ("lowbalance", "autopay", "offers",
                                                          "settlement", "facts"))]:  # fmt: skip
        imported = imports_of(path)
        assert "textpay.engine" not in imported, f"{path.name} imports textpay.engine"


# The `textpay` command is an edge of its own (docs/architecture.md, Layers): it composes the web
# app and the clock (`textpay serve`, `clock`, `scan`, and the demo it plays). It lives in
# webhooks/ because the console script's entry point is `webhooks.cli:main`.
CLI_MODULES = {"webhooks/cli.py", "webhooks/demo.py"}


def test_the_web_never_imports_the_scheduler() -> None:
    """Web workers queue work for the clock and never run a job themselves: no module of the
    web app imports `scheduler` (a scan inside a 12 s sync worker got it killed mid-charge)."""
    offenders = []
    for path in sorted(ROOT.glob("webhooks/**/*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in CLI_MODULES:
            continue
        leaks = sorted(m for m in imports_of(path) if m.split(".")[0] == "scheduler")
        if leaks:
            offenders.append(f"{name} imports {leaks}")
    assert offenders == []


def test_loading_the_web_app_loads_no_scheduler_module() -> None:
    """The same rule, whatever the route: the app gunicorn serves, with every blueprint,
    imports nothing from `scheduler`, directly or through another module."""
    probe = (
        "import sys\n"
        "import webhooks\n"
        "from textpay.config import Settings\n"
        "webhooks.create_app(Settings(_env_file=None, database_url='sqlite://'))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'scheduler')\n"
        "print('scheduler modules:', ','.join(loaded))\n"
    )
    assert run_probe(probe).splitlines()[-1] == "scheduler modules:"


def sources() -> list[Path]:
    return sorted([*ROOT.glob("textpay/**/*.py"), *ROOT.glob("scheduler/**/*.py"),
                   *ROOT.glob("webhooks/**/*.py")])  # fmt: skip


def test_offers_are_made_in_one_place() -> None:
    """`textpay.offers` makes every offer, the scan's and the one a subscriber's text gets
    (issue 10 §1: `make_offer` and `make_offers` differed in small ways): no other module
    inserts an offer row or calls the row builders in `textpay.prompts`, but the web's
    rehearsal (`textpay.rehearsal`), whose offer is seeded as the tests' are and never
    outlives its rolled-back transaction."""
    makers = re.compile(r"insert\(Prompt\)|prompts\.offer(_row)?\(|\bPrompt\(")
    found = sorted(
        path.relative_to(ROOT).as_posix()
        for path in sources()
        if makers.search(re.sub(r"class Prompt\(", "", path.read_text(encoding="utf-8")))
    )
    assert found == ["textpay/offers.py", "textpay/prompts.py", "textpay/rehearsal.py"]


def test_account_facts_are_gathered_in_one_place() -> None:
    """What the conversation knows of an account is built by `textpay.facts` alone (issue 10
    §1); the webhook, the scan, settlement and the card pages all ask it."""
    builders = re.compile(r"(?<!class )\b(AccountFacts|OfferFacts)\(")
    found = sorted(
        path.relative_to(ROOT).as_posix()
        for path in sources()
        if builders.search(path.read_text(encoding="utf-8"))
    )
    assert found == ["textpay/facts.py"]


def test_the_code_cites_the_architecture_document_and_it_holds_what_is_cited() -> None:
    """The code once cited sections of a DESIGN file outside the repository (issue 10, Also).
    It cites docs/architecture.md now: each section named exists, and so does each module the
    document names."""
    document = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    headings = [line.lstrip("#").strip() for line in document.splitlines()
                if line.startswith("#")]  # fmt: skip
    for wanted in ("Layers", "Flows", "Settlement", "Invariants"):
        assert any(h.startswith(wanted) for h in headings), wanted
    outside = "DESIGN" + " §"
    cited: list[str] = []
    for path in [*sources(), *sorted(ROOT.glob("tests/**/*.py"))]:
        source = path.read_text(encoding="utf-8")
        assert outside not in source, path.relative_to(ROOT).as_posix()
        cited += re.findall(r"docs/architecture\.md, \"?([A-Z][A-Za-z]+)", source)
    assert cited  # the code does cite it
    for section in cited:
        assert any(h.startswith(section) for h in headings), section
    named = set(re.findall(r"\b(?:textpay|scheduler|webhooks)/[\w/]+\.py\b", document))
    assert named  # the document names the modules that enforce its rules
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []


# What a web worker need not import to answer a webhook (issue 14: a worker ready in under 1 s
# after fork): Stripe's SDK unless Stripe is the gateway, Alembic (migrations run from the CLI),
# libphonenumber's geocoder (asked at enrolment only) and Twilio's REST client (the clock sends).
NOT_FOR_THE_WEB = ("stripe", "alembic", "phonenumbers.geocoder", "twilio.rest", "requests")


def loaded_by_the_web_app(settings: str = "", *, texts: bool = False) -> list[str]:
    """The modules of NOT_FOR_THE_WEB that a fresh interpreter has loaded after
    `create_app(Settings(..., <settings>))` and, when `texts`, after a BAL and a YES from a
    mobile number and from a toll-free one (whose zones `policy` works out again on every text)
    through Twilio's webhook."""
    probe = (
        "import sys\n"
        "import webhooks\n"
        "from textpay.config import Settings\n"
        "settings = Settings(_env_file=None, database_url='sqlite://', validate_signatures=False,"
        f" {settings})\n"
        "app = webhooks.create_app(settings)\n"
    )
    if texts:
        probe += (
            "from textpay.db import create_schema, unit_of_work\n"
            "from textpay.models import Account\n"
            "engine = app.extensions['textpay'].engine\n"
            "create_schema(engine)\n"
            "for key in list(sys.modules):\n"
            "    if key.split('.')[0] in ('alembic', 'mako', 'pygments'):\n"
            "        del sys.modules[key]  # the migration's, not the app's\n"
            "with unit_of_work(engine) as session:\n"
            "    session.add(Account(account_number='A1', phone='+12125550100', phone_state='NY',"
            " phone_zones='America/New_York'))\n"
            "    session.add(Account(account_number='A2', phone='+18005550100'))\n"
            "client = app.test_client()\n"
            "for number, (phone, body) in enumerate([(p, b) for p in ('+12125550100',"
            " '+18005550100') for b in ('BAL', 'YES')]):\n"
            "    answer = client.post('/twilio/sms', data={'MessageSid': f'SM{number:032x}',"
            " 'From': phone, 'To': '+12125550199', 'Body': body})\n"
            "    assert answer.status_code == 200, answer.get_data(as_text=True)\n"
        )
    probe += (
        f"heavy = {NOT_FOR_THE_WEB!r}\n"
        "print('loaded:', ','.join(sorted(m for m in sys.modules"
        " if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    loaded = run_probe(probe).splitlines()[-1].removeprefix("loaded:").strip()
    return [name for name in loaded.split(",") if name]


def test_the_web_app_on_the_sandbox_loads_neither_stripe_nor_migrations_nor_the_geocoder() -> None:
    assert loaded_by_the_web_app() == []


def test_texts_through_the_webhook_load_nothing_the_web_app_put_off() -> None:
    assert loaded_by_the_web_app(texts=True) == []


def test_the_web_app_on_stripe_loads_stripes_sdk_when_it_starts() -> None:
    """Not at the first charge: a worker is ready when it has started."""
    loaded = loaded_by_the_web_app(
        "payments_backend='stripe', stripe_api_key='sk_test_boot', admin_token='boot'"
    )
    assert "stripe" in loaded
    assert "alembic" not in loaded
