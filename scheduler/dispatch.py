"""Job: send what waits in the outbox, at the sender's pace.

Claims a batch (one transaction), sends each text outside any transaction, and records each
outcome in its own transaction. The pacer keeps sends at or under the configured rate across
runs of the job (a Twilio long code takes about one message per second).

One text that fails (it cannot be claimed, its send or its record raises) is logged without the
number or the words, counted in `errors`, and passed over; the rest of the batch goes on. A text
whose send or record failed stays claimed, and the next claim after a few minutes marks it
`unknown`: it may have gone, so it is never sent again blindly. A text whose send had no clear
answer is looked for at Twilio before it is sent again (`outbox.send_or_find`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from textpay import metrics, outbox
from textpay.db import unit_of_work
from textpay.phones import masked_phone
from textpay.sms import SendOutcome, SmsSender
from textpay.timeutil import utcnow

log = logging.getLogger(__name__)


class Pacer:
    """Spaces calls at least 1/rate seconds apart (no limit when rate is 0)."""

    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1 / rate_per_second if rate_per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass
class DispatchCounts:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unknown: int = 0
    errors: int = 0  # texts that could not be claimed, sent or recorded (logged)
    ambiguous: int = 0  # no clear answer: looked for at Twilio before any resend

    def add(self, outcome: SendOutcome) -> None:
        if outcome is SendOutcome.ACCEPTED:
            self.sent += 1
        elif outcome is SendOutcome.RETRY:
            self.retrying += 1
        elif outcome is SendOutcome.AMBIGUOUS:
            self.ambiguous += 1
        elif outcome is SendOutcome.UNKNOWN:
            self.unknown += 1
        else:
            self.failed += 1


def run(
    db: Engine,
    sender: SmsSender,
    *,
    pacer: Pacer,
    batch: int = 50,
    status_callback: str | None = None,
    now: Callable[[], datetime] = utcnow,
    workers: int = 1,
) -> DispatchCounts:
    """Send one claimed batch. With `workers` > 1, sends overlap (Twilio takes concurrent
    requests; its round trip, not our CPU, is what limits one sender), still started no faster
    than the pacer allows and in claim order, answers to subscribers first."""
    with unit_of_work(db) as session:
        claim = outbox.claim_batch(session, now=now(), limit=batch)
    claimed = claim.items
    counts = DispatchCounts(errors=claim.errors)
    lock = threading.Lock()

    def deliver(item: outbox.Outgoing) -> None:
        try:
            result = outbox.send_or_find(sender, item, status_callback=status_callback)
            with unit_of_work(db) as session:
                outbox.record(session, item.message_id, result, now=now())
        except Exception as error:  # one text's failure never stops the batch
            # No body, no full number: the exception's own text may hold either.
            log.error("dispatch: text %s to %s failed (%s); it stays claimed",
                      item.message_id, masked_phone(item.phone), type(error).__name__)  # fmt: skip
            with lock:
                counts.errors += 1
            metrics.SMS_DISPATCH.labels(outcome="error", error_code="").inc()
            return
        with lock:
            counts.add(result.outcome)
        metrics.SMS_DISPATCH.labels(
            outcome=result.outcome.value, error_code=metrics.error_code_label(result.error_code)
        ).inc()

    if workers <= 1:
        for item in claimed:
            pacer.wait()
            deliver(item)
        return counts
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for item in claimed:
            pacer.wait()
            pending.append(pool.submit(deliver, item))
        for future in pending:
            future.result()
    return counts
