"""Job: warn subscribers whose card on file is about to expire (`textpay.card_expiry`).

The clock runs it once a day (`RUN_AT`, and once when the clock starts, which catches up a day
the clock was down); `textpay card-expiry` runs it once, now. Reruns are harmless: each card has
each warning once (`card_expiry_notice`'s unique key), and the texts wait in the outbox for the
number's sending window.

One clock at a time: the `card_expiry` lease row (taken like the scan's on SQLite, on both
databases: the job is short and daily), renewed after every batch; another clock that finds it
held steps aside. The plan is read in one transaction, then the warnings are queued in batches
(short transactions), each account decided again on its fresh row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from scheduler import scan
from textpay import card_expiry
from textpay.db import unit_of_work
from textpay.engine_config import EngineConfig
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)

LEASE = "card_expiry"
BATCH = 200
# When the clock runs it (UTC): mid-morning on the East Coast. Texts still wait for each
# number's own window, so the hour only decides how soon after it opens they can go.
RUN_AT = {"hour": 14, "minute": 10}


@dataclass
class CardExpiryResult:
    warned: int = 0
    already_warned: int = 0
    skipped: int = 0
    errors: int = 0
    leader: bool = True

    def counts(self) -> dict[str, int]:
        return {"warned": self.warned, "already_warned": self.already_warned,
                "skipped": self.skipped, "errors": self.errors}  # fmt: skip


def run(db: Engine, config: EngineConfig, *, now: datetime | None = None) -> CardExpiryResult:
    """Queue today's warnings. `now` pins the clock (tests); by default each batch is stamped
    with the time it really runs."""
    result = CardExpiryResult()
    holder = scan.lease_holder()
    if not scan.take_lease(db, holder, LEASE):
        result.leader = False
        return result
    try:
        with unit_of_work(db) as session:
            due = card_expiry.plan(session, now=now or utcnow())
        for start in range(0, len(due), BATCH):
            if start and not scan.take_lease(db, holder, LEASE):
                log.warning("card expiry: lost the lease; stopping after %d accounts", start)
                break
            with unit_of_work(db) as session:
                counts = card_expiry.warn(session, due[start : start + BATCH],
                                          now=now or utcnow(), config=config)  # fmt: skip
            result.warned += counts.queued
            result.already_warned += counts.already
            result.skipped += counts.skipped
            result.errors += counts.errors
    finally:
        scan.give_back_lease(db, holder, LEASE)
    log.info("card expiry: %s", result.counts())
    return result
