"""Posting webhooks the way Twilio does: form-encoded and signed with the auth token."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

TWILIO_AUTH_TOKEN = "test-twilio-auth-token"
OUR_NUMBER = "+12125550100"
_sids = itertools.count(1)


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


def sign(url: str, params: dict[str, str], token: str = TWILIO_AUTH_TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, params)
    return signature


def reply_text(response: TestResponse) -> str:
    """The text of the TwiML <Message>, or '' when TextPay chose to say nothing."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response"
    found = root.find("Message")
    return (found.text or "") if found is not None else ""


@dataclass
class TwilioClient:
    client: FlaskClient
    base_url: str = "http://localhost"
    sent: list[dict[str, str]] = field(default_factory=list)

    def post(self, path: str, params: dict[str, str], **kwargs: Any) -> TestResponse:
        signature = sign(self.base_url + path, params)
        headers = {"X-Twilio-Signature": signature, **kwargs.pop("headers", {})}
        return self.client.post(path, data=params, headers=headers, **kwargs)

    def sms(self, sender: str, body: str, *, sid: str | None = None, **extra: str) -> TestResponse:
        params = {
            "MessageSid": sid or new_sid(),
            "AccountSid": "AC" + "0" * 32,
            "From": sender,
            "To": OUR_NUMBER,
            "Body": body,
            "NumMedia": "0",
            **extra,
        }
        self.sent.append(params)
        return self.post("/twilio/sms", params)

    def text(self, sender: str, body: str, *, sid: str | None = None) -> str:
        return reply_text(self.sms(sender, body, sid=sid))

    def status(self, sid: str, status: str, error_code: str | None = None) -> TestResponse:
        params = {"MessageSid": sid, "MessageStatus": status, "To": "+12125550147"}
        if error_code:
            params["ErrorCode"] = error_code
        return self.post("/twilio/status", params)


def texts_at_once(app: Flask, phone: str, bodies: list[str], *, timeout: float = 120) -> list[str]:
    """Each body texted from `phone` at the same moment, each by its own client: TextPay's
    answers, in the order they came."""
    barrier = threading.Barrier(len(bodies))
    answers: list[str] = []
    lock = threading.Lock()

    def subscriber(body: str) -> None:
        client = TwilioClient(app.test_client())
        barrier.wait()
        answer = client.text(phone, body)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=subscriber, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert len(answers) == len(bodies)
    return answers
