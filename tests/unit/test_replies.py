"""Every reply TextPay can send fits in two SMS segments, and English stays within GSM-7."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import pytest

from textpay import replies
from textpay.conversation import AccountFacts, Facts, OfferFacts, Reply

# The GSM 03.38 basic character set (what one 160-character segment can carry).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    + string.ascii_uppercase
    + "ÄÖÑÜ§¿"
    + string.ascii_lowercase
    + "äöñüà"
)
NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)
# Realistic worst cases: long nickname, big amounts, two accounts.
ACCOUNTS = tuple(
    AccountFacts(
        account_id=i,
        label=label,
        nickname="Grandma Josephine",
        language="en",
        timezone="America/New_York",
        balance_cents=1_999_99,
        balance_as_of=NOW - timedelta(hours=30),
        autopay_enabled=True,
        card_last4="4242",
        preset_amount_cents=20_000,
        threshold_cents=1_000,
        min_deposit_cents=500,
        max_deposit_cents=20_000,
        daily_limit_cents=50_000,
        deposited_last_24h_cents=45_000,
    )
    for i, label in ((1, "4821"), (2, "7730"))
)
OFFERS = tuple(
    OfferFacts(i, i, "pending", 20_000, 295, NOW + timedelta(days=2), live=True) for i in (1, 2)
)
# Pieces of other replies, and replies built by their own functions from engine data.
FRAGMENTS = {"fee_note", "balance_line", "balance_offer", "balance_more"}
BUILT_ELSEWHERE = {
    "offer",
    "receipt",
    "autopay_receipt",
    "processing",
    "card_declined",
    "charge_failed",
    "autopay_declined",
    "autopay_disabled",
}
VOICE = replies.Voice(program="TextPay", support="1-800-555-0199", messages_per_day=3)


def every_reply(language: str) -> dict[str, str]:
    accounts = tuple(AccountFacts(**{**a.__dict__, "language": language}) for a in ACCOUNTS)
    facts = Facts(accounts=accounts, offers=OFFERS)
    rendered = {
        key: replies.render(
            Reply(key, account_id=1, account_ids=(1, 2), amount_cents=20_000),
            facts,
            language=language,
            now=NOW,
            voice=VOICE,
        )
        for key in replies.TEMPLATES
        if key not in FRAGMENTS | BUILT_ELSEWHERE
    }
    rendered["offer"] = replies.offer(
        accounts[0], 20_000, 295, NOW + timedelta(days=2), now=NOW, voice=VOICE
    )
    rendered["receipt"] = replies.receipt(
        accounts[0],
        amount_cents=20_000,
        fee_cents=295,
        new_balance_cents=21_999_99,
        card_last4="4242",
        confirmation="TP-7K2M9Q",
        voice=VOICE,
    )
    rendered["autopay_receipt"] = replies.receipt(
        accounts[0],
        key="autopay_receipt",
        amount_cents=20_000,
        fee_cents=295,
        new_balance_cents=21_999_99,
        card_last4="4242",
        confirmation="TP-7K2M9Q",
        voice=VOICE,
    )
    for key in ("processing", "card_declined", "charge_failed", "autopay_declined",
                "autopay_disabled"):  # fmt: skip
        rendered[key] = replies.fill(
            key,
            language,
            VOICE,
            total="$202.95",
            label="4821",
            card="4242",
            reason=replies.decline_reason("insufficient_funds", language),
            retry="Nov 29 2:05pm" if language == "en" else "29 nov 14:05",
        )
    return rendered


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_reply_fits_in_320_characters(language: str) -> None:
    rendered = every_reply(language)
    assert set(rendered) >= set(replies.TEMPLATES) - {
        "fee_note",
        "balance_line",
        "balance_offer",
        "balance_more",
    }
    too_long = {k: len(v) for k, v in rendered.items() if len(v) > replies.MAX_REPLY_CHARS}
    assert too_long == {}


@pytest.mark.parametrize("language", ["en", "es"])
def test_balance_of_many_accounts_is_cut_to_fit(language: str) -> None:
    many = tuple(
        AccountFacts(**{**ACCOUNTS[0].__dict__, "account_id": i, "label": f"{1000 + i}",
                        "language": language})
        for i in range(1, 8)
    )  # fmt: skip
    offers = tuple(
        OfferFacts(i, i, "pending", 20_000, 0, NOW + timedelta(days=1), live=True)
        for i in range(1, 8)
    )
    text = replies.render(
        Reply("balance"), Facts(accounts=many, offers=offers), language=language, now=NOW,
        voice=VOICE,
    )  # fmt: skip
    assert len(text) <= replies.MAX_REPLY_CHARS
    assert "...1001" in text
    assert "...1007" not in text
    assert ("more" in text) if language == "en" else ("más" in text)


def test_english_replies_use_only_gsm7() -> None:
    outside = {
        key: sorted(set(text) - GSM7) for key, text in every_reply("en").items()
        if set(text) - GSM7
    }  # fmt: skip
    assert outside == {}


def test_offer_names_everything_the_subscriber_needs() -> None:
    text = every_reply("en")["offer"]
    for part in ("acct ...4821", "balance $1,999.99 as of", "$200.00", "fee $2.95",
                 "total $202.95", "card ...4242", "YES", "NO", "Offer ends", "STOP"):  # fmt: skip
        assert part in text


def test_spanish_offer_is_spanish() -> None:
    text = every_reply("es")["offer"]
    assert "saldo $1,999.99" in text
    assert "Responda SI" in text
    assert "ALTO" in text
