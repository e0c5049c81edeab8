"""`textpay demo`: the whole product in a minute, on a throw-away SQLite file.

Enrols the sample subscribers in `fixtures/demo.json` through the admin API, drains their
balances with call charges, runs the real low-balance scan and outbox dispatcher (console
sender), and plays their text conversations as signed Twilio webhooks through the Flask app,
printing each exchange with the ledger entries it caused. Nothing here is a canned string: every
line TextPay "says" is what the engine answered.

Tio Luis, above the dollar threshold, is offered for his runway (days of calls left at his usual
pace); Abuela's larger SI asks for her passcode; she tops up by text (AGREGAR 20); months later
the card-expiry job warns of the cards about to expire (once each: it runs twice).

A subscriber whose card declines texts CARD and "opens" the link TextPay answers with, as her
phone's browser would: the demo GETs the card page through the Flask test client, posts its form
(with the page's CSRF value) choosing another sandbox card, shows the confirmation page and the
confirmation text, and her next YES pays. On Stripe the card page hands over to Stripe Checkout,
which a terminal cannot show: the turns marked `sandbox_only` in the fixture are left out there.

With `payments="stripe"` the same story charges cards through Stripe's API: the demo starts the
test suite's Stripe stand-in (`tests/standin/stripe.py`, which checks each request against
Stripe's OpenAPI description), enrols Stripe's test payment methods instead of sandbox tokens,
and prints every request TextPay sent to Stripe under the step that caused it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TextIO

import phonenumbers
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from scheduler import card_expiry, dispatch, scan
from textpay import card_links, ledger
from textpay.config import Settings
from textpay.db import create_schema, make_engine, unit_of_work
from textpay.models import Account, LedgerEntry
from textpay.money import format_cents
from textpay.payments import SANDBOX_CARDS
from textpay.phones import to_e164
from textpay.policy import delivery_rules
from textpay.sms import ConsoleSender
from textpay.timeutil import travel, utcnow
from webhooks import create_app
from webhooks.phone import Phone

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "demo.json"
ADMIN_TOKEN = "demo-admin-token"  # noqa: S105 (a throw-away database's token)
AUTH_TOKEN = "demo-twilio-auth-token"  # noqa: S105
WIDTH = 78
STRIPE_DEMO_KEY = "sk_test_textpay_demo"  # the stand-in's, never Stripe's
# The sandbox's test tokens in the story, as Stripe's test payment methods.
STRIPE_TEST_CARDS = {
    "tok_visa": "pm_card_visa",
    "tok_mastercard": "pm_card_mastercard",
    "tok_chargeDeclined": "pm_card_chargeDeclined",
}
# What of a Stripe request the demo prints (never a secret: the stand-in's key is not shown).
_SHOWN_PARAMS = ("amount", "currency", "customer", "payment_method", "confirm", "off_session",
                 "payment_intent", "statement_descriptor_suffix")  # fmt: skip


@dataclass
class Demo:
    out: TextIO
    app: Flask
    story: dict[str, Any]
    admin: FlaskClient
    when: datetime = field(default_factory=utcnow)
    last_entry: int = 0
    phones: dict[str, Phone] = field(default_factory=dict)
    stripe: Any = None  # the Stripe stand-in, when the demo pays through Stripe
    stripe_seen: int = 0

    @property
    def engine(self) -> Engine:
        found: Engine = self.app.extensions["textpay"].engine
        return found

    def name(self, number: str) -> str:
        owners = [a["nickname"] for a in self.story["accounts"] if to_e164(a["phone"]) == number]
        return " & ".join(owners) or number

    def call(self, method: str, path: str, body: Any, **headers: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-TextPay-Actor": "demo", **headers}
        response = self.admin.open(path, method=method, json=body, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"demo step failed: {response.get_json()}")
        answer: dict[str, Any] = response.get_json()
        return answer

    def scan_and_send(self, at: datetime) -> tuple[scan.ScanResult, dispatch.DispatchCounts]:
        parts = self.app.extensions["textpay"]
        result = scan.run(self.engine, parts.gateway, parts.engine_config, now=at)
        sender = ConsoleSender(
            self.out, render=lambda to, body: said(f"TextPay → {self.name(to)}", body)
        )
        sent = dispatch.run(self.engine, sender, pacer=dispatch.Pacer(0), now=lambda: at)
        return result, sent

    def send(self) -> dispatch.DispatchCounts:
        """Send what the outbox holds now (the dispatcher alone: no scan, no new offers)."""
        sender = ConsoleSender(
            self.out, render=lambda to, body: said(f"TextPay → {self.name(to)}", body)
        )
        return dispatch.run(self.engine, sender, pacer=dispatch.Pacer(0), now=utcnow)

    def show_ledger(self) -> None:
        with unit_of_work(self.engine) as session:
            entries = session.exec(
                select(LedgerEntry)
                .where(col(LedgerEntry.id) > self.last_entry)
                .order_by(col(LedgerEntry.id))
            ).all()
            for entry in entries:
                account = session.get(Account, entry.account_id)
                assert account is not None
                sign = "+" if entry.amount_cents > 0 else ""
                print(f"    ledger: acct ...{account.account_number[-4:]} {entry.kind} "
                      f"{sign}{format_cents(entry.amount_cents)} → balance "
                      f"{format_cents(entry.balance_after_cents)}", file=self.out)  # fmt: skip
                self.last_entry = entry.id or self.last_entry
        self.show_stripe()

    def show_stripe(self) -> None:
        """Print the requests TextPay sent to Stripe since the last step."""
        if self.stripe is None:
            return
        requests = self.stripe.requests[self.stripe_seen :]
        self.stripe_seen += len(requests)
        for request in requests:
            shown = " ".join(
                f"{name}={_flat(request.params[name])}"
                for name in _SHOWN_PARAMS
                if name in request.params
            )
            metadata = request.params.get("metadata") or {}
            if "textpay_key" in metadata:
                shown += f" metadata[textpay_key]={metadata['textpay_key']}"
            key = f" Idempotency-Key: {request.idempotency_key}" if request.idempotency_key else ""
            print(f"    stripe: {request.method} {request.path} {shown}{key} → {request.status}"
                  .replace("  ", " "), file=self.out)  # fmt: skip


def run(out: TextIO, database: Path | None = None, payments: str = "sandbox") -> bool:
    """Play the demo; returns whether the ledger checks out at the end."""
    path = database or Path(tempfile.mkdtemp(prefix="textpay-demo-")) / "demo.db"
    url = f"sqlite:///{path}"
    create_schema(make_engine(url))
    with _payments(payments) as (stripe, overrides):
        settings = Settings(
            _env_file=None,
            database_url=url,
            admin_token=ADMIN_TOKEN,
            twilio_auth_token=AUTH_TOKEN,
            sms_backend="console",
            **overrides,
        )
        app = create_app(settings)
        story = json.loads(FIXTURE.read_text(encoding="utf-8"))
        if stripe is not None:
            story["conversation"] = [t for t in story["conversation"] if not t.get("sandbox_only")]
            for account in story["accounts"]:
                token = account["payment_method"]["token"]
                account["payment_method"]["token"] = STRIPE_TEST_CARDS.get(token, token)
        demo = Demo(out, app, story, app.test_client(), stripe=stripe)
        through = f", paying through Stripe's API at {stripe.url}" if stripe is not None else ""
        print(f"TextPay demo, on a throw-away database: {path}{through}", file=out)
        enrol(demo)
        drain(demo)
        demo.when = daytime(demo.engine)
        # The story goes on at that moment, whatever the hour the demo is run at: offers are
        # sent in the subscribers' daytime and answered minutes after, as they would be.
        with travel(demo.when):
            first_scan(demo)
            converse(demo)
        cards_expire(demo)
        sound = standings(demo)
        demo.engine.dispose()
    return sound


@contextlib.contextmanager
def _payments(payments: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The Stripe stand-in and the settings that point TextPay at it, or nothing for the
    sandbox. The stand-in lives with the tests (a checkout installed with the test extras)."""
    if payments == "sandbox":
        yield None, {}
        return
    checkout = str(FIXTURE.parents[1])
    if checkout not in sys.path:  # the console script's path holds only its own folder
        sys.path.append(checkout)
    try:
        standin = importlib.import_module("tests.standin.stripe")
    except ImportError as error:
        raise RuntimeError(
            "the Stripe demo runs the test suite's Stripe stand-in: run it from a checkout "
            f"installed with `pip install -e '.[test]'` ({error})"
        ) from error
    # The demo prints what was sent itself; the stand-in's own request log would interleave.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with standin.StripeStandIn(api_key=STRIPE_DEMO_KEY) as stripe:
        yield (
            stripe,
            {
                "payments_backend": "stripe",
                "stripe_api_key": STRIPE_DEMO_KEY,
                "stripe_api_url": stripe.url,
                "stripe_webhook_secret": stripe.webhook_secret,
                "stripe_statement_descriptor_suffix": "CALLS",
            },
        )


def _flat(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def enrol(demo: Demo) -> None:
    heading(demo.out, "1. Families enrol their accounts (admin API)")
    for n, account in enumerate(demo.story["accounts"]):
        fields = {k: v for k, v in account.items()
                  if k not in ("start_cents", "calls_cents", "passcode")}  # fmt: skip
        created = demo.call("POST", "/admin/accounts", fields)
        if account.get("passcode"):
            demo.call("PUT", f"/admin/accounts/{created['id']}/passcode",
                      {"passcode": account["passcode"]})  # fmt: skip
        deposit = {"amount_cents": account["start_cents"], "reason": "first deposit"}
        demo.call("POST", f"/admin/accounts/{created['id']}/credits", deposit,
                  **{"Idempotency-Key": f"demo-start-{n}"})  # fmt: skip
        account["id"] = created["id"]
        demo.show_stripe()
        card = created["payment_method"]
        autopay = ", AutoPay on" if created["autopay_enabled"] else ""
        print(f"  acct ...{created['account_number'][-4:]} {created['nickname']:<9} "
              f"{pretty(created['phone'])}  {created['language']}  "
              f"{format_cents(account['start_cents']):>7}  {card['brand']} ...{card['last4']}"
              f"{autopay}", file=demo.out)  # fmt: skip


def drain(demo: Demo) -> None:
    heading(demo.out, "2. Calls drain the balances (usage from the calling platform)")
    for account in demo.story["accounts"]:
        for i, cents in enumerate(account["calls_cents"]):
            usage = {"amount_cents": cents, "reference": f"demo-call-{account['id']}-{i}"}
            demo.call("POST", f"/admin/accounts/{account['id']}/usage", usage)
        shown = demo.call("GET", f"/admin/accounts/{account['id']}", None)
        calls = " ".join(f"-{format_cents(c)}" for c in account["calls_cents"])
        print(f"  acct ...{account['account_number'][-4:]} {account['nickname']:<9} {calls}"
              f"  → {format_cents(shown['balance_cents'])}", file=demo.out)  # fmt: skip
    with unit_of_work(demo.engine) as session:
        last = session.exec(select(LedgerEntry.id).order_by(col(LedgerEntry.id).desc())).first()
    demo.last_entry = last or 0


def first_scan(demo: Demo) -> None:
    heading(
        demo.out, f"3. The scan runs (at {demo.when:%H:%M} UTC, inside everyone's sending hours)"
    )
    result, _ = demo.scan_and_send(demo.when)
    print(f"  (offers made: {result.prompted}, AutoPay charges: {result.autopay_charged})",
          file=demo.out)  # fmt: skip
    demo.show_ledger()


def converse(demo: Demo) -> None:
    heading(demo.out, "4. Subscribers answer by text (signed Twilio webhooks)")
    client = demo.app.test_client()
    later = demo.when + timedelta(hours=73)  # past the 72-hour cooldown: reminders are due
    with contextlib.ExitStack() as clock:
        for turn in demo.story["conversation"]:
            if turn.get("after_seconds"):  # the subscriber takes her time: the clock moves on
                clock.enter_context(travel(utcnow() + timedelta(seconds=turn["after_seconds"])))
            _turn(demo, client, turn, later)


def _turn(demo: Demo, client: FlaskClient, turn: dict[str, Any], later: datetime) -> None:
    """One text of the story, TextPay's answer, and what followed from it."""
    number = to_e164(turn["phone"])
    phone = demo.phones.setdefault(
        number,
        Phone(number, base_url="http://localhost", auth_token=AUTH_TOKEN,
              transport=in_process(client)),
    )  # fmt: skip
    if turn.get("note"):
        print(f"  ({turn['note']})", file=demo.out)
    say(demo.out, f"{demo.name(number)} → TextPay", turn["says"])
    answer = phone.text(turn["says"])
    say(demo.out, f"TextPay → {demo.name(number)}", answer or "(no reply)")
    demo.show_ledger()
    if turn.get("opens_link"):
        open_card_link(demo, client, demo.name(number), answer, turn["opens_link"])
    if turn["says"].upper() in ("STOP", "START"):
        _, sent = demo.scan_and_send(later)
        texts = f"{sent.sent} text{'' if sent.sent == 1 else 's'}"
        print(f"  (a scan three days later, when a reminder is due: {texts} sent)",
              file=demo.out)  # fmt: skip
    print(file=demo.out)


_LINK = re.compile(r"https?://[^/\s]+(/card/[A-Za-z0-9_-]+)")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def open_card_link(demo: Demo, client: FlaskClient, who: str, text: str, card: str) -> None:
    """Open the card link in `text` as the subscriber's phone would, choose the sandbox card
    `card` on its page, and send the confirmation text the choice queued."""
    found = _LINK.search(text)
    if found is None:
        raise RuntimeError(f"demo step failed: no card link in {text!r}")
    path = found.group(1)
    shown = card_links.masked(path)  # the link worked once; the transcript need not keep it
    page = client.get(path)
    html = page.get_data(as_text=True)
    csrf = _CSRF.search(html)
    if page.status_code != 200 or csrf is None:
        raise RuntimeError(f"demo step failed: GET {shown} answered {page.status_code}")
    say(demo.out, f"{who} opens the link (GET {shown} → {page.status_code})", page_words(html))
    done = client.post(path, data={"csrf": csrf.group(1), "card": card})
    if done.status_code != 200:
        raise RuntimeError(f"demo step failed: POST {shown} answered {done.status_code}")
    chosen = SANDBOX_CARDS[card]
    name = f"{chosen.brand.title()} ...{chosen.last4}"
    say(demo.out, f"{who} chooses {name} and saves (POST {shown} → {done.status_code})",
        page_words(done.get_data(as_text=True)))  # fmt: skip
    demo.send()


class _PageWords(HTMLParser):
    """A page's words as a phone shows them, without its form's list of cards."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._in_main = self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_main |= tag == "main"
        self._in_form |= tag == "form"

    def handle_endtag(self, tag: str) -> None:
        self._in_main &= tag != "main"
        self._in_form &= tag != "form"
        if tag in ("h1", "h2", "p"):
            self.parts.append("|")

    def handle_data(self, data: str) -> None:
        words = " ".join(data.split())
        if self._in_main and not self._in_form and words:
            self.parts.append(words)


def page_words(html: str) -> str:
    """`Update your card | Account | ...3344 (Sis) | Card on file | Visa ...0002 ...`"""
    parser = _PageWords()
    parser.feed(html)
    blocks = " ".join(parser.parts).split("|")
    return " | ".join(b.strip() for b in blocks if b.strip())


def cards_expire(demo: Demo) -> None:
    """Months later, the daily card-expiry job: 25 days before the end of August 2029, when
    Mom's and Tio Luis's cards expire, each card on file gets one warning (a rerun, none)."""
    moment = datetime(2029, 8, 7, 16, 0, tzinfo=UTC)  # noon in New York: inside the window
    heading(demo.out, "5. Months later: cards about to expire (the daily card-expiry job)")
    with travel(moment):
        config = demo.app.extensions["textpay"].engine_config
        first = card_expiry.run(demo.engine, config, now=moment)
        again = card_expiry.run(demo.engine, config, now=moment)
        demo.send()
    print(f"  (warnings queued: {first.warned}; the same job run again: {again.warned})",
          file=demo.out)  # fmt: skip


def standings(demo: Demo) -> bool:
    heading(demo.out, "6. Where everyone stands")
    with unit_of_work(demo.engine) as session:
        for account in session.exec(select(Account).order_by(col(Account.id))):
            state = "opted out" if account.opted_out else "subscribed"
            autopay = ", AutoPay on" if account.autopay_enabled else ""
            print(f"  acct ...{account.account_number[-4:]} {account.nickname:<9} "
                  f"{format_cents(account.balance_cents):>7}  {state}{autopay}",
                  file=demo.out)  # fmt: skip
        drifts = ledger.verify(session)
    verdict = "every balance equals the sum of its entries" if not drifts else f"DRIFT: {drifts}"
    print(f"\n  ledger check: {verdict}", file=demo.out)
    return not drifts


def in_process(
    client: FlaskClient,
) -> Callable[[str, dict[str, str], dict[str, str]], tuple[int, str]]:
    def post(url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        response = client.post("/twilio/sms", data=form, headers=headers)
        return response.status_code, response.get_data(as_text=True)

    return post


def daytime(engine: Engine) -> datetime:
    """The first moment from now inside every demo subscriber's sending window."""
    moment = utcnow()
    with unit_of_work(engine) as session:
        rules = [delivery_rules(session, a) for a in session.exec(select(Account))]
    for _ in range(5):
        for rule in rules:
            moment = rule.next_allowed(moment)
        if all(rule.allows(moment) for rule in rules):
            break
    return moment


def heading(out: TextIO, title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}", file=out)


def said(who: str, text: str) -> str:
    lines = textwrap.wrap(text, WIDTH - 6) or [""]
    return "\n".join([f"  {who}:", *(f"      {line}" for line in lines)])


def say(out: TextIO, who: str, text: str) -> None:
    print(said(who, text), file=out)


def pretty(e164: str) -> str:
    number = phonenumbers.parse(e164)
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
