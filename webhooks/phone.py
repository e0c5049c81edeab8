"""A subscriber's phone, simulated: sends inbound SMS webhooks exactly as Twilio does (form
fields, a fresh MessageSid, an X-Twilio-Signature made with the auth token) and reads the TwiML
reply. Used by `textpay demo` (in-process) and `textpay chat` (over HTTP to a running server).
"""

from __future__ import annotations

import itertools
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from xml.etree import ElementTree

from twilio.request_validator import RequestValidator

# What an inbound webhook is posted with: (url, form, headers) → (status, body).
Transport = Callable[[str, dict[str, str], dict[str, str]], tuple[int, str]]

OUR_NUMBER = "+12125550100"  # the TextPay number subscribers text, in simulations


def over_http(url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:  # noqa: S310 (our own URL)
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as failure:
        return failure.code, failure.read().decode()


class Phone:
    def __init__(
        self, number: str, *, base_url: str, auth_token: str, transport: Transport = over_http
    ) -> None:
        self.number = number
        self._url = base_url.rstrip("/") + "/twilio/sms"
        self._validator = RequestValidator(auth_token)
        self._transport = transport
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def text(self, body: str) -> str:
        """Send `body`; return TextPay's reply ('' when it says nothing)."""
        form = {
            "MessageSid": f"SM{self._prefix}{next(self._counter):016x}",
            "AccountSid": "AC" + "0" * 32,
            "From": self.number,
            "To": OUR_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        signature = self._validator.compute_signature(self._url, form)
        status, answer = self._transport(self._url, form, {"X-Twilio-Signature": signature})
        if status != 200:
            raise RuntimeError(f"TextPay answered {status}: {answer[:200]}")
        return reply_text(answer)


def reply_text(twiml: str) -> str:
    root = ElementTree.fromstring(twiml)  # noqa: S314 (TwiML from our own server)
    message = root.find("Message")
    return (message.text or "") if message is not None else ""
