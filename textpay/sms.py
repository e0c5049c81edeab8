"""Senders: how a text leaves TextPay. The only module that touches `twilio.rest`.

Owns the vocabulary of a send's outcome: accepted (Twilio has it), retry (it certainly did not
take it: 429/20429, a refused connection), failed for good (invalid number, landline, ...),
opted out (21610), ambiguous (the request may have reached Twilio: a 5xx answer, a connection
reset after the request went out, a read timeout), and unknown (we cannot tell, and must never
send it again blindly).

Twilio takes no idempotency key for creating a message, so a text whose send was ambiguous is
never simply sent again: `find` first asks Twilio for it (the Messages list, filtered by `To`
and `DateSent`, matched on the body), and only a lookup that answers and finds nothing lets the
outbox send it again (`textpay.outbox.send_or_find`).

Twilio's REST client and `requests` under it are imported when a `TwilioSender` is made (the
clock, the CLI), not with this module: the web app uses its vocabulary and never sends.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from twilio.base.exceptions import TwilioException, TwilioRestException

from textpay.logsafe import mask_card_links
from textpay.phones import masked_phone

if TYPE_CHECKING:
    import requests

TWILIO_API_URL = "https://api.twilio.com"
RATE_LIMITED = "20429"  # Twilio: too many requests
OPTED_OUT = "21610"  # Twilio: the recipient replied STOP
# How far our clock and Twilio's may disagree: a message Twilio created this long before our
# try began still matches it.
CLOCK_SKEW = timedelta(minutes=2)
# How many of a number's latest messages a lookup reads (one page). A number gets a few texts a
# day, so a full page of messages newer than the try means we cannot tell.
LOOKUP_PAGE = 50


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
    AMBIGUOUS = "ambiguous"  # may have reached Twilio: look for it there before any resend
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    sid: str | None = None
    status: str | None = None  # Twilio's status for an accepted message
    error_code: str | None = None
    detail: str = ""


def new_sid() -> str:
    """A message SID shaped like Twilio's, unique across processes and restarts (for senders
    that stand in for Twilio)."""
    return "SM" + secrets.token_hex(16)


class SmsSender(Protocol):
    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult: ...

    def find(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """The text to `to` with this `body` created since `since`, if the provider has it
        (`ACCEPTED`, with its SID); None when the provider answered and has no such text;
        `UNKNOWN` when it could not be asked or its answer cannot settle the question."""
        ...


def classify(http_status: int, code: int | str | None) -> SendResult:
    """What a Twilio error answer means for the outbox."""
    error = str(code) if code is not None else None
    if error == OPTED_OUT:
        return SendResult(SendOutcome.OPTED_OUT, error_code=error)
    if http_status == 429 or error == RATE_LIMITED:
        return SendResult(SendOutcome.RETRY, error_code=error or str(http_status))
    if http_status >= 500:  # a 502 or 504 can come back after Twilio created the message
        return SendResult(SendOutcome.AMBIGUOUS, error_code=error or str(http_status))
    return SendResult(SendOutcome.FAILED, error_code=error or str(http_status))


def _rebased_http_client(api_url: str, timeout: tuple[float, float]) -> Any:
    """Twilio's own HTTP client, sending to `api_url` instead of api.twilio.com (a local
    stand-in in tests, a proxy in some deployments)."""
    from twilio.http.http_client import TwilioHttpClient  # noqa: PLC0415  (see the docstring)

    class RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            # Connect and read timeouts apart: a refused connection is safe to retry, a read
            # that times out means the request went out and its outcome is unknown.
            self.timeout = timeout
            self._api_url = api_url.rstrip("/")

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if url.startswith(TWILIO_API_URL):
                url = self._api_url + url[len(TWILIO_API_URL) :]
            return super().request(method, url, *args, **kwargs)

    return RebasedHttpClient()


class TwilioSender:
    """Sends through Twilio's REST API with the official `twilio` client."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_url: str = TWILIO_API_URL,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("a sender needs a from number or a messaging service")
        from twilio.rest import Client  # noqa: PLC0415  (see the module's docstring)

        self._from = from_number
        self._service = messaging_service_sid
        http = _rebased_http_client(api_url, (connect_timeout, read_timeout))
        self._client = Client(account_sid, auth_token, http_client=http)
        # The client logs whole requests at INFO, phone numbers and bodies included.
        logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        import requests  # noqa: PLC0415  (loaded already by the client: a dictionary look-up)

        sender: dict[str, Any] = (
            {"messaging_service_sid": self._service} if self._service else {"from_": self._from}
        )
        if status_callback:
            sender["status_callback"] = status_callback
        try:
            message = self._client.messages.create(to=to, body=body, **sender)
        except TwilioRestException as error:
            result = classify(int(error.status), error.code)
            return SendResult(result.outcome, error_code=result.error_code, detail=error.msg)
        except requests.exceptions.ConnectTimeout as error:
            return SendResult(SendOutcome.RETRY, detail=f"not sent: {type(error).__name__}")
        except requests.exceptions.ConnectionError as error:
            if _never_connected(error):
                return SendResult(SendOutcome.RETRY, detail="not sent: connection refused")
            return SendResult(SendOutcome.AMBIGUOUS, detail=f"no answer: {type(error).__name__}")
        except requests.exceptions.Timeout as error:
            return SendResult(SendOutcome.AMBIGUOUS, detail=f"no answer: {type(error).__name__}")
        return SendResult(SendOutcome.ACCEPTED, sid=message.sid, status=message.status)

    def find(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """Look for a text an ambiguous try may have left at Twilio: one page of the Messages
        sent to `to` on or after the day of `since` (Twilio filters `DateSent` by whole UTC
        days), newest first; the match has our body and was created no earlier than `since`
        (less `CLOCK_SKEW`)."""
        import requests  # noqa: PLC0415  (as in `send`)

        earliest = since - CLOCK_SKEW
        day = datetime.combine(earliest.date(), time(), tzinfo=earliest.tzinfo)
        try:
            page = self._client.messages.page(to=to, date_sent_after=day, page_size=LOOKUP_PAGE)
            found = list(page)
        except TwilioRestException as error:
            return SendResult(SendOutcome.UNKNOWN, error_code=str(error.code or error.status),
                              detail=f"lookup failed: {error.status}")  # fmt: skip
        except (TwilioException, requests.exceptions.RequestException, ValueError) as error:
            return SendResult(SendOutcome.UNKNOWN, detail=f"lookup failed: {type(error).__name__}")
        for message in found:
            created = message.date_created
            if (
                mask_card_links(message.body or "") == mask_card_links(body)
                and str(message.direction or "").startswith("outbound")
                and (not isinstance(created, datetime) or created >= earliest)
            ):
                return SendResult(SendOutcome.ACCEPTED, sid=message.sid, status=message.status,
                                  detail="found at Twilio")  # fmt: skip
        if len(found) >= LOOKUP_PAGE and all(
            isinstance(m.date_created, datetime) and m.date_created >= earliest for m in found
        ):
            return SendResult(SendOutcome.UNKNOWN, detail="lookup: too many texts to tell")
        return None


def _never_connected(error: requests.exceptions.ConnectionError) -> bool:
    """True when the request cannot have reached Twilio (refused or unresolvable), so sending
    again cannot duplicate it."""
    text = repr(error)
    return "NewConnectionError" in text or "Connection refused" in text


class ConsoleSender:
    """Prints each text instead of sending it: the embedded default with no Twilio account."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        render: Callable[[str, str], str] | None = None,
    ) -> None:
        self._stream = stream
        self._render = render or (lambda to, body: f"[sms to {masked_phone(to)}] {body}")

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        stream = self._stream or sys.stdout
        print(self._render(to, body), file=stream, flush=True)
        return SendResult(SendOutcome.ACCEPTED, sid=new_sid(), status="sent")

    def find(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        return None  # a printed text is never ambiguous


@dataclass
class RecordingSender:
    """Keeps every text it is given; `script` can answer with chosen outcomes first, and
    `lookups` with chosen answers to `find` (for unit tests of the code that uses a sender).
    Unscripted, `find` answers from the texts it kept."""

    sent: list[tuple[str, str]]
    script: list[SendResult]
    lookups: list[SendResult | None]
    on_send: Callable[[str, str], None] | None = None

    def __init__(
        self,
        script: list[SendResult] | None = None,
        lookups: list[SendResult | None] | None = None,
    ) -> None:
        self.sent = []
        self.script = list(script or [])
        self.lookups = list(lookups or [])
        self.on_send = None
        self._sids: list[str] = []

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        if self.script:
            result = self.script.pop(0)
            if result.outcome is not SendOutcome.ACCEPTED:
                return result
        sid = new_sid()
        self.sent.append((to, body))
        self._sids.append(sid)
        if self.on_send:
            self.on_send(to, body)
        return SendResult(SendOutcome.ACCEPTED, sid=sid, status="queued")

    def find(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        if self.lookups:
            return self.lookups.pop(0)
        for (sent_to, sent_body), sid in zip(self.sent, self._sids, strict=True):
            if (sent_to, mask_card_links(sent_body)) == (to, mask_card_links(body)):
                return SendResult(SendOutcome.ACCEPTED, sid=sid, status="sent")
        return None
