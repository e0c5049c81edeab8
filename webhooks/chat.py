"""`textpay chat PHONE`: be the subscriber, in a terminal.

What you type goes to TextPay as a signed Twilio webhook, to a running server (the local
`textpay serve` by default) or to an app in this process; TextPay's reply is printed, and so is
every text TextPay sends this number on its own (offers, receipts), as it is sent. Those are read
from the admin API's message log, so the admin token is needed to see them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from webhooks.phone import Phone

# Outbox states that mean "not sent (yet)": the watcher shows a text once it has left.
_NOT_SENT = {"pending", "dispatching", "canceled"}

# GET a path of the admin API → parsed JSON.
AdminGet = Callable[[str], Any]


class Watcher(threading.Thread):
    """Prints each text TextPay sends this number, once it has been sent."""

    def __init__(self, number: str, admin_get: AdminGet, show: Callable[[str], None],
                 every: float = 1.0) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self._path = f"/admin/messages?phone={number.replace('+', '%2B')}&limit=50"
        self._get = admin_get
        self._show = show
        self._every = every
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._shown: set[int] = {m["id"] for m in self._outbound()}  # history stays quiet

    def _outbound(self) -> list[dict[str, Any]]:
        messages = self._get(self._path)["messages"]
        return [m for m in messages if m["direction"] == "outbound"]

    def poll(self) -> None:
        with self._lock:
            for message in reversed(self._outbound()):
                if message["id"] not in self._shown and message["status"] not in _NOT_SENT:
                    self._shown.add(message["id"])
                    self._show(message["body"])

    def run(self) -> None:
        while not self._stop_event.wait(self._every):
            try:
                self.poll()
            except Exception as error:
                self._show(f"(could not read TextPay's messages: {error})")

    def stop(self) -> None:
        self._stop_event.set()


def chat(
    phone: Phone,
    *,
    stdin: TextIO,
    stdout: TextIO,
    watcher_factory: Callable[[Callable[[str], None]], Watcher] | None = None,
    interactive: bool = False,
) -> None:
    lock = threading.Lock()

    def show(text: str) -> None:
        with lock:
            print(f"textpay> {text}", file=stdout, flush=True)

    watcher = watcher_factory(show) if watcher_factory else None
    if watcher:
        watcher.start()
    print(f"You are {phone.number}. Type a text (YES, BAL, HELP, STOP...); Ctrl-D to leave.",
          file=stdout, flush=True)  # fmt: skip
    try:
        while True:
            if interactive:
                print("you> ", end="", file=stdout, flush=True)
            line = stdin.readline()
            if not line:
                break
            body = line.rstrip("\n")
            if not body.strip():
                continue
            show(phone.text(body) or "(no reply)")
            if watcher:
                time.sleep(0.2)
                watcher.poll()
    finally:
        if watcher:
            watcher.stop()
