"""Every word TextPay texts, in English and Spanish.

Owns the templates, the functions that fill them, and the rule that every text they make goes in
at most two SMS segments (`textpay.segments` counts them as carriers bill them: 306 GSM-7
characters, or 134 UTF-16 units once a single character is outside GSM-7).

English templates use only the GSM-7 alphabet. Spanish templates are written correctly,
accents included, but one `á` makes a whole text UCS-2, and so can a subscriber's nickname
("Mamá") or curly quotes. `fit` decides what goes on the wire:

1. An accent is never paid for: a text is folded the way Twilio's Smart Encoding folds
   (`á` → `a`, curly quotes → straight; `textpay.segments.fold`) whenever that makes it fewer
   segments, and kept as written when it costs the same (a short Spanish text keeps its
   accents).
2. A text still over two segments is shortened: nicknames are dropped, the balance lists
   fewer accounts ("+2 more").
3. Only if that fails too (an operator's very long program name or support contact) is it
   cut at a word, with `...`. The test suite renders every template in both languages with
   the longest values to show that this last step is not needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from textpay.conversation import AccountFacts, Facts, Reply
from textpay.localtime import when
from textpay.money import format_cents
from textpay.runway import MOST_DAYS_SAID
from textpay.segments import GSM7_BASIC, PART_GSM7, fold, is_gsm7, segments

MAX_SEGMENTS = 2
# A text of plain GSM-7 characters (no extension-table ones) this long or shorter goes in
# `MAX_SEGMENTS` as written: `fit` takes it as it is without counting or folding it.
_PLAIN_GSM7_FITS = MAX_SEGMENTS * PART_GSM7

TEMPLATES: dict[str, dict[str, str]] = {
    "offer": {
        "en": "{program}: acct ...{label}{nick}: balance {balance} as of {as_of}{runway}. Reply "
        "YES to add {amount} (fee {fee}, total {total}) with card ...{card}, YES 40 for "
        "another amount, NO to skip. Offer ends {expires}. STOP to opt out.",
        "es": "{program}: cuenta ...{label}{nick}: saldo {balance} a las {as_of}{runway}. "
        "Responda SI para agregar {amount} (cargo {fee}, total {total}) con la tarjeta "
        "...{card}, SI 40 para otro monto, NO para omitir. Vence {expires}. ALTO para cancelar.",
    },
    # A top-up asked for by text (ADD 20, or YES with no live offer): the answer is an offer,
    # never a charge. Same fields as "offer"; no STOP line, since it answers the subscriber.
    "top_up": {
        "en": "{program}: add {amount} to acct ...{label}{nick} with card ...{card}? Fee {fee}, "
        "total {total}. Balance {balance} as of {as_of}. Reply YES to confirm, NO to skip. "
        "Nothing is charged until you do. Offer ends {expires}.",
        "es": "{program}: ¿agregar {amount} a la cuenta ...{label}{nick} con la tarjeta "
        "...{card}? Cargo {fee}, total {total}. Saldo {balance} a las {as_of}. Responda SI para "
        "confirmar, NO para omitir. No se cobra nada hasta entonces. Vence {expires}.",
    },
    "which_account_top_up": {
        "en": "{program}: which account? Nothing was charged. Reply ADD and the account number "
        "shown after the dots, e.g. ADD {example} or ADD {example} 40. Your accounts: {labels}.",
        "es": "{program}: ¿qué cuenta? No se cobró nada. Responda AGREGAR y el número que "
        "aparece después de los puntos, por ejemplo AGREGAR {example} o AGREGAR {example} 40. "
        "Sus cuentas: {labels}.",
    },
    "top_up_out_of_limits": {
        "en": "{program}: deposits must be {min} to {max}, so nothing was offered or charged. "
        "Reply ADD and an amount in that range, e.g. ADD {amount}.",
        "es": "{program}: los depósitos deben ser de {min} a {max}; no se ofreció ni se cobró "
        "nada. Responda AGREGAR y un monto en ese rango, por ejemplo AGREGAR {amount}.",
    },
    "receipt": {
        "en": "{program}: added {amount} to acct ...{label}{nick}. New balance {balance}. "
        "Card ...{card} charged {total}{fee_note}. Confirmation {confirmation}. "
        "Text BAL anytime.",
        "es": "{program}: se agregaron {amount} a la cuenta ...{label}{nick}. Nuevo saldo "
        "{balance}. Tarjeta ...{card}: {total}{fee_note}. Confirmación {confirmation}. "
        "Envíe SALDO cuando quiera.",
    },
    "fee_note": {"en": " (fee {fee})", "es": " (cargo {fee})"},
    "card_refund": {
        "en": "{program}: {amount} was refunded to card ...{card} from acct ...{label}{nick}. "
        "New balance {balance}. Refunds take 5-10 days to show on your card.",
        "es": "{program}: se devolvieron {amount} a la tarjeta ...{card} desde la cuenta "
        "...{label}{nick}. Nuevo saldo {balance}. La devolución tarda de 5 a 10 días en verse "
        "en su tarjeta.",
    },
    "autopay_receipt": {
        "en": "{program}: AutoPay added {amount} to acct ...{label}{nick}. New balance "
        "{balance}. Card ...{card} charged {total}{fee_note}. Confirmation {confirmation}. "
        "Reply AUTOPAY OFF to stop.",
        "es": "{program}: AutoPay agregó {amount} a la cuenta ...{label}{nick}. Nuevo saldo "
        "{balance}. Tarjeta ...{card}: {total}{fee_note}. Confirmación {confirmation}. "
        "Responda AUTOPAY OFF para desactivarlo.",
    },
    "autopay_declined": {
        "en": "{program}: AutoPay couldn't charge card ...{card} ({reason}) for acct "
        "...{label}. Nothing was charged. We'll try again {retry}. New card: {link}",
        "es": "{program}: AutoPay no pudo cobrar a la tarjeta ...{card} ({reason}) para la "
        "cuenta ...{label}. No se cobró nada. Reintentaremos {retry}. Otra tarjeta: {link}",
    },
    "autopay_disabled": {
        "en": "{program}: card ...{card} was declined again ({reason}), so AutoPay is now off "
        "for acct ...{label}. Nothing was charged. New card: {link}",
        "es": "{program}: la tarjeta ...{card} fue rechazada otra vez ({reason}); AutoPay quedó "
        "desactivado para la cuenta ...{label}. No se cobró nada. Otra tarjeta: {link}",
    },
    "autopay_off_dispute": {
        "en": "{program}: AutoPay is off for acct ...{label} because a charge to card ...{card} "
        "is disputed with your bank. Calls and replying YES to our offers still work. If the "
        "dispute was a mistake, reply AUTOPAY ON to turn AutoPay back on.",
        "es": "{program}: AutoPay se desactivó para la cuenta ...{label} porque un cargo a la "
        "tarjeta ...{card} está en disputa con su banco. Las llamadas y responder SI a nuestras "
        "ofertas siguen funcionando. Si la disputa fue un error, responda AUTOPAY ON para "
        "reactivar AutoPay.",
    },
    "processing": {
        "en": "{program}: we're processing your payment of {total} for acct ...{label}. We'll "
        "text your receipt when it's done. You won't be charged twice.",
        "es": "{program}: estamos procesando su pago de {total} para la cuenta ...{label}. Le "
        "enviaremos el recibo al terminar. No se le cobrará dos veces.",
    },
    "card_declined": {
        "en": "{program}: card ...{card} was declined ({reason}). Nothing was charged to acct "
        "...{label}. New card: {link} then reply YES.",
        "es": "{program}: la tarjeta ...{card} fue rechazada ({reason}). No se cobró nada a la "
        "cuenta ...{label}. Otra tarjeta: {link} y responda SI.",
    },
    # A YES whose card's bank wants the card holder to confirm the payment (3-D Secure, which
    # an off-session charge cannot do): not a decline of the card. The card link is the way to
    # confirm the card (or put another on file); then YES charges it.
    "card_needs_confirmation": {
        "en": "{program}: the bank for card ...{card} wants the card holder to confirm this "
        "payment. Nothing was charged to acct ...{label}. Confirm the card or use another: "
        "{link} then reply YES.",
        "es": "{program}: el banco de la tarjeta ...{card} pide que el titular confirme este "
        "pago. No se cobró nada a la cuenta ...{label}. Confirme la tarjeta o use otra: {link} "
        "y responda SI.",
    },
    # CARD: the link itself. It works once, for 30 minutes (`textpay.card_links`).
    "card_link": {
        "en": "{program}: update the card for acct ...{label} at {link} (link works once, "
        "for 30 min).",
        "es": "{program}: actualice la tarjeta de la cuenta ...{label} en {link} (el enlace "
        "sirve una vez, por 30 min).",
    },
    # A card on file about to expire (`textpay.card_expiry`); {keyword} is CARD, or CARD and
    # the label when the number has several accounts (CARD alone would ask which).
    "card_expiring": {
        "en": "{program}: card ...{card} on file for acct ...{label}{nick} expires {expiry}. "
        "Text {keyword} to update it.",
        "es": "{program}: la tarjeta ...{card} registrada para la cuenta ...{label}{nick} "
        "vence en {expiry}. Envíe {keyword} para actualizarla.",
    },
    # AutoPay did not charge a card past its expiry: the card link instead.
    "autopay_card_expired": {
        "en": "{program}: AutoPay couldn't add money to acct ...{label}: card ...{card} expired "
        "{expiry}, so nothing was charged. New card: {link} (works once, for 30 min).",
        "es": "{program}: AutoPay no pudo recargar la cuenta ...{label}: la tarjeta ...{card} "
        "venció en {expiry}; no se cobró nada. Otra tarjeta: {link} (sirve una vez, por 30 "
        "min).",
    },
    "card_updated": {
        "en": "{program}: card ...{card} is now on file for acct ...{label}{nick}. Text BAL "
        "anytime.",
        "es": "{program}: la tarjeta ...{card} quedó registrada para la cuenta "
        "...{label}{nick}. Envíe SALDO cuando quiera.",
    },
    "which_account_card": {
        "en": "{program}: which account? Reply CARD and the account number shown after the "
        "dots, e.g. CARD {example}. Your accounts: {labels}.",
        "es": "{program}: ¿qué cuenta? Responda TARJETA y el número que aparece después de los "
        "puntos, por ejemplo TARJETA {example}. Sus cuentas: {labels}.",
    },
    "charge_failed": {
        "en": "{program}: we couldn't reach the card processor, so nothing was charged to card "
        "...{card}. Reply YES in a few minutes to try again.",
        "es": "{program}: no pudimos contactar al procesador de pagos; no se cobró nada a la "
        "tarjeta ...{card}. Responda SI en unos minutos para intentar de nuevo.",
    },
    "already_processing": {
        "en": "{program}: your payment for acct ...{label} is already being processed. We'll "
        "text your receipt. You won't be charged twice.",
        "es": "{program}: su pago para la cuenta ...{label} ya se está procesando. Le "
        "enviaremos el recibo. No se le cobrará dos veces.",
    },
    "just_funded": {
        "en": "{program}: your payment for acct ...{label} already went through, so nothing more "
        "was charged. Text BAL for your balance, or ADD and an amount to add more (e.g. ADD 20).",
        "es": "{program}: su pago para la cuenta ...{label} ya se hizo; no se cobró nada más. "
        "Envíe SALDO para ver su saldo, o AGREGAR y un monto para agregar más (p. ej. AGREGAR "
        "20).",
    },
    "no_offer": {
        "en": "{program}: there's no top-up offer waiting, so nothing was charged. Text BAL for "
        "your balance or HELP for help.",
        "es": "{program}: no hay ninguna oferta pendiente; no se cobró nada. Envíe SALDO para "
        "ver su saldo o AYUDA para ayuda.",
    },
    "no_offer_to_decline": {
        "en": "{program}: there's no offer waiting, so there's nothing to skip. Text BAL for "
        "your balance.",
        "es": "{program}: no hay ninguna oferta pendiente que omitir. Envíe SALDO para ver su "
        "saldo.",
    },
    "declined": {
        "en": "{program}: OK, no top-up for {labels}. Nothing was charged. Text BAL anytime.",
        "es": "{program}: de acuerdo, no se agregará saldo a {labels}. No se cobró nada.",
    },
    "which_account": {
        "en": "{program}: you have offers for {labels}. Nothing was charged. Reply YES and the "
        "account number shown after the dots, e.g. YES {example}.",
        "es": "{program}: tiene ofertas para {labels}. No se cobró nada. Responda SI y el número "
        "de cuenta que aparece después de los puntos, por ejemplo SI {example}.",
    },
    "no_offer_for_account": {
        "en": "{program}: acct ...{label} has no top-up offer waiting, so nothing was charged. "
        "Text BAL for your balances.",
        "es": "{program}: la cuenta ...{label} no tiene ninguna oferta pendiente; no se cobró "
        "nada. Envíe SALDO para ver sus saldos.",
    },
    "not_payable": {
        "en": "{program}: acct ...{label} can't be paid by text, so nothing was charged or "
        "changed. For help, contact {support}.",
        "es": "{program}: la cuenta ...{label} no se puede pagar por mensaje; no se cobró ni se "
        "cambió nada. Para ayuda, contacte a {support}.",
    },
    "bad_amount": {
        "en": "{program}: we didn't understand that amount, so nothing was charged. Write "
        "amounts like 40, $40.50 or $1,000.00: YES 40 adds $40.00.",
        "es": "{program}: no entendimos el monto; no se cobró nada. Escriba los montos así: 40, "
        "$40.50 o $1,000.00. SI 40 agrega $40.00.",
    },
    "no_card": {
        "en": "{program}: acct ...{label} has no card on file, so nothing was charged. Add one "
        "at {link} (works once, for 30 min).",
        "es": "{program}: la cuenta ...{label} no tiene tarjeta registrada; no se cobró nada. "
        "Agregue una en {link} (sirve una vez, por 30 min).",
    },
    "out_of_limits": {
        "en": "{program}: deposits must be {min} to {max}, so nothing was charged. Reply YES "
        "for {amount}, or YES and an amount in that range.",
        "es": "{program}: los depósitos deben ser de {min} a {max}; no se cobró nada. Responda "
        "SI para {amount}, o SI y un monto en ese rango.",
    },
    "daily_limit": {
        "en": "{program}: that would pass acct ...{label}'s daily limit of {limit} ({left} "
        "left today), so nothing was charged.",
        "es": "{program}: eso superaría el límite diario de {limit} de la cuenta ...{label} "
        "(quedan {left} hoy); no se cobró nada.",
    },
    "balance": {
        "en": "{program}: {lines}. Text HELP for help.",
        "es": "{program}: {lines}. Envíe AYUDA para ayuda.",
    },
    "balance_line": {
        "en": "acct ...{label}{nick} {balance} as of {as_of}{runway}",
        "es": "cuenta ...{label}{nick} {balance} a las {as_of}{runway}",
    },
    # How long the balance lasts at the usual pace (`textpay.runway`), after the balance in
    # offers and BAL; by how many days: some, one, less than one, more than a year.
    "runway": {
        "en": ", about {days} days of calls left at your usual pace",
        "es": ", unos {days} días de llamadas a su ritmo habitual",
    },
    "runway_one": {
        "en": ", about 1 day of calls left at your usual pace",
        "es": ", cerca de 1 día de llamadas a su ritmo habitual",
    },
    "runway_less": {
        "en": ", less than a day of calls left at your usual pace",
        "es": ", menos de un día de llamadas a su ritmo habitual",
    },
    "runway_long": {
        "en": ", over a year of calls left at your usual pace",
        "es": ", más de un año de llamadas a su ritmo habitual",
    },
    "balance_more": {"en": "; +{count} more", "es": "; y {count} más"},
    "balance_offer": {
        "en": ", offer of {amount} waiting (reply YES)",
        "es": ", oferta de {amount} pendiente (responda SI)",
    },
    "help": {
        "en": "{program}: low-balance alerts and top-ups for prepaid calling accounts. Up to "
        "{cap} msgs/day. Msg&data rates may apply. Help: {support}. Reply STOP to opt out.",
        "es": "{program}: avisos de saldo bajo y recargas para cuentas de llamadas prepagadas. "
        "Hasta {cap} mensajes al día. Pueden aplicarse tarifas de mensajes y datos. Ayuda: "
        "{support}. Responda ALTO para cancelar.",
    },
    "unknown_number": {
        "en": "{program}: this number isn't enrolled. Help: {support}. Msg&data rates may "
        "apply. Reply STOP to opt out.",
        "es": "{program}: este número no está inscrito. Ayuda: {support}. Pueden aplicarse "
        "tarifas. Responda ALTO para cancelar.",
    },
    "not_understood": {
        "en": "{program}: sorry, we didn't understand. Reply YES to accept an offer, NO to skip "
        "it, ADD 20 to add $20, BAL for your balance, HELP for help, STOP to opt out.",
        "es": "{program}: no entendimos. Responda SI para aceptar una oferta, NO para omitirla, "
        "AGREGAR 20 para agregar $20, SALDO para su saldo, AYUDA para ayuda, ALTO para "
        "cancelar.",
    },
    "card_number_warning": {
        "en": "{program}: for your safety never text a card number. We deleted it and charged "
        "nothing. To change your card, text CARD for a secure link.",
        "es": "{program}: por su seguridad, nunca envíe el número de su tarjeta. Lo borramos y no "
        "cobramos nada. Para cambiar su tarjeta, envíe TARJETA y le mandaremos un enlace "
        "seguro.",
    },
    "opted_out": {
        "en": "{program}: you're unsubscribed and will get no more messages. Reply START to "
        "resubscribe.",
        "es": "{program}: se canceló su suscripción y no recibirá más mensajes. Responda "
        "COMENZAR para volver a suscribirse.",
    },
    "opted_in": {
        "en": "{program}: you're subscribed. Up to {cap} msgs/day. Msg&data rates may apply. "
        "Reply HELP for help, STOP to opt out.",
        "es": "{program}: está suscrito. Hasta {cap} mensajes al día. Pueden aplicarse tarifas. "
        "Responda AYUDA para ayuda, ALTO para cancelar.",
    },
    "still_opted_out": {
        "en": "{program}: you're unsubscribed. Reply START to get messages again.",
        "es": "{program}: su suscripción está cancelada. Responda COMENZAR para volver a "
        "recibir mensajes.",
    },
    "language_set": {
        "en": "{program}: we'll text you in English. Para español, responda ESPANOL.",
        "es": "{program}: le escribiremos en español. For English, reply ENGLISH.",
    },
    "which_account_autopay": {
        "en": "{program}: which account? Reply AUTOPAY ON and the account number shown after "
        "the dots, e.g. AUTOPAY ON {example}. Your accounts: {labels}.",
        "es": "{program}: ¿qué cuenta? Responda AUTOPAY ON y el número que aparece después de "
        "los puntos, por ejemplo AUTOPAY ON {example}. Sus cuentas: {labels}.",
    },
    "autopay_on": {
        "en": "{program}: AutoPay is on for acct ...{label}: when the balance falls below "
        "{threshold} we'll add {amount} with card ...{card}. Reply AUTOPAY OFF to stop.",
        "es": "{program}: AutoPay activado para la cuenta ...{label}: si el saldo baja de "
        "{threshold} agregaremos {amount} con la tarjeta ...{card}. Responda AUTOPAY OFF para "
        "desactivarlo.",
    },
    "autopay_off": {
        "en": "{program}: AutoPay is off for {labels}. We'll text you when the balance runs low "
        "instead.",
        "es": "{program}: AutoPay desactivado para {labels}. Le avisaremos por mensaje cuando "
        "el saldo esté bajo.",
    },
    # Passcodes (`textpay.passcodes`): a YES that needs one, and the answers to four digits.
    "passcode_asked": {
        "en": "{program}: reply with your 4-digit passcode to add {amount} to acct ...{label}. "
        "Nothing is charged until you do. The request lasts 10 min.",
        "es": "{program}: responda con su clave de 4 dígitos para agregar {amount} a la cuenta "
        "...{label}. No se cobra nada hasta entonces. La solicitud dura 10 min.",
    },
    "passcode_wrong": {
        "en": "{program}: wrong passcode for acct ...{label}, so nothing was charged. {tries}.",
        "es": "{program}: clave incorrecta para la cuenta ...{label}; no se cobró nada. {tries}.",
    },
    "passcode_locked_now": {
        "en": "{program}: 3 wrong passcodes, so passcode payments for acct ...{label} are locked "
        "for 24 hours. Nothing was charged. For help, contact {support}.",
        "es": "{program}: 3 claves incorrectas; los pagos con clave de la cuenta ...{label} "
        "quedan bloqueados por 24 horas. No se cobró nada. Para ayuda, contacte a {support}.",
    },
    "autopay_needs_passcode": {
        "en": "{program}: for your security, AutoPay of {amount} for acct ...{label} can't be "
        "turned on by text. Nothing was changed. To turn it on, contact {support}.",
        "es": "{program}: por seguridad, AutoPay de {amount} para la cuenta ...{label} no se "
        "puede activar por mensaje. No se cambió nada. Para activarlo, contacte a {support}.",
    },
    "passcode_locked": {
        "en": "{program}: passcode payments for acct ...{label} are locked until {until} after "
        "3 wrong passcodes, so nothing was charged. For help, contact {support}.",
        "es": "{program}: los pagos con clave de la cuenta ...{label} están bloqueados hasta "
        "{until} por 3 claves incorrectas; no se cobró nada. Para ayuda, contacte a {support}.",
    },
    "passcode_lapsed": {
        "en": "{program}: that passcode came after the 10-min limit, so nothing was charged to "
        "acct ...{label}. Reply YES to start again.",
        "es": "{program}: esa clave llegó después del límite de 10 min; no se cobró nada a la "
        "cuenta ...{label}. Responda SI para empezar de nuevo.",
    },
    "passcode_used": {
        "en": "{program}: that payment for acct ...{label} is already done, so nothing more was "
        "charged. Text BAL for your balance.",
        "es": "{program}: ese pago para la cuenta ...{label} ya se hizo; no se cobró nada más. "
        "Envíe SALDO para ver su saldo.",
    },
    "passcode_tries": {"en": "{count} tries left", "es": "Quedan {count} intentos"},
    "passcode_try": {"en": "1 try left", "es": "Queda 1 intento"},
    "autopay_already_off": {
        "en": "{program}: AutoPay isn't on for any of your accounts. Reply AUTOPAY ON to start.",
        "es": "{program}: AutoPay no está activado en sus cuentas. Responda AUTOPAY ON para "
        "activarlo.",
    },
}

# Decline reasons as the processor names them (Stripe's `decline_code`, else its `code`), in
# words. Any other reason (generic_decline, do_not_honor, and lost_card or stolen_card, which
# Stripe asks merchants not to reveal) reads as the bank's refusal.
_DECLINE_REASONS = {
    "en": {
        "insufficient_funds": "insufficient funds",
        "expired_card": "card expired",
        "card_declined": "refused by the bank",
        "authentication_required": "the bank wants the card holder to confirm",
    },
    "es": {
        "insufficient_funds": "fondos insuficientes",
        "expired_card": "tarjeta vencida",
        "card_declined": "el banco la rechazó",
        "authentication_required": "el banco pide que el titular confirme",
    },
}


@dataclass(frozen=True)
class Voice:
    """Who is speaking: the program name and support contact carriers require in HELP."""

    program: str = "TextPay"
    support: str = "textpay.example/help"
    messages_per_day: int = 3


def fit(*versions: str) -> str:
    """The first of `versions` (fullest first) that goes in at most two segments, each sent
    in its cheaper form; failing all, the last one cut at a word (see the module)."""
    for version in versions:
        if _fits_as_written(version):
            return version  # what the general case below would decide, without the counting
        text = cheaper(version)
        if segments(text) <= MAX_SEGMENTS:
            return text
    words = cheaper(versions[-1]).split(" ")
    while len(words) > 1 and segments(" ".join(words) + "...") > MAX_SEGMENTS:
        words.pop()
    return " ".join(words) + "..."


def cheaper(text: str) -> str:
    """`text` folded when folding saves a segment, else as written."""
    if is_gsm7(text):
        return text  # nothing to fold
    folded = fold(text)
    return folded if segments(folded) < segments(text) else text


def _fits_as_written(text: str) -> bool:
    """Whether `text` is plain GSM-7 (folding leaves it as it is) and short enough for
    `MAX_SEGMENTS` (one septet per character): the common case, checked in C."""
    return len(text) <= _PLAIN_GSM7_FITS and GSM7_BASIC.issuperset(text)


def _fits(text: str) -> bool:
    return segments(cheaper(text)) <= MAX_SEGMENTS


def _fill(key: str, language: str, voice: Voice, **fields: object) -> str:
    """A template filled in, as is (pieces of texts, and texts before `fit`)."""
    template = TEMPLATES[key].get(language) or TEMPLATES[key]["en"]
    return template.format(
        program=voice.program, support=voice.support, cap=voice.messages_per_day, **fields
    )


def fill(key: str, language: str, voice: Voice, **fields: object) -> str:
    """A whole text from its template, held to two segments: when it does not fit even
    folded, it goes without the nickname (if it has one)."""
    versions = [_fill(key, language, voice, **fields)]
    if fields.get("nick"):
        versions.append(_fill(key, language, voice, **{**fields, "nick": ""}))
    return fit(*versions)


def _account_fields(account: AccountFacts, now: datetime, language: str) -> dict[str, str]:
    """How an account and its balance are named in any message."""
    return {
        "label": account.label,
        "nick": nick(account),
        "balance": format_cents(account.balance_cents),
        "as_of": when(
            account.balance_as_of, now, account.timezone, language, name_zone=account.zone_named
        ),
    }


def nick(account: AccountFacts) -> str:
    return f" ({account.nickname})" if account.nickname else ""


def labels(accounts: Sequence[AccountFacts], language: str, *, nicknames: bool = True) -> str:
    word = "acct" if language == "en" else "cuenta"
    joiner = " and " if language == "en" else " y "
    names = [f"...{a.label}{nick(a) if nicknames else ''}" for a in accounts]
    if len(names) <= 1:
        return f"{word} {''.join(names)}"
    plural = "accts" if language == "en" else "cuentas"
    return f"{plural} {', '.join(names[:-1])}{joiner}{names[-1]}"


def decline_reason(reason: str | None, language: str) -> str:
    known = _DECLINE_REASONS.get(language, _DECLINE_REASONS["en"])
    return known.get(reason or "", known["card_declined"])


def runway(days: int | None, language: str) -> str:
    """The words after a balance saying how long it lasts at the usual pace ("" unknown)."""
    if days is None:
        return ""
    if days > MOST_DAYS_SAID:
        key = "runway_long"
    else:
        key = {0: "runway_less", 1: "runway_one"}.get(days, "runway")
    template = TEMPLATES[key].get(language) or TEMPLATES[key]["en"]
    return template.format(days=days)


def _shortened(fields: dict[str, object], render: Callable[[dict[str, object]], str]) -> list[str]:
    """A text's versions, fullest first: as is; without the runway (extra news, while the
    nickname says whose account it is); then without the nickname too."""
    versions = [render(fields)]
    if fields.get("runway"):
        fields = {**fields, "runway": ""}
        versions.append(render(fields))
    if fields.get("nick"):
        versions.append(render({**fields, "nick": ""}))
    return versions


def offer(
    account: AccountFacts,
    amount_cents: int,
    fee_cents: int,
    expires_at: datetime,
    *,
    now: datetime,
    voice: Voice,
    key: str = "offer",
) -> str:
    """An offer's words: the scan's ("offer") or a top-up asked for by text ("top_up")."""
    language = account.language
    fields: dict[str, object] = {
        **_account_fields(account, now, language),
        "runway": runway(account.runway_days, language),
        "amount": format_cents(amount_cents),
        "fee": format_cents(fee_cents),
        "total": format_cents(amount_cents + fee_cents),
        "card": account.card_last4 or "????",
        "expires": when(expires_at, now, account.timezone, language,
                        name_zone=account.zone_named),
    }  # fmt: skip
    return fit(*_shortened(fields, lambda f: _fill(key, language, voice, **f)))


class OfferWords:
    """`offer` for many accounts in one language, prepared once: the template and the voice
    looked up once, and the words of each amount and expiry worked out once (the scan words
    thousands of offers a batch). The same text as `offer`, to the byte: tests compare them."""

    def __init__(self, language: str, voice: Voice) -> None:
        self.language = language
        self._template = TEMPLATES["offer"].get(language) or TEMPLATES["offer"]["en"]
        self._voice = {
            "program": voice.program,
            "support": voice.support,
            "cap": voice.messages_per_day,
        }
        self._amounts: dict[tuple[int, int], tuple[str, str, str]] = {}
        self._expiries: dict[tuple[datetime, datetime, str, bool], str] = {}
        self._runways: dict[int | None, str] = {}

    def render(
        self,
        *,
        label: str,
        nickname: str,
        balance_cents: int,
        balance_as_of: datetime,
        card_last4: str | None,
        amount_cents: int,
        fee_cents: int,
        expires_at: datetime,
        now: datetime,
        zone: str,
        zone_named: bool,
        runway_days: int | None = None,
    ) -> str:
        """The offer's text; `label`, `zone`, `zone_named` and `runway_days` as in
        `AccountFacts`."""
        language = self.language
        amounts = self._amounts.get((amount_cents, fee_cents))
        if amounts is None:
            amounts = (format_cents(amount_cents), format_cents(fee_cents),
                       format_cents(amount_cents + fee_cents))  # fmt: skip
            self._amounts[amount_cents, fee_cents] = amounts
        expiry = (expires_at, now, zone, zone_named)
        expires = self._expiries.get(expiry)
        if expires is None:
            expires = when(expires_at, now, zone, language, name_zone=zone_named)
            self._expiries[expiry] = expires
        fields = {
            **self._voice,
            "label": label,
            "nick": f" ({nickname})" if nickname else "",
            "balance": format_cents(balance_cents),
            "as_of": when(balance_as_of, now, zone, language, name_zone=zone_named),
            "amount": amounts[0],
            "fee": amounts[1],
            "total": amounts[2],
            "card": card_last4 or "????",
            "expires": expires,
            "runway": self._runway(runway_days),
        }
        text = self._template.format(**fields)
        if _fits_as_written(text):
            return text
        return fit(*_shortened(fields, lambda f: self._template.format(**f)))

    def _runway(self, days: int | None) -> str:
        words = self._runways.get(days)
        if words is None:
            words = self._runways[days] = runway(days, self.language)
        return words


def receipt(
    account: AccountFacts,
    *,
    key: str = "receipt",
    amount_cents: int,
    fee_cents: int,
    new_balance_cents: int,
    card_last4: str,
    confirmation: str,
    voice: Voice,
) -> str:
    language = account.language
    fee_note = _fill("fee_note", language, voice, fee=format_cents(fee_cents)) if fee_cents else ""
    return fill(
        key,
        language,
        voice,
        amount=format_cents(amount_cents),
        label=account.label,
        nick=nick(account),
        balance=format_cents(new_balance_cents),
        card=card_last4,
        total=format_cents(amount_cents + fee_cents),
        fee_note=fee_note,
        confirmation=confirmation,
    )


def card_refund(
    account: AccountFacts,
    *,
    amount_cents: int,
    new_balance_cents: int,
    card_last4: str,
    voice: Voice,
) -> str:
    """Money an operator sent back to the subscriber's card, and the balance it left."""
    return fill(
        "card_refund",
        account.language,
        voice,
        amount=format_cents(amount_cents),
        card=card_last4,
        label=account.label,
        nick=nick(account),
        balance=format_cents(new_balance_cents),
    )


def card_updated(account: AccountFacts, *, card_last4: str, language: str, voice: Voice) -> str:
    """The confirmation that a card the subscriber chose from a card link is now on file."""
    return fill("card_updated", language, voice, card=card_last4, label=account.label,
                nick=nick(account))  # fmt: skip


def card_expiry_date(exp_month: int, exp_year: int) -> str:
    """A card's expiry as it is printed on the card: `03/27`."""
    return f"{exp_month:02d}/{exp_year % 100:02d}"


def card_expiring(
    account: AccountFacts,
    *,
    card_last4: str,
    exp_month: int,
    exp_year: int,
    several_accounts: bool,
    voice: Voice,
) -> str:
    """The warning that the card on file expires soon, with the word that gets a card link:
    CARD (TARJETA), followed by the account's label when the number has several accounts."""
    word = "CARD" if account.language == "en" else "TARJETA"
    return fill(
        "card_expiring",
        account.language,
        voice,
        card=card_last4,
        label=account.label,
        nick=nick(account),
        expiry=card_expiry_date(exp_month, exp_year),
        keyword=f"{word} {account.label}" if several_accounts else word,
    )


def autopay_card_expired(
    account: AccountFacts,
    *,
    card_last4: str,
    exp_month: int,
    exp_year: int,
    link: str,
    voice: Voice,
) -> str:
    """AutoPay skipped a charge because the card on file has expired; `link`: the card link."""
    return fill(
        "autopay_card_expired",
        account.language,
        voice,
        card=card_last4,
        label=account.label,
        expiry=card_expiry_date(exp_month, exp_year),
        link=link,
    )


# Replies that carry a card link (`textpay.card_links`): the engine makes one for their account.
LINK_REPLIES = frozenset({"card_link", "no_card"})


def render(
    reply: Reply,
    facts: Facts,
    *,
    language: str,
    now: datetime,
    voice: Voice,
    link: str | None = None,
) -> str:
    """Words for a decision's reply, from the facts it was decided on, in two segments at
    most: when the fullest words do not fit, the accounts are listed without nicknames.
    `link`: the card link, for the replies that carry one (`LINK_REPLIES`)."""
    account = facts.account(reply.account_id) if reply.account_id is not None else None
    listed = [facts.account(i) for i in reply.account_ids]
    fields: dict[str, object] = {"link": link or ""}
    if account is not None:
        fields.update(label=account.label, card=account.card_last4 or "????")
    if listed:
        fields.update(labels=labels(listed, language), example=listed[0].label)
    if reply.key == "balance":
        return fit(_balance(facts, language, now, voice))
    if account is not None and reply.key in ("out_of_limits", "top_up_out_of_limits"):
        fields.update(
            min=format_cents(account.min_deposit_cents),
            max=format_cents(account.max_deposit_cents),
            amount=format_cents(reply.amount_cents or account.preset_amount_cents),
        )
    elif account is not None and reply.key == "daily_limit":
        left = max(0, account.daily_limit_cents - account.deposited_last_24h_cents)
        fields.update(limit=format_cents(account.daily_limit_cents), left=format_cents(left))
    elif account is not None and reply.key in ("passcode_asked", "autopay_needs_passcode"):
        fields.update(amount=format_cents(reply.amount_cents or account.preset_amount_cents))
    elif reply.key == "passcode_wrong":
        key = "passcode_try" if reply.count == 1 else "passcode_tries"
        fields.update(tries=_fill(key, language, voice, count=reply.count))
    elif account is not None and reply.key == "passcode_locked":
        until = account.passcode_locked_until or now
        fields.update(until=when(until, now, account.timezone, language,
                                 name_zone=account.zone_named))  # fmt: skip
    elif account is not None and reply.key == "autopay_on":
        fields.update(
            threshold=format_cents(account.threshold_cents),
            amount=format_cents(reply.amount_cents or account.preset_amount_cents),
        )
    versions = [_fill(reply.key, language, voice, **fields)]
    if listed:
        short = labels(listed, language, nicknames=False)
        versions.append(_fill(reply.key, language, voice, **{**fields, "labels": short}))
    return fit(*versions)


def _balance(facts: Facts, language: str, now: datetime, voice: Voice) -> str:
    """The balance of every account, as many as fit in two segments; the rest are counted.
    With runways and nicknames when that costs no account a line; else nicknames without
    runways, runways without nicknames, or neither, whichever lists the most accounts."""
    best = (-1, "")
    for runways, nicknames in ((True, True), (False, True), (True, False), (False, False)):
        found = _balance_text(facts, language, now, voice, nicknames=nicknames, runways=runways)
        if found[0] > best[0]:
            best = found
    return best[1]


def _balance_text(
    facts: Facts, language: str, now: datetime, voice: Voice, *, nicknames: bool, runways: bool
) -> tuple[int, str]:
    """How many accounts get a line, and the text, lines added while the text still fits."""
    lines = [
        _balance_line(a, facts, language, now, voice, nicknames=nicknames, runways=runways)
        for a in facts.accounts
    ]

    def more(left: int) -> str:
        return _fill("balance_more", language, voice, count=left) if left else ""

    shown, text = 0, _fill("balance", language, voice, lines=more(len(lines)).lstrip("; "))
    for count in range(1, len(lines) + 1):
        joined = "; ".join(lines[:count]) + more(len(lines) - count)
        candidate = _fill("balance", language, voice, lines=joined)
        if not _fits(candidate):
            break
        shown, text = count, candidate
    return shown, text


def _balance_line(
    account: AccountFacts,
    facts: Facts,
    language: str,
    now: datetime,
    voice: Voice,
    *,
    nicknames: bool,
    runways: bool,
) -> str:
    fields = _account_fields(account, now, language)
    fields["runway"] = runway(account.runway_days, language) if runways else ""
    if not nicknames:
        fields["nick"] = ""
    line = _fill("balance_line", language, voice, **fields)
    live = [o for o in facts.offers if o.account_id == account.account_id and o.live]
    if live:
        line += _fill("balance_offer", language, voice, amount=format_cents(live[0].amount_cents))
    return line
