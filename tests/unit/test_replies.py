"""Every reply TextPay can send goes in at most two real SMS segments (306 GSM-7 characters, or
134 UTF-16 units once one character is outside GSM-7), in both languages, whatever the nickname
and however large the amounts; English stays within GSM-7."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from textpay import card_links, replies
from textpay.config import PUBLIC_URL_MAX
from textpay.conversation import AccountFacts, Facts, OfferFacts, Reply
from textpay.labels import unique_labels
from textpay.segments import encoding, is_gsm7, segments

NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)
# Worst cases: the longest nicknames an operator may store (40 characters), in several scripts;
# labels that had to grow to the whole account number; the largest amounts TextPay allows
# ($10,000.00 a deposit) and a balance far above them; times that name their zone.
NICKNAMES = {
    "ascii": "Josephine-Alexandra Montgomery-Whitfield",
    "accented": "Abuelita María José Núñez de la Ascensión",
    "curly": "Mom’s “work” phone, the one in the kitchen",  # noqa: RUF001
    "emoji": "Mamá 👵🏽 y la tía Rosa 🌹 (casa de Ángela)",
    "chinese": "王芳 (姐姐) 在北京的手机",
}
LABELS = unique_labels(["2125554821", "3125554821"])
assert sorted(LABELS.values()) == ["2125554821", "3125554821"]
BIG = 1_000_000  # $10,000.00
# The longest TEXTPAY_PUBLIC_URL allowed, and a real token's length (`secrets.token_urlsafe(32)`).
LONGEST_BASE = "https://" + "p" * (PUBLIC_URL_MAX - len("https://"))
LINK = card_links.url(LONGEST_BASE, "T" * card_links.TOKEN_LENGTH)
assert len(LONGEST_BASE) == PUBLIC_URL_MAX
VOICE = replies.Voice(program="TextPay", support="textpay.example/help", messages_per_day=3)
# Pieces of other replies, and replies built by their own functions from engine data.
FRAGMENTS = {"fee_note", "balance_line", "balance_offer", "balance_more", "runway", "runway_one",
             "runway_less", "runway_long", "passcode_tries", "passcode_try"}  # fmt: skip
BUILT_ELSEWHERE = {
    "offer",
    "top_up",
    "receipt",
    "autopay_receipt",
    "processing",
    "card_declined",
    "charge_failed",
    "autopay_declined",
    "autopay_disabled",
    "card_refund",
    "card_needs_confirmation",
    "card_updated",
    "card_expiring",
    "autopay_card_expired",
}


def accounts(language: str, nickname: str) -> tuple[AccountFacts, ...]:
    return tuple(
        AccountFacts(
            account_id=i,
            label=label,
            nickname=nickname,
            language=language,
            timezone="America/Chicago",
            balance_cents=99_999_999,
            balance_as_of=NOW - timedelta(hours=30),
            autopay_enabled=True,
            card_last4="4242",
            preset_amount_cents=BIG,
            threshold_cents=BIG,
            min_deposit_cents=BIG,
            max_deposit_cents=BIG,
            daily_limit_cents=10 * BIG,
            deposited_last_24h_cents=9 * BIG,
            zone_named=True,
            runway_days=0,  # the longest runway words: "less than a day of calls left..."
        )
        for i, label in enumerate(LABELS.values(), start=1)
    )


def every_reply(language: str, nickname: str = NICKNAMES["ascii"]) -> dict[str, str]:
    listed = accounts(language, nickname)
    offers = tuple(
        OfferFacts(i, i, "pending", BIG, BIG, NOW + timedelta(days=2), live=True) for i in (1, 2)
    )
    facts = Facts(accounts=listed, offers=offers)
    rendered = {
        key: replies.render(
            Reply(key, account_id=1, account_ids=(1, 2), amount_cents=BIG),
            facts,
            language=language,
            now=NOW,
            voice=VOICE,
            link=LINK,
        )
        for key in replies.TEMPLATES
        if key not in FRAGMENTS | BUILT_ELSEWHERE
    }
    for key in ("offer", "top_up"):
        rendered[key] = replies.offer(
            listed[0], BIG, BIG, NOW + timedelta(days=2), now=NOW, voice=VOICE, key=key
        )
    for key in ("receipt", "autopay_receipt"):
        rendered[key] = replies.receipt(
            listed[0],
            key=key,
            amount_cents=BIG,
            fee_cents=BIG,
            new_balance_cents=99_999_999 + BIG,
            card_last4="4242",
            confirmation="TP-7K2M9Q",
            voice=VOICE,
        )
    rendered["card_refund"] = replies.card_refund(
        listed[0],
        amount_cents=BIG,
        new_balance_cents=99_999_999,
        card_last4="4242",
        voice=VOICE,
    )
    for key in ("processing", "card_declined", "charge_failed", "autopay_declined",
                "autopay_disabled", "card_needs_confirmation"):  # fmt: skip
        rendered[key] = replies.fill(
            key,
            language,
            VOICE,
            total="$20,000.00",
            label=listed[0].label,
            card="4242",
            reason=longest_decline_reason(language),
            retry="Nov 29 2:05pm CT" if language == "en" else "29 nov 14:05 CT",
            link=LINK,
        )
    rendered["card_updated"] = replies.card_updated(
        listed[0], card_last4="4444", language=language, voice=VOICE
    )
    rendered["card_expiring"] = replies.card_expiring(
        listed[0], card_last4="4242", exp_month=12, exp_year=2030, several_accounts=True,
        voice=VOICE,
    )  # fmt: skip
    rendered["autopay_card_expired"] = replies.autopay_card_expired(
        listed[0], card_last4="4242", exp_month=12, exp_year=2030, link=LINK, voice=VOICE
    )
    return rendered


def longest_decline_reason(language: str) -> str:
    reasons = ["insufficient_funds", "expired_card", "card_declined", "authentication_required"]
    return max((replies.decline_reason(r, language) for r in reasons), key=len)


def test_a_card_whose_bank_wants_confirmation_is_not_called_declined() -> None:
    en, es = every_reply("en"), every_reply("es")
    assert "wants the card holder to confirm this payment" in en["card_needs_confirmation"]
    assert "Nothing was charged" in en["card_needs_confirmation"]
    assert "declined" not in en["card_needs_confirmation"]
    assert LINK in en["card_needs_confirmation"]
    assert "titular confirme" in es["card_needs_confirmation"]
    assert LINK in es["card_needs_confirmation"]
    assert replies.decline_reason("authentication_required", "en") == (
        "the bank wants the card holder to confirm"
    )
    # Stripe's other codes read as the bank's refusal (lost or stolen is not revealed).
    for code in ("generic_decline", "lost_card", "stolen_card", None):
        assert replies.decline_reason(code, "en") == "refused by the bank"


@pytest.mark.parametrize("nickname", list(NICKNAMES))
@pytest.mark.parametrize("language", ["en", "es"])
def test_every_reply_fits_in_two_real_segments(language: str, nickname: str) -> None:
    rendered = every_reply(language, NICKNAMES[nickname])
    assert set(rendered) == set(replies.TEMPLATES) - FRAGMENTS
    too_long = {k: (encoding(v), segments(v)) for k, v in rendered.items() if segments(v) > 2}
    assert too_long == {}
    # Nothing had to be cut short to get there: every text still ends as its template does.
    cut = [k for k, v in rendered.items() if v.endswith("...")]
    assert cut == []


def test_three_hundred_and_twenty_characters_would_have_been_three_segments() -> None:
    # The old rule (320 characters) let through texts that cost three messages.
    assert segments("x" * 320) == 3
    assert segments("á" * 140) == 3


def test_an_accented_nickname_is_folded_rather_than_sent_as_three_ucs2_segments() -> None:
    mom = replace(accounts("en", "Mamá")[0], label="4821")
    text = replies.offer(mom, 2500, 0, NOW + timedelta(days=1), now=NOW, voice=VOICE)
    assert "acct ...4821 (Mama)" in text
    assert encoding(text) == "GSM-7"
    assert segments(text) <= 2


def test_spanish_is_sent_without_the_accents_that_would_double_its_cost() -> None:
    text = every_reply("es")["no_offer"]
    assert "no se cobro nada. Envie SALDO" in text
    assert segments(text) == 1  # with "cobró" and "Envíe" it was two UCS-2 segments


def test_a_nickname_that_cannot_be_folded_is_dropped_rather_than_cutting_the_offer() -> None:
    text = every_reply("en", NICKNAMES["chinese"])["offer"]
    assert "王" not in text
    assert is_gsm7(text)
    for part in ("acct ...", "Reply YES", "NO to skip", "Offer ends", "STOP to opt out."):
        assert part in text


def test_a_nickname_that_fits_is_kept() -> None:
    assert "(Josephine-Alexandra Montgomery-Whitfield)" in every_reply("en")["offer"]
    assert (
        "(Abuelita Maria José Nuñez de la Ascension)"
        in every_reply("en", NICKNAMES["accented"])["receipt"]
    )


def test_short_texts_keep_their_accents() -> None:
    assert replies.fit("TextPay: ¿Sí?") == "TextPay: ¿Sí?"  # one segment either way


@pytest.mark.parametrize("language", ["en", "es"])
def test_balance_of_many_accounts_is_cut_to_fit(language: str) -> None:
    many = tuple(
        replace(accounts(language, NICKNAMES["accented"])[0], account_id=i, label=f"{1000 + i}")
        for i in range(1, 8)
    )
    offers = tuple(
        OfferFacts(i, i, "pending", BIG, 0, NOW + timedelta(days=1), live=True) for i in range(1, 8)
    )
    text = replies.render(
        Reply("balance"), Facts(accounts=many, offers=offers), language=language, now=NOW,
        voice=VOICE,
    )  # fmt: skip
    assert segments(text) <= 2
    assert "...1001" in text
    assert "...1007" not in text
    assert ("more" in text) if language == "en" else ("más" in text or "mas" in text)


def test_english_replies_use_only_gsm7() -> None:
    outside = {key: text for key, text in every_reply("en").items() if not is_gsm7(text)}
    assert outside == {}


def test_offer_names_everything_the_subscriber_needs() -> None:
    text = every_reply("en")["offer"]
    for part in ("acct ...2125554821", "balance $999,999.99 as of", "$10,000.00",
                 "fee $10,000.00", "total $20,000.00", "card ...4242", "YES", "NO",
                 "Offer ends", "CT", "STOP"):  # fmt: skip
        assert part in text


def test_spanish_offer_is_spanish() -> None:
    text = every_reply("es")["offer"]
    assert "saldo $999,999.99" in text
    assert "Responda SI" in text
    assert "ALTO" in text


def test_new_replies_say_nothing_was_charged_and_where_to_get_help() -> None:
    en, es = every_reply("en"), every_reply("es")
    assert "acct ...2125554821 can't be paid by text" in en["not_payable"]
    assert "textpay.example/help" in en["not_payable"]
    assert "textpay.example/help" in es["not_payable"]
    assert "acct ...2125554821 has no top-up offer waiting" in en["no_offer_for_account"]
    assert "Write amounts like 40, $40.50 or $1,000.00" in en["bad_amount"]
    assert "YES 2125554821" in en["which_account"]


def test_even_an_absurd_program_name_cannot_make_a_text_longer_than_two_segments() -> None:
    voice = replies.Voice(program="TextPay " * 60, support="textpay.example/help")
    text = replies.fill("help", "es", voice)
    assert segments(text) == 2
    assert text.endswith("...")


def test_texts_that_offer_a_new_card_carry_the_whole_link() -> None:
    """Decline texts, the bank's request to confirm, a YES with no card and CARD itself carry
    the card link in full, even under the longest public URL allowed; none points at the
    support placeholder any more."""
    for language in ("en", "es"):
        rendered = every_reply(language)
        for key in ("card_declined", "card_needs_confirmation", "autopay_declined",
                    "autopay_disabled", "no_card", "card_link",
                    "autopay_card_expired"):  # fmt: skip
            assert LINK in rendered[key], (language, key)
            assert "textpay.example/help" not in rendered[key], (language, key)
    assert every_reply("en")["card_updated"].startswith(
        "TextPay: card ...4444 is now on file for acct ...2125554821"
    )
    assert "CARD 2125554821" in every_reply("en")["which_account_card"]
    assert "TARJETA 2125554821" in every_reply("es")["which_account_card"]


def test_the_expiry_warning_names_the_card_the_account_the_date_and_the_word_to_send() -> None:
    one = accounts("en", "")[0]
    en = replies.card_expiring(one, card_last4="4242", exp_month=3, exp_year=2027,
                               several_accounts=False, voice=VOICE)  # fmt: skip
    assert en == (
        f"TextPay: card ...4242 on file for acct ...{one.label} expires 03/27. Text CARD to "
        "update it."
    )
    # With several accounts on the number, CARD alone would ask which: the label is added.
    several = every_reply("en")["card_expiring"]
    assert f"Text CARD {one.label} to update it." in several
    assert "expires 12/30" in several
    es = every_reply("es", "")["card_expiring"]
    assert f"vence en 12/30. Envie TARJETA {one.label} para actualizarla." in es


def test_a_top_up_asked_for_by_text_names_everything_and_asks_for_a_yes() -> None:
    en, es = every_reply("en"), every_reply("es")
    for part in ("add $10,000.00 to acct ...2125554821", "card ...4242", "Fee $10,000.00",
                 "total $20,000.00", "Balance $999,999.99", "Reply YES to confirm",
                 "Nothing is charged until you do", "Offer ends"):  # fmt: skip
        assert part in en["top_up"]
    for part in ("agregar $10,000.00 a la cuenta ...2125554821", "tarjeta ...4242",
                 "total $20,000.00", "Responda SI para confirmar", "No se cobra nada"):  # fmt: skip
        assert part in es["top_up"]
    assert "e.g. ADD 2125554821" in en["which_account_top_up"]
    assert "AGREGAR 2125554821" in es["which_account_top_up"]
    assert "nothing was offered or charged" in en["top_up_out_of_limits"]
    assert "ADD $10,000.00" in en["top_up_out_of_limits"]
    assert "no se ofrecio ni se cobro nada" in es["top_up_out_of_limits"]  # folded: 1 segment less
    # A text we did not understand says how to add money.
    assert "ADD 20 to add $20" in en["not_understood"]
    assert "AGREGAR 20 para agregar $20" in es["not_understood"]


@pytest.mark.parametrize(
    ("days", "english", "spanish"),
    [
        (3, "about 3 days of calls left at your usual pace", "unos 3 dias de llamadas"),
        (1, "about 1 day of calls left at your usual pace", "cerca de 1 dia de llamadas"),
        (0, "less than a day of calls left at your usual pace", "menos de un dia de llamadas"),
        (366, "over a year of calls left at your usual pace", "mas de un año de llamadas"),
    ],
)
def test_offers_and_bal_say_how_long_the_balance_lasts(
    days: int, english: str, spanish: str
) -> None:
    for language, words in (("en", english), ("es", spanish)):
        mom = replace(accounts(language, "Mom")[0], label="4821", balance_cents=310,
                      runway_days=days)  # fmt: skip
        offer = replies.offer(mom, 2500, 0, NOW + timedelta(days=1), now=NOW, voice=VOICE)
        balance = replies.render(Reply("balance"), Facts(accounts=(mom,)), language=language,
                                 now=NOW, voice=VOICE)  # fmt: skip
        for text in (offer, balance):
            assert words in replies.fold(text) if language == "es" else words in text
            assert segments(text) <= 2


def test_an_unknown_runway_is_not_mentioned() -> None:
    mom = replace(accounts("en", "Mom")[0], label="4821", runway_days=None)
    offer = replies.offer(mom, 2500, 0, NOW + timedelta(days=1), now=NOW, voice=VOICE)
    assert "calls left" not in offer
    assert "as of Nov 25 7:05am CT. Reply YES" in offer


def test_the_runway_goes_before_the_nickname_when_a_text_is_too_long() -> None:
    # The longest nickname, amounts and labels: the runway does not fit beside them.
    mom = replace(accounts("en", NICKNAMES["ascii"])[0], runway_days=3)
    text = replies.offer(mom, BIG, BIG, NOW + timedelta(days=2), now=NOW, voice=VOICE)
    assert "calls left" not in text
    assert NICKNAMES["ascii"] in text
    # With a short nickname it does.
    short = replace(mom, nickname="Mom")
    text = replies.offer(short, BIG, BIG, NOW + timedelta(days=2), now=NOW, voice=VOICE)
    assert "(Mom): balance $999,999.99 as of Nov 25 7:05am CT, about 3 days of calls" in text
