"""Issue 10 §2: YES texts racing after an offer expired charge nothing. The first to get in
makes a fresh offer; the others (a second YES sent together, or the losers of a 20-YES race
retried) must not accept it before the subscriber has seen it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from freezegun import freeze_time
from sqlalchemy.engine import Engine

from tests.conftest import AdminClient
from tests.web.conftest import MOM, charges, count, deposits, prompt_status
from tests.web.twilio_client import TwilioClient
from textpay.models import Prompt


def test_twenty_concurrent_yes_after_expiry_charge_nothing_and_make_one_fresh_offer(
    app: Flask, admin: AdminClient, engine: Engine, offer: Callable[[int], int]
) -> None:
    with freeze_time("2026-11-26 19:05:00") as clock:  # 2:05pm in New York
        account = admin.enrol(account_number="ACCT-4821", nickname="Mom")
        admin.credit(account["id"], 310, "seed")
        first = offer(account["id"])
        clock.tick(timedelta(hours=24, minutes=1))

        barrier = threading.Barrier(20)
        answers: list[str] = []
        lock = threading.Lock()

        def subscriber() -> None:
            client = TwilioClient(app.test_client())
            barrier.wait()
            answer = client.text(MOM, "YES")
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=subscriber) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert len(answers) == 20
        assert not any("added $" in a or "charged $" in a for a in answers), answers
        assert charges(engine) == 0
        assert deposits(engine) == 0
        assert prompt_status(engine, first) == "expired"
        assert count(engine, Prompt, Prompt.status == "pending") == 1  # one fresh offer

        # Read (and past the flood limit's minute): now a YES accepts it, once.
        clock.tick(timedelta(seconds=61))
        assert "added $25.00" in TwilioClient(app.test_client()).text(MOM, "YES")
    assert charges(engine) == 1
    assert deposits(engine) == 1
