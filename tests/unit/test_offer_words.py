"""The scan's prepared offer words (`replies.OfferWords`) are `replies.offer`'s, to the byte, and
`fit`'s shortcut for plain GSM-7 texts decides what counting and folding would."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from textpay import replies
from textpay.conversation import AccountFacts
from textpay.segments import segments

NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)
NICKNAMES = [
    "",
    "Mom",
    "Mamá",
    "Tío Ángel",
    "D’Angelo “Big”",  # noqa: RUF001
    "Abuela 👵🏽 Rosa",
    "Josephine-Alexandra Montgomery-Whitfield",
    "Abuelita María José Núñez de la Ascensión",
    "王芳 (姐姐) 在北京的手机",
    "curly {braces} and [brackets] ~ |",
]
ZONES = [("America/New_York", False), ("America/Anchorage", True), ("Pacific/Honolulu", False)]
VOICES = [
    replies.Voice(),
    replies.Voice(program="Prisión Ñ {Pay}", support="help@example.com", messages_per_day=5),
    replies.Voice(program="P" * 60, support="s"),
]


def general(
    language: str, nickname: str, zone: tuple[str, bool], voice: replies.Voice, *, label: str,
    balance: int, amount: int, fee: int, as_of: datetime, expires: datetime, now: datetime,
    runway_days: int | None = None,
) -> str:  # fmt: skip
    account = AccountFacts(
        account_id=1,
        label=label,
        nickname=nickname,
        language=language,
        timezone=zone[0],
        zone_named=zone[1],
        balance_cents=balance,
        balance_as_of=as_of,
        autopay_enabled=False,
        card_last4="4242",
        preset_amount_cents=amount,
        threshold_cents=500,
        min_deposit_cents=100,
        max_deposit_cents=100_000,
        daily_limit_cents=100_000,
        deposited_last_24h_cents=0,
        payable_by_text=True,
        runway_days=runway_days,
    )
    return replies.offer(account, amount, fee, expires, now=now, voice=voice)


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("voice", VOICES, ids=["default", "accented", "long"])
def test_prepared_offer_words_are_the_general_ones(language: str, voice: replies.Voice) -> None:
    words = replies.OfferWords(language, voice)
    cases = itertools.product(
        NICKNAMES,
        ZONES,
        ["4821", "2125554821"],  # labels: the last four, or a whole number on a shared phone
        [(310, 2500, 0), (99_999_999, 1_000_000, 10_000)],  # balance, amount, fee
        [timedelta(0), timedelta(hours=20), timedelta(days=3)],  # when the offer ends
        [timedelta(0), timedelta(hours=30)],  # how old the balance is
        [None, 0, 1, 4, 365, 366],  # the runway: unknown, less than a day, ..., over a year
    )
    for nickname, zone, label, (balance, amount, fee), lasts, age, runway in cases:
        expires, as_of = NOW + lasts, NOW - age
        expected = general(language, nickname, zone, voice, label=label, balance=balance,
                           amount=amount, fee=fee, as_of=as_of, expires=expires,
                           now=NOW, runway_days=runway)  # fmt: skip
        rendered = words.render(label=label, nickname=nickname, balance_cents=balance,
                                balance_as_of=as_of, card_last4="4242", amount_cents=amount,
                                fee_cents=fee, expires_at=expires, now=NOW, zone=zone[0],
                                zone_named=zone[1], runway_days=runway)  # fmt: skip
        assert rendered == expected, (nickname, zone, label, balance, lasts, age, runway)
        assert segments(rendered) <= replies.MAX_SEGMENTS


def counted_fit(*versions: str) -> str:
    """`fit` as it was before its shortcut: every version folded and counted."""
    for version in versions:
        text = replies.cheaper(version)
        if segments(text) <= replies.MAX_SEGMENTS:
            return text
    words = replies.cheaper(versions[-1]).split(" ")
    while len(words) > 1 and segments(" ".join(words) + "...") > replies.MAX_SEGMENTS:
        words.pop()
    return " ".join(words) + "..."


@pytest.mark.parametrize("length", [0, 1, 159, 160, 161, 305, 306, 307, 400])
@pytest.mark.parametrize("filler", ["a", "é", "á", "€", "’", "👵", "\n"])  # noqa: RUF001
def test_fits_shortcut_decides_as_counting_would(length: int, filler: str) -> None:
    for text in (
        "x" * length,
        filler * length,
        ("word " * length)[:length],
        ("x" * (length - 1) + filler) if length else filler,
        (filler + "x" * (length - 1)) if length else filler,
    ):
        assert replies.fit(text) == counted_fit(text)
        assert replies.fit(text, "short") == counted_fit(text, "short")
