"""SMS segments as carriers bill them: GSM-7 160 / 153, UCS-2 70 / 67, escapes count twice,
and a character never splits across two segments."""

from __future__ import annotations

import pytest

from textpay.segments import encoding, fold, segments


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("x" * 160, 1),
        ("x" * 161, 2),
        ("x" * 306, 2),  # two segments are 306 GSM-7 characters, not 320
        ("x" * 307, 3),
        ("x" * 320, 3),
        ("á" * 70, 1),
        ("á" * 71, 2),
        ("á" * 134, 2),  # two UCS-2 segments are 134 characters
        ("á" * 135, 3),
        ("x" * 133 + "á", 2),  # one accent turns the whole text into UCS-2
        ("x" * 134 + "á", 3),
    ],
)
def test_segment_counts(text: str, count: int) -> None:
    assert segments(text) == count


def test_extension_characters_take_two_septets_and_are_never_split() -> None:
    assert segments("€" * 80) == 1  # 160 septets
    assert segments("€" * 81) == 2
    assert segments("[]" * 40) == 1  # 80 characters, 160 septets
    assert segments("[]" * 40 + "x") == 2
    # 152 + 2 + 152 = 306 septets, but the euro cannot straddle segments 1 and 2.
    assert segments("x" * 152 + "€" + "x" * 152) == 3


def test_characters_outside_the_basic_plane_take_two_units_and_are_never_split() -> None:
    assert segments("😀" * 35) == 1  # 70 UTF-16 code units
    assert segments("😀" * 36) == 2
    assert segments("x" * 66 + "😀" + "x" * 66) == 3  # 134 units, but the emoji cannot straddle


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TextPay: acct ...4821", "GSM-7"),
        ("Ñoño, ¿qué tal? ¡Bien! @ £5 €5 {x} [y] ~ ^ | \\", "GSM-7"),
        ("Mamá", "UCS-2"),
        ("it’s", "UCS-2"),  # noqa: RUF001 (a curly apostrophe is the point)
        ("Envíe SALDO", "UCS-2"),
        ("👍", "UCS-2"),
    ],
)
def test_encoding(text: str, expected: str) -> None:
    assert encoding(text) == expected


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Mamá", "Mama"),
        ("Envíe SALDO, Confirmación, último", "Envie SALDO, Confirmacion, ultimo"),
        ("¿Qué tal? Ñoño, señor", "¿Qué tal? Ñoño, señor"),  # these are GSM-7 already
        ("“Mom’s” phone – cell…", '"Mom\'s" phone - cell...'),  # noqa: RUF001
        ("a\u00a0b\u200bc", "a bc"),
        ("Mamá 👵", "Mama 👵"),  # nothing looks like an emoji
    ],
)
def test_fold_replaces_what_smart_encoding_replaces(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_folding_an_accented_text_makes_it_cheaper() -> None:
    text = "Envíe SALDO cuando quiera. " * 5  # 135 characters
    assert segments(text) == 3
    assert segments(fold(text)) == 1
