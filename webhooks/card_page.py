"""The card link's page: `GET /card/<token>` and, on the sandbox, `POST /card/<token>`.

A subscriber who texted CARD (or got a decline) opens the link on a phone: a small page, in the
account's language, that says which account it is for and which card is on file, and offers a
way to put another there. On the sandbox that is a form of the sandbox's test cards; posting it
(with the page's CSRF value) saves the choice (`textpay.card_links.redeem`: once, audited as the
subscriber's, confirmed by text) and shows a confirmation page.

On a gateway that hosts the card page (`hosted_card_setup`: Stripe) the card number is never
typed here: the page's one button posts the form (CSRF value included) and the answer is a 303
to Stripe's Checkout page in setup mode (`gateway.start_card_setup`, outside any transaction;
its session id is then stored on the link). Stripe sends the card holder back to
`GET /card/<token>/done` ("we will text you when the card is on file": the card is saved by
Stripe's signed `checkout.session.completed`, `webhooks.stripe_webhook`, never by this
redirect, which anyone could fake) or, on cancel, to the card page. The token is in those two
URLs, sent to Stripe (they are our own pages); it is in no metadata, key, row or log line: the
link is named at Stripe by its `reference` (the token's hash).

Rules for every `/card/...` response (an app-wide `after_request`, so errors and 405s too): a
strict Content-Security-Policy (no script at all; styles from our own static file; forms post
only here, and to Stripe's Checkout host on Stripe, since a browser applies `form-action` to the
redirect a form post answers too; never framed), `Referrer-Policy: no-referrer` (the token is in
the URL), `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`. A link that was used or
has expired answers 410, an unknown one 404, each with a page saying to text CARD for a new one;
nothing a visitor puts in the path or the form answers 5xx. No Twilio signature or admin token
here: the link's token is the credential. The token never reaches a log line: gunicorn's access
log and werkzeug's request line are scrubbed to `/card/[link]` (`textpay.logsafe`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from textpay import card_links
from textpay.card_links import Opened, Refusal
from textpay.errors import GatewayUnavailable, ValidationFailed
from textpay.models import PaymentMethod
from textpay.payments import SANDBOX_CARDS, ChargeStatus
from textpay.payments.gateway import GatewayKeyReuse, GatewayTimeout, UnknownCard
from textpay.timeutil import utcnow
from webhooks.services import request_engine_config, services
from webhooks.transactions import in_transaction

bp = Blueprint("card_page", __name__, url_prefix="/card")
log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Where Stripe's Checkout pages are (the session's `url`); a stand-in's are at its own origin.
STRIPE_CHECKOUT = "https://checkout.stripe.com"
STRIPE_API = "https://api.stripe.com"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP.format(form_action="'self'"),
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
        "hosted": "You will type the new card on Stripe's secure page; TextPay never sees "
        "the card number.",
        "continue": "Enter a new card",
        "pending_title": "Almost done",
        "pending": "Stripe is saving your card for account ...{label}. We will text you as "
        "soon as it is on file. You can close this page.",
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
        "hosted": "Escribirá la tarjeta nueva en la página segura de Stripe; TextPay nunca ve "
        "el número de la tarjeta.",
        "continue": "Ingresar una tarjeta nueva",
        "pending_title": "Casi listo",
        "pending": "Stripe está guardando su tarjeta para la cuenta ...{label}. Le enviaremos un "
        "mensaje en cuanto quede registrada. Puede cerrar esta página.",
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
            response.headers["Content-Security-Policy"] = CSP.format(form_action=_form_action())
        return response


def _form_action() -> str:
    """`'self'`, and on Stripe the host of its Checkout pages: the card page's form is answered
    by a redirect there, and Chrome applies `form-action` to a form's redirects."""
    settings = services().settings
    if settings.payments_backend != "stripe":
        return "'self'"
    sources = ["'self'", STRIPE_CHECKOUT]
    parts = urlsplit(settings.stripe_api_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme in ("http", "https") and parts.netloc and origin != STRIPE_API:
        sources.append(origin)  # a stand-in serves its Checkout pages at its own origin
    return " ".join(sources)


@bp.route("/<path:token>", methods=["GET"])
def show(token: str) -> tuple[str, int]:
    opened = _open(token)
    if isinstance(opened, Refusal):
        return _refused(opened)
    return _page(opened), 200


@bp.route("/<path:token>", methods=["POST"])
def choose(token: str) -> tuple[str, int] | WerkzeugResponse:
    opened = _open(token)
    if isinstance(opened, Refusal):
        return _refused(opened)
    language = opened.link.language
    if not card_links.csrf_matches(opened, request.form.get("csrf")):
        return _message(language, "bad_title", "bad_form"), 400
    if _hosted():
        return _to_hosted_page(token, opened)
    chosen = request.form.get("card", "")
    if chosen not in SANDBOX_CARDS:
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


@bp.route("/<token>/done", methods=["GET"])
def done(token: str) -> tuple[str, int]:
    """Where Stripe sends the card holder after its page. It changes nothing: the card is
    saved by Stripe's signed event, which may come before or after this visit."""
    if not card_links.well_formed(token):
        return _refused(Refusal.UNKNOWN)
    started = in_transaction(lambda session: card_links.checkout_started(session, token))
    if isinstance(started, Refusal):
        return _refused(started)
    language = _language(started.link.language)
    words = WORDS[language]
    if started.link.used_at is not None and started.card is not None:
        title = words["done_title"]
        text = words["done"].format(last4=started.card.last4, label=started.label)
    else:
        title, text = words["pending_title"], words["pending"].format(label=started.label)
    return render_template("card/message.html", lang=language, title=title, lines=[text]), 200


def _to_hosted_page(token: str, opened: Opened) -> tuple[str, int] | WerkzeugResponse:
    """Start the processor's card page for this link and send the card holder there (303)."""
    language = opened.link.language
    base = request_engine_config().link_base
    page = card_links.url(base, token)
    try:  # the processor first, outside any transaction
        setup = services().gateway.start_card_setup(
            customer=opened.card.customer if opened.card else None,
            account_ref=opened.account.account_number,
            success_url=page + "/done",
            cancel_url=page,
            reference=card_links.reference(opened.link),
            language=_language(language),
        )
    except (GatewayTimeout, GatewayUnavailable, GatewayKeyReuse, UnknownCard):
        # Each is logged by the gateway (without the token); none is the card holder's doing,
        # and trying again in a minute is all they can do.
        return _message(language, "bad_title", "unavailable"), 503
    outcome = in_transaction(
        lambda session: card_links.start_checkout(
            session, token, session_id=setup.session_id, now=utcnow()
        )
    )
    if isinstance(outcome, Refusal):
        return _refused(outcome)
    log.info("card link: account %s sent to the processor's card page", opened.account.id)
    return redirect(setup.url, code=303)


def _open(token: str) -> Opened | Refusal:
    if not card_links.well_formed(token):  # 10 KB, NUL, a slash: no need to ask the database
        return Refusal.UNKNOWN
    return in_transaction(lambda session: card_links.open_link(session, token, now=utcnow()))


def _hosted() -> bool:
    return services().gateway.hosted_card_setup


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
        hosted=_hosted(),
        choices=[] if _hosted() else _choices(words),
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
