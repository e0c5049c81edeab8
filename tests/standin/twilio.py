"""A local stand-in for Twilio's Messages API, over real HTTP on 127.0.0.1.

Unlike Prism (which checks requests against Twilio's spec but always answers the same), it
returns a unique SID per message, answers with chosen Twilio errors and delays per recipient,
and posts signed status callbacks (sent, then delivered) to the StatusCallback URL, the way
Twilio does. Run it in a thread from tests, or as a process: `python -m tests.standin.twilio`.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class Answer:
    """How to answer one request: an error (`status`, `code`), or success after `delay`."""

    status: int = 201
    code: int | None = None
    delay: float = 0.0


OK = Answer()


def error(status: int, code: int) -> Answer:
    return Answer(status=status, code=code)


def slow(seconds: float) -> Answer:
    return Answer(delay=seconds)


class TwilioStandIn:
    def __init__(
        self, auth_token: str, *, callbacks: bool = True, textpay_url: str | None = None
    ) -> None:
        self.auth_token = auth_token
        self.callbacks = callbacks
        self.textpay_url = textpay_url
        self.requests: list[dict[str, str]] = []
        self.callback_results: list[int] = []
        self._scripts: dict[str, list[Answer]] = defaultdict(list)
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

    def sent_to(self, to: str) -> list[dict[str, str]]:
        with self._lock:
            return [r for r in self.requests if r.get("To") == to]

    def start(self, port: int = 0) -> TwilioStandIn:
        self._server = make_server("127.0.0.1", port, self._app, threaded=True)
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
        if request.method != "POST" or not request.path.endswith("/Messages.json"):
            return _json({"code": 20404, "message": "Not Found", "status": 404}, 404)
        form = dict(request.form.items())
        account_sid = request.path.split("/")[3]
        with self._lock:
            self.requests.append(form)
            queue = self._scripts.get(form.get("To", ""), [])
            answer = queue.pop(0) if queue else OK
        if answer.delay:
            time.sleep(answer.delay)
        if answer.status >= 400:
            body = {"code": answer.code, "message": f"stand-in error {answer.code}",
                    "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
                    "status": answer.status}  # fmt: skip
            return _json(body, answer.status)
        sid = f"SM{next(self._sids):032x}"
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
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }
        callback = form.get("StatusCallback")
        if callback and self.callbacks:
            threading.Thread(target=self._report, args=(callback, sid, form), daemon=True).start()
        return _json(message, 201)

    def _control(self, request: Request) -> Response:
        """Test controls: what was sent, scripted answers, and a subscriber's text to TextPay."""
        if request.path == "/_outbound":
            with self._lock:
                return _json({"messages": list(self.requests)}, 200)
        if request.path == "/_script" and request.method == "POST":
            body = request.get_json()
            self.script(body["to"], *(Answer(**a) for a in body["answers"]))
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
            code, _ = self._post_signed(url, params, timeout=5)
            with self._lock:
                self.callback_results.append(code)


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


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
