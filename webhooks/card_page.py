"""The card link's page: `GET /card/<token>` and, on the sandbox, `POST /card/<token>`.

A subscriber who texted CARD (or got a decline) opens the link on a phone: a small page, in the
account's language, that says which account it is for and which card is on file, and offers a
way to put another there. On the sandbox that is a form of the sandbox's test cards; posting it
(with the page's CSRF value) saves the choice (`textpay.card_links.redeem`: once, audited as the
subscriber's, confirmed by text) and shows a confirmation page. Stripe's way (a Checkout
Session in setup mode) is not built yet: on Stripe the page shows the card on file only.

Rules for every `/card/...` response (an app-wide `after_request`, so errors and 405s too): a
strict Content-Security-Policy (no script at all; styles from our own static file; forms post
only here; never framed), `Referrer-Policy: no-referrer` (the token is in the URL), `Cache-
Control: no-store`, `X-Content-Type-Options: nosniff`. A link that was used or has expired
answers 410, an unknown one 404, each with a page saying to text CARD for a new one; nothing a
visitor puts in the path or the form answers 5xx. No Twilio signature or admin token here: the
link's token is the credential. The token never reaches a log line: gunicorn's access log and
werkzeug's request line are scrubbed to `/card/[link]` (`textpay.logsafe`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from flask import Blueprint, Flask, Response, render_template, request

from textpay import card_links
from textpay.card_links import Opened, Refusal
from textpay.errors import GatewayUnavailable, ValidationFailed
from textpay.models import PaymentMethod
from textpay.payments import SANDBOX_CARDS, ChargeStatus
from textpay.payments.gateway import GatewayTimeout, UnknownCard
from textpay.timeutil import utcnow
from webhooks.services import request_engine_config, services
from webhooks.transactions import in_transaction

bp = Blueprint("card_page", __name__, url_prefix="/card")
log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

# The page's words. Short on purpose: it is read on a phone, by someone who just got a text.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Update your card",
        "account": "Account",
        "on_file": "Card on file",
        "no_card": "No card on file yet.",
        "expires": "expires",
        "choose": "Choose a test card (sandbox: no real card is charged)",
        "save": "Save this card",
        "stripe_later": "Changing the card here is not available yet. Text HELP for help.",
        "approves": "payments go through",
        "declines": "declined",
        "slow": "answers slowly",
        "error": "processor error",
        "done_title": "Card saved",
        "done": "Card ...{last4} is now on file for account ...{label}. We texted you a "
        "confirmation. You can close this page.",
        "gone_title": "This link no longer works",
        "gone": "Links work once, for 30 minutes. Text CARD to get a new one.",
        "bad_title": "Nothing was changed",
        "bad_form": "This form was out of date or incomplete. Open the link from your text again.",
        "unavailable": "The card processor did not answer. Nothing was changed; try again in a "
        "minute.",
    },
    "es": {
        "title": "Actualice su tarjeta",
        "account": "Cuenta",
        "on_file": "Tarjeta registrada",
        "no_card": "Todavía no hay tarjeta registrada.",
        "expires": "vence",
        "choose": "Elija una tarjeta de prueba (sandbox: no se cobra a ninguna tarjeta real)",
        "save": "Guardar esta tarjeta",
        "stripe_later": "Todavía no se puede cambiar la tarjeta aquí. Envíe AYUDA para ayuda.",
        "approves": "los pagos se aprueban",
        "declines": "rechazada",
        "slow": "responde despacio",
        "error": "error del procesador",
        "done_title": "Tarjeta guardada",
        "done": "La tarjeta ...{last4} quedó registrada para la cuenta ...{label}. Le enviamos "
        "una confirmación por mensaje. Puede cerrar esta página.",
        "gone_title": "Este enlace ya no funciona",
        "gone": "Los enlaces sirven una vez, por 30 minutos. Envíe TARJETA para recibir uno nuevo.",
        "bad_title": "No se cambió nada",
        "bad_form": "El formulario estaba vencido o incompleto. Abra otra vez el enlace de su "
        "mensaje.",
        "unavailable": "El procesador de tarjetas no respondió. No se cambió nada; intente de "
        "nuevo en un minuto.",
    },
}


def register(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def _secure(response: Response) -> Response:
        if request.path == "/card" or request.path.startswith("/card/"):
            response.headers.update(SECURITY_HEADERS)
        return response


@bp.route("/<path:token>", methods=["GET"])
def show(token: str) -> tuple[str, int]:
    opened = _open(token)
    if isinstance(opened, Refusal):
        return _refused(opened)
    return _page(opened), 200


@bp.route("/<path:token>", methods=["POST"])
def choose(token: str) -> tuple[str, int]:
    opened = _open(token)
    if isinstance(opened, Refusal):
        return _refused(opened)
    language = opened.link.language
    chosen = request.form.get("card", "")
    if (
        not card_links.csrf_matches(opened, request.form.get("csrf"))
        or not _sandbox()
        or chosen not in SANDBOX_CARDS
    ):
        return _message(language, "bad_title", "bad_form"), 400
    found = services()
    try:  # the gateway first, outside any transaction (as the admin API saves cards)
        saved = found.gateway.save_card(
            chosen, customer=None, account_ref=opened.account.account_number
        )
    except (GatewayTimeout, GatewayUnavailable):
        return _message(language, "bad_title", "unavailable"), 503
    except (UnknownCard, ValidationFailed):
        return _message(language, "bad_title", "bad_form"), 400
    if saved is None:
        return _message(language, "bad_title", "bad_form"), 400
    card = replace(saved, token=saved.token or chosen)
    config = request_engine_config()
    outcome = in_transaction(
        lambda session: card_links.redeem(session, token, card, now=utcnow(), config=config)
    )
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    log.info("card link: account %s has a new card on file", outcome.account.id)
    words = WORDS[_language(language)]
    text = words["done"].format(last4=outcome.card.last4, label=outcome.label)
    return render_template("card/message.html", lang=_language(language), title=words[
        "done_title"], lines=[text]), 200  # fmt: skip


def _open(token: str) -> Opened | Refusal:
    if not card_links.well_formed(token):  # 10 KB, NUL, a slash: no need to ask the database
        return Refusal.UNKNOWN
    return in_transaction(lambda session: card_links.open_link(session, token, now=utcnow()))


def _sandbox() -> bool:
    return services().settings.payments_backend == "sandbox"


def _language(language: str) -> str:
    return language if language in WORDS else "en"


def _page(opened: Opened) -> str:
    language = _language(opened.link.language)
    words = WORDS[language]
    return render_template(
        "card/card.html",
        lang=language,
        w=words,
        label=opened.label,
        nickname=opened.account.nickname,
        card=_card(opened.card),
        csrf=opened.link.csrf,
        choices=_choices(words) if _sandbox() else [],
    )


def _card(method: PaymentMethod | None) -> dict[str, str] | None:
    if method is None:
        return None
    expiry = ""
    if method.exp_month and method.exp_year:
        expiry = f"{method.exp_month:02d}/{method.exp_year}"
    return {"brand": method.brand.title(), "last4": method.last4, "expiry": expiry}


def _choices(words: dict[str, str]) -> list[dict[str, str]]:
    choices = []
    for token, card in SANDBOX_CARDS.items():
        if card.slow:
            note = words["slow"]
        elif card.status is ChargeStatus.SUCCEEDED:
            note = words["approves"]
        elif card.status is ChargeStatus.DECLINED:
            note = f"{words['declines']}: {card.decline_reason}"
        else:
            note = words["error"]
        choices.append({"token": token, "name": f"{card.brand.title()} ...{card.last4}",
                        "note": note})  # fmt: skip
    return choices


def _refused(refusal: Refusal) -> tuple[str, int]:
    """Unknown: 404; used or expired: 410. In both languages: an unknown link has no account
    whose language it could speak, and a used one need not say whose it was."""
    status = 404 if refusal is Refusal.UNKNOWN else 410
    lines = [WORDS["en"]["gone"], WORDS["es"]["gone"]]
    title = f"{WORDS['en']['gone_title']} / {WORDS['es']['gone_title']}"
    return render_template("card/message.html", lang="en", title=title, lines=lines), status


def _message(language: str, title: str, line: str) -> str:
    words = WORDS[_language(language)]
    return render_template(
        "card/message.html", lang=_language(language), title=words[title], lines=[words[line]]
    )
