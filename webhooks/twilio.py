"""Twilio's webhooks: inbound SMS (`POST /twilio/sms`) and delivery status (`POST /twilio/status`).

Every request must carry a valid `X-Twilio-Signature`, computed by Twilio over the public URL it
called and the form it posted; anything else gets 403 before it is read. An inbound text runs
in phases so that no transaction is open while a card is charged: record and decide, charge,
settle and reply. The reply is TwiML, and a repeated MessageSid gets the same reply.
"""

from __future__ import annotations

import hmac
import logging
import re
from functools import lru_cache
from xml.sax.saxutils import escape

from flask import Blueprint, Response, request
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from textpay import engine, funding, metrics, outbox
from textpay.errors import ValidationFailed
from textpay.phones import masked_phone
from textpay.timeutil import utcnow
from webhooks import operations
from webhooks.problems import Problem
from webhooks.services import request_engine_config, services
from webhooks.transactions import in_transaction

bp = Blueprint("twilio", __name__, url_prefix="/twilio")
log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
_SID = re.compile(r"^[A-Za-z]{2}[0-9a-fA-F]{32}$")
# Twilio's error codes are whole numbers (five digits today); `Message.error_code` holds ten.
_ERROR_CODE = re.compile(r"[0-9]{1,10}")


@bp.before_request
def _require_signature() -> None:
    settings = services().settings
    if not settings.validate_signatures:
        return
    if not settings.twilio_auth_token:
        raise Problem("forbidden", "TWILIO_AUTH_TOKEN is not set, so no signature can be valid.")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature or not _signed_by_twilio(
        _validator(settings.twilio_auth_token), _signed_url(), request.form, signature
    ):
        raise Problem("forbidden", "Missing or invalid X-Twilio-Signature.")


@lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)


def _signed_by_twilio(
    validator: RequestValidator, url: str, form: MultiDict[str, str], signature: str
) -> bool:
    """Whether Twilio signed this URL and form. `RequestValidator.validate` accepts a signature
    over the URL with its port or without it (Twilio signs either), and always computes both;
    the URL as this request saw it is one of the two, so a signature over it is checked with
    one HMAC (every webhook), and any other with `validate`'s two."""
    # compare_digest refuses a str that is not ASCII (a header may hold any latin-1 character):
    # the bytes are compared, and such a signature is simply wrong.
    expected = validator.compute_signature(url, form).encode()
    if hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape")):
        return True
    return bool(validator.validate(url, form, signature))


def _signed_url() -> str:
    """The URL Twilio signed: the configured public URL when behind a proxy, else this request's."""
    public = services().settings.public_url
    if public:
        path = request.full_path if request.query_string else request.path
        return public.rstrip("/") + path
    return request.url


def _required(name: str) -> str:
    value = request.form.get(name, "").strip()
    if not value:
        raise Problem("bad-webhook", f"The webhook has no {name}.")
    return value


@bp.post("/sms")
def inbound() -> Response:
    sid = request.form.get("MessageSid", "").strip() or _required("SmsSid")
    if not _SID.match(sid):
        raise Problem("bad-webhook", "MessageSid is not a Twilio SID.")
    sms = engine.InboundSms(sid=sid, sender=_required("From"), body=request.form.get("Body", ""),
                            request_id=operations.request_id())  # fmt: skip
    found = services()
    config = request_engine_config()

    try:
        turn = in_transaction(
            lambda session: engine.receive(session, sms, now=utcnow(), config=config)
        )
    except ValidationFailed as error:
        raise Problem("bad-webhook", error.detail) from None
    metrics.INBOUND_TEXTS.labels(intent=turn.intent).inc()  # committed: counted once
    answer = turn.reply
    if turn.charge is not None:
        order = turn.charge
        result = funding.call_gateway(
            found.gateway, order, timeout_seconds=found.settings.gateway_timeout_seconds
        )
        answer = in_transaction(
            lambda session: engine.finish(session, turn, result, now=utcnow(), config=config)
        )
    log.info(  # not the words: a text is the subscriber's, and may hold anything
        "sms %s from %s%s: %d characters",
        sid,
        masked_phone(sms.sender),
        " (replay)" if turn.replayed else "",
        len(sms.body),
    )
    return Response(reply_twiml(answer), mimetype="text/xml")


_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def reply_twiml(answer: str | None) -> str:
    """The TwiML that answers a text with `answer` (no message for none or empty): the same
    characters the SDK's `MessagingResponse` writes (tests/web/test_reply_twiml.py), written
    directly: the SDK builds it through ElementTree, forty times the work (10 µs a reply)."""
    if not answer:
        return _XML_DECLARATION + "<Response />"
    words = escape(answer)
    if not words.isascii():
        # As ElementTree encodes: what UTF-8 cannot hold (a lone surrogate) as a character
        # reference, so that the reply can always be sent.
        words = words.encode("utf-8", "xmlcharrefreplace").decode("utf-8")
    return f"{_XML_DECLARATION}<Response><Message>{words}</Message></Response>"


@bp.post("/status")
def status() -> Response:
    sid = _required("MessageSid")
    if not _SID.match(sid):
        raise Problem("bad-webhook", "MessageSid is not a Twilio SID.")
    new_status = _required("MessageStatus")
    error_code = request.form.get("ErrorCode", "").strip() or None
    if error_code is not None and not _ERROR_CODE.fullmatch(error_code):
        # Twilio's error codes are numbers (30003, 21610): anything else is not Twilio's, and
        # is refused whole rather than stored cut or cleaned into a code that means something.
        raise Problem("bad-webhook", "ErrorCode is not a Twilio error code.")

    in_transaction(
        lambda session: outbox.report_status(
            session, sid=sid, status=new_status, error_code=error_code, now=utcnow()
        )
    )
    metrics.SMS_STATUS.labels(
        status=metrics.status_label(new_status), error_code=metrics.error_code_label(error_code)
    ).inc()
    return Response(status=204)
