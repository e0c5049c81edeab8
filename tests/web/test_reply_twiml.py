"""The TwiML an inbound text is answered with is written directly (`webhooks.twilio.reply_twiml`),
not through the SDK's `MessagingResponse`: Twilio must read exactly what the SDK would have
written, for every reply TextPay can give and for any characters an operator's nickname holds."""

from __future__ import annotations

import random
from typing import Any
from xml.etree import ElementTree

import pytest
from twilio.twiml.messaging_response import MessagingResponse

from tests.web.conftest import MOM
from tests.web.twilio_client import TwilioClient
from textpay import replies
from webhooks.twilio import reply_twiml

TRICKY = [
    "Balance for acct ...4821: $3.10. Reply YES to add $25.00",
    "Saldo: $3.10. Responda SÍ para añadir $25.00 (cargo $1.50) — gracias",
    "a & b < c > d \" e ' f",
    "&amp; already escaped &lt;",
    "<Response><Message>free money</Message></Response>",
    "]]> <![CDATA[ x ]]>",
    "line one\nline two\r\nline three\ttabbed",
    "emoji 😀 and CJK 電話 and RTL مرحبا",
    " leading and trailing spaces ",
    "0",
]
# No XML parser accepts these characters; the SDK writes them all the same (a lone surrogate as
# a character reference), and so must the reply.
UNPARSABLE = "controls \x00 \x0b \x85 \u2028 and a lone surrogate \ud83d here"


def sdk_twiml(answer: str | None) -> str:
    twiml = MessagingResponse()
    if answer:
        twiml.message(answer)
    return str(twiml)


@pytest.mark.parametrize("answer", [None, "", *TRICKY, UNPARSABLE])
def test_the_reply_is_what_the_sdk_writes(answer: str | None) -> None:
    assert reply_twiml(answer) == sdk_twiml(answer)


def test_random_text_is_written_as_the_sdk_writes_it() -> None:
    rng = random.Random(14)  # the same strings every run
    alphabet = "abcXYZ019 $.,;:!?&<>\"'=/\\\n\t-éñÜß€£¥😀電話"
    for _ in range(2000):
        answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert reply_twiml(answer) == sdk_twiml(answer), repr(answer)


def test_a_reply_parses_back_to_its_words() -> None:
    for answer in TRICKY:
        root = ElementTree.fromstring(reply_twiml(answer))
        (message,) = root.findall("Message")
        assert message.text == answer.replace("\r\n", "\n")


def test_every_reply_template_is_written_as_the_sdk_writes_it() -> None:
    for language, templates in replies.TEMPLATES.items():
        for key, words in templates.items():
            assert reply_twiml(words) == sdk_twiml(words), (language, key)


def test_a_webhook_answers_with_it(twilio: TwilioClient, low_account: dict[str, Any]) -> None:
    response = twilio.sms(MOM, "BAL")
    body = response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    (message,) = ElementTree.fromstring(body).findall("Message")
    assert message.text
    assert "$" in message.text
    assert body == sdk_twiml(message.text)
