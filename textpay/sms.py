"""Senders: how a text leaves TextPay. The only module that touches `twilio.rest`.

Owns the vocabulary of a send's outcome: accepted (Twilio has it), retry (it did not take it:
429/20429, 5xx, no connection), failed for good (invalid number, landline, ...), opted out
(21610), and unknown: the request went out and no answer came back, so the text may or may not
be on its way and must never be sent again blindly.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TextIO

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from textpay.phones import masked_phone

TWILIO_API_URL = "https://api.twilio.com"
RATE_LIMITED = "20429"  # Twilio: too many requests
OPTED_OUT = "21610"  # Twilio: the recipient replied STOP


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
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


def classify(http_status: int, code: int | str | None) -> SendResult:
    """What a Twilio error answer means for the outbox."""
    error = str(code) if code is not None else None
    if error == OPTED_OUT:
        return SendResult(SendOutcome.OPTED_OUT, error_code=error)
    if http_status == 429 or error == RATE_LIMITED or http_status >= 500:
        return SendResult(SendOutcome.RETRY, error_code=error or str(http_status))
    return SendResult(SendOutcome.FAILED, error_code=error or str(http_status))


class _RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Twilio's own HTTP client, sending to `api_url` instead of api.twilio.com (a local
    stand-in in tests, a proxy in some deployments)."""

    def __init__(self, api_url: str, timeout: tuple[float, float]) -> None:
        super().__init__()
        # Connect and read timeouts apart: a refused connection is safe to retry, a read that
        # times out means the request went out and its outcome is unknown.
        self.timeout = timeout
        self._api_url = api_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API_URL):
            url = self._api_url + url[len(TWILIO_API_URL) :]
        return super().request(method, url, *args, **kwargs)


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
        self._from = from_number
        self._service = messaging_service_sid
        http = _RebasedHttpClient(api_url, (connect_timeout, read_timeout))
        self._client = Client(account_sid, auth_token, http_client=http)
        # The client logs whole requests at INFO, phone numbers and bodies included.
        logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
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
            return SendResult(SendOutcome.UNKNOWN, detail=f"no answer: {type(error).__name__}")
        except requests.exceptions.Timeout as error:
            return SendResult(SendOutcome.UNKNOWN, detail=f"no answer: {type(error).__name__}")
        return SendResult(SendOutcome.ACCEPTED, sid=message.sid, status=message.status)


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


@dataclass
class RecordingSender:
    """Keeps every text it is given; `script` can answer with chosen outcomes first (for unit
    tests of the code that uses a sender)."""

    sent: list[tuple[str, str]]
    script: list[SendResult]
    on_send: Callable[[str, str], None] | None = None

    def __init__(self, script: list[SendResult] | None = None) -> None:
        self.sent = []
        self.script = list(script or [])
        self.on_send = None

    def send(self, *, to: str, body: str, status_callback: str | None) -> SendResult:
        if self.script:
            result = self.script.pop(0)
            if result.outcome is not SendOutcome.ACCEPTED:
                return result
        self.sent.append((to, body))
        if self.on_send:
            self.on_send(to, body)
        return SendResult(SendOutcome.ACCEPTED, sid=new_sid(), status="queued")
