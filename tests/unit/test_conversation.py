"""The decision table: from a phone's facts and a parsed text to effects and a reply. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from textpay.conversation import (
    AccountFacts,
    DeclineOffer,
    Facts,
    Fund,
    OfferAgain,
    OfferFacts,
    OptIn,
    OptOut,
    SetAutopay,
    SetLanguage,
    decide,
    parse,
)

NOW = datetime(2026, 11, 26, 19, 5, tzinfo=UTC)


def account(account_id: int = 1, label: str = "4821", **changes: object) -> AccountFacts:
    values: dict[str, object] = {
        "account_id": account_id,
        "label": label,
        "nickname": "Mom",
        "language": "en",
        "timezone": "America/New_York",
        "balance_cents": 310,
        "balance_as_of": NOW,
        "autopay_enabled": False,
        "card_last4": "4242",
        "preset_amount_cents": 2500,
        "threshold_cents": 500,
        "min_deposit_cents": 500,
        "max_deposit_cents": 20_000,
        "daily_limit_cents": 50_000,
        "deposited_last_24h_cents": 0,
        **changes,
    }
    return AccountFacts(**values)  # type: ignore[arg-type]


def offer(account_id: int = 1, status: str = "pending", live: bool = True) -> OfferFacts:
    return OfferFacts(account_id * 10, account_id, status, 2500, 0, NOW + timedelta(days=1), live)


ONE_OFFER = Facts(accounts=(account(),), offers=(offer(),))


def test_yes_funds_the_live_offer_with_its_amount() -> None:
    decision = decide(ONE_OFFER, parse("YES"))
    assert decision.effects == (Fund(10, 1, 2500),)
    assert decision.reply is None  # the receipt is the reply


def test_yes_with_an_amount_funds_that_amount() -> None:
    assert decide(ONE_OFFER, parse("yes $40")).effects == (Fund(10, 1, 4000),)


@pytest.mark.parametrize(
    ("text", "reply"),
    [("YES 2", "out_of_limits"), ("YES 250", "out_of_limits"), ("yes forty", "bad_amount")],
)
def test_amounts_outside_limits_or_unreadable_charge_nothing(text: str, reply: str) -> None:
    decision = decide(ONE_OFFER, parse(text))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == reply


def test_the_daily_limit_counts_what_was_already_deposited() -> None:
    facts = Facts(accounts=(account(deposited_last_24h_cents=48_000),), offers=(offer(),))
    decision = decide(facts, parse("YES"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "daily_limit"


def test_no_card_means_no_charge() -> None:
    facts = Facts(accounts=(account(card_last4=None),), offers=(offer(),))
    assert decide(facts, parse("YES")).effects == ()


def test_opt_out_wins_over_a_pending_offer() -> None:
    decision = decide(ONE_OFFER, parse("stop"))
    assert decision.effects == (OptOut(),)
    assert decision.reply is not None
    assert decision.reply.key == "opted_out"


def test_yes_from_an_opted_out_number_is_an_opt_in_never_a_payment() -> None:
    facts = Facts(accounts=(account(),), offers=(offer(),), opted_out=True)
    assert decide(facts, parse("YES")).effects == (OptIn(),)
    assert decide(facts, parse("YES 40")).effects == (OptIn(),)
    assert decide(facts, parse("BAL")).effects == ()


def test_expired_or_failed_offers_are_offered_again() -> None:
    for status, live in (("expired", False), ("failed", False), ("pending", False)):
        facts = Facts(accounts=(account(),), offers=(offer(status=status, live=live),))
        assert decide(facts, parse("YES")).effects == (OfferAgain(1),)


def test_an_offer_in_flight_is_not_charged_again() -> None:
    facts = Facts(accounts=(account(),), offers=(offer(status="accepted", live=False),))
    decision = decide(facts, parse("YES"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "already_processing"


def test_several_live_offers_need_the_account_named() -> None:
    facts = Facts(accounts=(account(1, "4821"), account(2, "7730")), offers=(offer(1), offer(2)))
    ambiguous = decide(facts, parse("YES"))
    assert ambiguous.effects == ()
    assert ambiguous.reply is not None
    assert ambiguous.reply.key == "which_account"
    assert decide(facts, parse("YES 7730")).effects == (Fund(20, 2, 2500),)
    assert decide(facts, parse("YES 7730 $40")).effects == (Fund(20, 2, 4000),)
    # NO without a name declines every live offer: declining never costs anything.
    assert decide(facts, parse("NO")).effects == (DeclineOffer(10), DeclineOffer(20))


def test_a_bare_four_digit_number_that_is_no_account_is_dollars() -> None:
    decision = decide(ONE_OFFER, parse("YES 1000"))
    assert decision.reply is not None
    assert decision.reply.key == "out_of_limits"  # $1,000.00 is above the maximum


def test_unknown_numbers_learn_nothing() -> None:
    stranger = Facts(accounts=())
    for text in ("YES", "BAL", "NO", "AUTOPAY ON"):
        decision = decide(stranger, parse(text))
        assert decision.effects == ()
        assert decision.reply is not None
        assert decision.reply.key == "unknown_number"
    assert decide(stranger, parse("STOP")).effects == (OptOut(),)


def test_carrier_handled_keywords_are_recorded_without_a_reply() -> None:
    facts = Facts(accounts=(account(),), carrier_answers_keywords=True)
    stop = decide(facts, parse("STOP"))
    assert (stop.reply, stop.effects) == (None, (OptOut(),))
    assert decide(facts, parse("HELP")).reply is None
    assert decide(facts, parse("BAL")).reply is not None


def test_autopay_and_language() -> None:
    facts = Facts(accounts=(account(autopay_enabled=True),))
    assert decide(facts, parse("AUTOPAY ON 40")).effects == (SetAutopay((1,), True, 4000),)
    assert decide(facts, parse("AUTOPAY OFF")).effects == (SetAutopay((1,), False),)
    assert decide(facts, parse("ESPAÑOL")).effects == (SetLanguage("es"),)
    two = Facts(accounts=(account(1, "4821"), account(2, "7730")))
    assert decide(two, parse("AUTOPAY ON")).effects == ()
    assert decide(two, parse("AUTOPAY ON 7730")).effects == (SetAutopay((2,), True, None),)


def test_a_card_number_stops_any_payment() -> None:
    decision = decide(ONE_OFFER, parse("YES 4242 4242 4242 4242"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "card_number_warning"
    assert decide(ONE_OFFER, parse("STOP 4242 4242 4242 4242")).effects == (OptOut(),)
