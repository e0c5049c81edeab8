"""A local stand-in for Twilio's Messages API, over real HTTP on 127.0.0.1.

Unlike Prism (which checks requests against Twilio's spec but always answers the same), it
returns a unique SID per message, answers with chosen Twilio errors and delays per recipient,
and posts signed status callbacks (sent, then delivered) to the StatusCallback URL, the way
Twilio does. Run it in a thread from tests, or as a process: `python -m tests.standin.twilio`.

It keeps the messages it created and lists them (`GET .../Messages.json`) as Twilio's OpenAPI
describes: filters `To`, `From`, `DateSent`, `DateSent<` and `DateSent>` (compared by UTC date,
as Twilio does), `PageSize`, `Page` and `PageToken`, newest first. An error answer can come
after the message was created (`Answer(accepted=True)`: "accepted, then 502"), and a connection
can be dropped after it was (`Answer(reset=True)`). The stand-in sends at once: a message's
`date_sent` is when it was created. Its request log names paths only (a list's query holds a
phone number) and has no colours.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from twilio.request_validator import RequestValidator
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API = "/2010-04-01/Accounts/"
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")


@dataclass(frozen=True)
class Answer:
    """How to answer one request: an error (`status`, `code`), or success, after `delay`.
    `accepted`: the message is created even though the answer is an error (a 502 after Twilio
    took it). `reset`: the message is created and the connection dropped with no answer."""

    status: int = 201
    code: int | None = None
    delay: float = 0.0
    accepted: bool = False
    reset: bool = False


OK = Answer()


def error(status: int, code: int) -> Answer:
    return Answer(status=status, code=code)


def slow(seconds: float) -> Answer:
    return Answer(delay=seconds)


def accepted_then(status: int, code: int) -> Answer:
    """The message is created, and the answer is an error anyway (a 502 from Twilio's edge)."""
    return Answer(status=status, code=code, accepted=True)


def reset_after_accepting() -> Answer:
    return Answer(reset=True)


class _Handler(WSGIRequestHandler):
    """Werkzeug's request handler, logging the method, the path and the status only."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urllib.parse.urlsplit(self.path).path
        printable = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in path)
        self.log("info", '"%s %s" %s', self.command, printable, getattr(code, "value", code))


class TwilioStandIn:
    def __init__(
        self, auth_token: str, *, callbacks: bool = True, textpay_url: str | None = None
    ) -> None:
        self.auth_token = auth_token
        self.callbacks = callbacks
        self.textpay_url = textpay_url
        self.requests: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []  # created, oldest first
        self.lookups: list[dict[str, str]] = []  # the list requests' queries
        self.calls: list[tuple[str, str]] = []  # ("create" or "list", To), in order
        self.callback_results: list[int] = []
        self._scripts: dict[str, list[Answer]] = defaultdict(list)
        self._lookup_script: list[Answer] = []
        self._sids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, to: str, *answers: Answer) -> None:
        """Answer the next requests for `to` like this, in order; then succeed."""
        with self._lock:
            self._scripts[to].extend(answers)

    def script_lookups(self, *answers: Answer) -> None:
        """Answer the next list requests like this, in order (errors or delays); then list."""
        with self._lock:
            self._lookup_script.extend(answers)

    def sent_to(self, to: str) -> list[dict[str, str]]:
        """Every request to create a message for `to`, whatever it was answered."""
        with self._lock:
            return [r for r in self.requests if r.get("To") == to]

    def created_for(self, to: str) -> list[dict[str, Any]]:
        """The messages created for `to`: what the subscriber receives."""
        with self._lock:
            return [dict(m) for m in self.messages if m["to"] == to]

    def start(self, port: int = 0) -> TwilioStandIn:
        self._server = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=_Handler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.path.startswith("/_"):
            return self._control(request)
        if not (request.path.startswith(API) and request.path.endswith("/Messages.json")):
            return _json({"code": 20404, "message": "Not Found", "status": 404}, 404)
        if request.method == "GET":
            return self._list(request)
        if request.method != "POST":
            return _json({"code": 20004, "message": "Method not allowed", "status": 405}, 405)
        form = dict(request.form.items())
        account_sid = request.path.split("/")[3]
        with self._lock:
            self.requests.append(form)
            self.calls.append(("create", form.get("To", "")))
            queue = self._scripts.get(form.get("To", ""), [])
            answer = queue.pop(0) if queue else OK
        if answer.delay:
            time.sleep(answer.delay)
        if answer.status >= 400 and not answer.accepted:
            return _error(answer)
        message = self._create(account_sid, form)
        if answer.reset:
            connection = request.environ["werkzeug.socket"]
            connection.shutdown(socket.SHUT_RDWR)  # the client reads no answer at all
            return Response(status=500)
        if answer.status >= 400:
            return _error(answer)
        return _json({**message, "status": "queued"}, 201)

    def _create(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        """Keep a new message (sent at once: `date_sent` is now) and report its status."""
        sid = f"SM{next(self._sids):032x}"
        now = format_datetime(datetime.now(UTC))
        message = {
            "sid": sid,
            "account_sid": account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body"),
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_sent": now,
            "date_updated": now,
            "api_version": "2010-04-01",
            "uri": f"{API}{account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"{API}{account_sid}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self.messages.append(message)
        callback = form.get("StatusCallback")
        if callback and self.callbacks:
            threading.Thread(target=self._report, args=(callback, sid, form), daemon=True).start()
        return dict(message)

    def _list(self, request: Request) -> Response:
        """`ListMessage`: the created messages matching the filters, newest first, a page."""
        query = dict(request.args.items())
        account_sid = request.path.split("/")[3]
        with self._lock:
            self.lookups.append(query)
            self.calls.append(("list", query.get("To", "")))
            answer = self._lookup_script.pop(0) if self._lookup_script else OK
        if answer.delay:
            time.sleep(answer.delay)
        if answer.status >= 400:
            return _error(answer)
        try:
            size = int(query.get("PageSize", "50"))
            page = int(query.get("Page", "0"))
            dates = {op: _utc_date(query[name]) for op, name in
                     (("=", "DateSent"), ("<=", "DateSent<"), (">=", "DateSent>"))
                     if name in query}  # fmt: skip
        except ValueError:
            return _error(Answer(status=400, code=20001), "Invalid value")
        if not 1 <= size <= 1000 or page < 0:
            return _error(Answer(status=400, code=20001), "Invalid paging")
        with self._lock:
            found = [
                dict(m) for m in reversed(self.messages)
                if query.get("To", m["to"]) == m["to"]
                and query.get("From", m["from"]) == m["from"]
                and _dated(m["date_sent"], dates)
            ]  # fmt: skip
        chosen = found[page * size : (page + 1) * size]
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}
        base = f"{API}{account_sid}/Messages.json"

        def uri(number: int) -> str:
            extra = {"PageToken": f"PT{number}"} if number else {}
            params = {**filters, "PageSize": size, "Page": number, **extra}
            return f"{base}?{urllib.parse.urlencode(params)}"

        more = (page + 1) * size < len(found)
        return _json({
            "messages": chosen,
            "end": page * size + max(0, len(chosen) - 1),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if more else None,
            "previous_page_uri": uri(page - 1) if page else None,
            "page": page,
            "page_size": size,
            "start": page * size,
            "uri": uri(page),
        }, 200)  # fmt: skip

    def _control(self, request: Request) -> Response:
        """Test controls: what was sent, scripted answers, and a subscriber's text to TextPay."""
        if request.path == "/_outbound":
            with self._lock:
                return _json({"messages": list(self.requests)}, 200)
        if request.path == "/_script" and request.method == "POST":
            body = request.get_json()
            answers = [Answer(**a) for a in body["answers"]]
            if body.get("lookups"):
                self.script_lookups(*answers)
            else:
                self.script(body["to"], *answers)
            return _json({"ok": True}, 200)
        if request.path == "/_callback" and request.method == "POST":
            body = request.get_json()
            self._report(body["url"], body["sid"], {}, statuses=tuple(body["statuses"]))
            return _json({"results": self.callback_results[-len(body["statuses"]) :]}, 200)
        if request.path == "/_inbound" and request.method == "POST" and self.textpay_url:
            status, twiml = self.deliver_inbound(
                request.form["From"], request.form.get("Body", ""), request.form.get("Sid")
            )
            return Response(twiml, status=status, mimetype="text/xml")
        return _json({"error": "unknown control"}, 404)

    def deliver_inbound(self, sender: str, body: str, sid: str | None = None) -> tuple[int, str]:
        """Post a subscriber's text to TextPay as Twilio would: signed, form-encoded."""
        assert self.textpay_url is not None
        url = self.textpay_url.rstrip("/") + "/twilio/sms"
        params = {
            "MessageSid": sid or f"SM{next(self._sids) + 10**12:032x}",
            "AccountSid": "AC" + "0" * 32,
            "From": sender,
            "To": "+12125550100",
            "Body": body,
            "NumMedia": "0",
        }
        return self._post_signed(url, params, timeout=20)

    def _post_signed(self, url: str, params: dict[str, str], *, timeout: float) -> tuple[int, str]:
        """POST a form signed with the auth token, as Twilio does; (status, body), with 502 for
        no answer at all (what Twilio sees when the app dies mid-request)."""
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(params).encode(),
            headers={"X-Twilio-Signature": signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as failure:
            return failure.code, failure.read().decode()
        except (OSError, http.client.HTTPException) as failure:
            return 502, f"no answer: {type(failure).__name__}"

    def _report(
        self,
        url: str,
        sid: str,
        form: dict[str, str],
        statuses: tuple[str, ...] = ("sent", "delivered"),
    ) -> None:
        """Post `sent` then `delivered` (or `statuses`), signed like Twilio's own callbacks."""
        for status in statuses:
            params = {"MessageSid": sid, "MessageStatus": status, "To": form.get("To", ""),
                      "From": form.get("From", ""), "AccountSid": "AC" + "0" * 32}  # fmt: skip
            with self._lock:
                for message in self.messages:
                    if message["sid"] == sid:
                        message["status"] = status
            code, _ = self._post_signed(url, params, timeout=5)
            with self._lock:
                self.callback_results.append(code)


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(answer: Answer, message: str | None = None) -> Response:
    body = {"code": answer.code, "message": message or f"stand-in error {answer.code}",
            "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
            "status": answer.status}  # fmt: skip
    return _json(body, answer.status)


def _utc_date(value: str) -> date:
    """The UTC date a `DateSent` filter names (Twilio reads only the date of a date-time)."""
    matched = _DATE.match(value.strip())
    if not matched:
        raise ValueError(value)
    return date(*(int(part) for part in matched.groups()))


def _dated(date_sent: str | None, dates: dict[str, date]) -> bool:
    if not dates:
        return True
    if date_sent is None:
        return False
    sent = datetime.strptime(date_sent, "%a, %d %b %Y %H:%M:%S %z").astimezone(UTC).date()
    checks = {"=": sent.__eq__, "<=": sent.__le__, ">=": sent.__ge__}
    return all(checks[op](day) for op, day in dates.items())


if __name__ == "__main__":
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--textpay-url", help="where subscribers' texts are posted")
    args = parser.parse_args()
    stand_in = TwilioStandIn(
        os.environ.get("TWILIO_AUTH_TOKEN", ""), textpay_url=args.textpay_url
    ).start(args.port)
    print(stand_in.url, flush=True)
    threading.Event().wait()
