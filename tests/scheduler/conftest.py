"""Fixtures for the engine's own initiative: the Twilio stand-in and a sender that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.standin.twilio import TwilioStandIn
from tests.web.twilio_client import OUR_NUMBER, TWILIO_AUTH_TOKEN
from textpay.sms import TwilioSender

ACCOUNT_SID = "AC" + "1" * 32


@pytest.fixture
def standin() -> Iterator[TwilioStandIn]:
    server = TwilioStandIn(TWILIO_AUTH_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def twilio_sender(standin: TwilioStandIn) -> TwilioSender:
    """The real `twilio` client, over real HTTP, to the stand-in."""
    return TwilioSender(
        ACCOUNT_SID,
        TWILIO_AUTH_TOKEN,
        from_number=OUR_NUMBER,
        api_url=standin.url,
        connect_timeout=1.0,
        read_timeout=0.5,
    )
