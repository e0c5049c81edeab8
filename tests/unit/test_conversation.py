"""The decision table: from a phone's facts and a parsed text to effects and a reply. Pure."""

from __future__ import annotations

from dataclasses import replace
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
    TopUp,
    decide,
    parse,
)
from textpay.labels import label_among, unique_labels

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


def test_a_bare_four_digit_number_that_is_no_account_charges_nothing() -> None:
    # It might be an account number mistyped, or dollars: $1000 and 1000.00 are how to say
    # dollars. The reply says how to write an amount.
    rich = Facts(
        accounts=(account(max_deposit_cents=500_000, daily_limit_cents=1_000_000),),
        offers=(offer(),),
    )
    decision = decide(rich, parse("YES 1000"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "bad_amount"
    assert decide(rich, parse("YES $1000")).effects == (Fund(10, 1, 100_000),)
    assert decide(rich, parse("YES 1000.00")).effects == (Fund(10, 1, 100_000),)
    assert decide(rich, parse("YES $1,000.00")).effects == (Fund(10, 1, 100_000),)


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


# ---------------------------------------------------------------------------------------------
# The amount charged is the amount typed, on the account named, or nothing (issue 10)


@pytest.mark.parametrize(
    "text",
    ["YES .40", "YES 40¢", "YES 40 cents", "YES -5", "YES 1,5", "SI 7,5", "YES 0000",
     "YES 4\u0660", "YES 40,50", "YES 1,000", "YES $ 40", "YES €40", "YES 4\u00b2"],
)  # fmt: skip
def test_money_that_is_not_a_clean_amount_charges_nothing_and_says_how_to_write_it(
    text: str,
) -> None:
    decision = decide(ONE_OFFER, parse(text))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "bad_amount"


def test_amounts_are_read_as_typed_in_any_one_script() -> None:
    # Arabic-Indic ٤٠ is 40, never silently dropped (which charged the $25.00 offer instead).
    assert decide(ONE_OFFER, parse("YES \u0664\u0660")).effects == (Fund(10, 1, 4000),)
    assert decide(ONE_OFFER, parse("SI \u06f4\u06f0.\u06f5")).effects == (Fund(10, 1, 4050),)
    # One digit after the point is tenths of a dollar; a point at the end is a full stop.
    assert decide(ONE_OFFER, parse("YES $40.5")).effects == (Fund(10, 1, 4050),)
    assert decide(ONE_OFFER, parse("YES 40.")).effects == (Fund(10, 1, 4000),)


def test_zero_dollars_is_not_the_offer() -> None:
    decision = decide(ONE_OFFER, parse("YES $0"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "out_of_limits"


# One phone, two accounts: ...4821 has a live $25.00 offer, ...0050 has none. Deposits up to
# $5,000.00 are allowed, so a number mistaken for dollars would be charged.
MOM = account(1, "4821", max_deposit_cents=500_000, daily_limit_cents=1_000_000)
SIS = account(2, "0050", nickname="Sis", max_deposit_cents=500_000, daily_limit_cents=1_000_000)


def test_naming_an_account_without_an_offer_charges_no_other_account() -> None:
    facts = Facts(accounts=(MOM, SIS), offers=(offer(1),))
    decision = decide(facts, parse("YES 0050"))
    # A top-up offered for ...0050 at its preset: not Mom's offer, not $50, nothing charged.
    assert decision.effects == (TopUp(2),)
    assert decision.reply is None  # the offer is the reply
    # With digits of another script, the same.
    assert decide(facts, parse("YES \u0660\u0660\u0665\u0660")).effects == (TopUp(2),)
    # The account with the offer, named, is charged the offer; named with an amount, that.
    assert decide(facts, parse("YES 4821")).effects == (Fund(10, 1, 2500),)
    assert decide(facts, parse("YES 4821 $50")).effects == (Fund(10, 1, 5000),)
    assert decide(facts, parse("YES 50")).effects == (Fund(10, 1, 5000),)


def test_an_account_label_is_never_an_amount() -> None:
    facts = Facts(accounts=(MOM, SIS), offers=(offer(2),))  # now ...0050 has the offer
    decision = decide(facts, parse("YES 4821"))
    assert decision.effects == (TopUp(1),)  # an offer for ...4821, not $4,821.00 on ...0050
    assert decide(facts, parse("YES 0050")).effects == (Fund(20, 2, 2500),)


def test_naming_an_account_whose_offer_lapsed_offers_it_again() -> None:
    facts = Facts(accounts=(MOM, SIS), offers=(offer(1), offer(2, "expired", live=False)))
    assert decide(facts, parse("YES 0050")).effects == (OfferAgain(2),)


def test_no_naming_an_account_without_an_offer_declines_nothing() -> None:
    facts = Facts(accounts=(MOM, SIS), offers=(offer(1),))
    decision = decide(facts, parse("NO 0050"))
    assert decision.effects == ()
    assert decide(facts, parse("NO 4821")).effects == (DeclineOffer(10),)


def test_two_accounts_with_the_same_last_4_can_each_be_paid() -> None:
    names = unique_labels(["CA-1014821", "TX-2024821"])
    assert names == {"CA-1014821": "14821", "TX-2024821": "24821"}
    facts = Facts(
        accounts=(account(1, names["CA-1014821"]), account(2, names["TX-2024821"])),
        offers=(offer(1), offer(2)),
    )
    ambiguous = decide(facts, parse("YES"))
    assert ambiguous.reply is not None
    assert ambiguous.reply.key == "which_account"
    assert decide(facts, parse("YES 24821")).effects == (Fund(20, 2, 2500),)
    assert decide(facts, parse("YES 14821 $40")).effects == (Fund(10, 1, 4000),)
    # The old last 4 names neither: nothing is charged.
    assert decide(facts, parse("YES 4821")).effects == ()


def test_naming_two_accounts_charges_neither() -> None:
    facts = Facts(accounts=(MOM, SIS), offers=(offer(1), offer(2)))
    decision = decide(facts, parse("YES 4821 0050"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "which_account"


LABEL_CASES = [
    (["ACCT-4821"], ["4821"]),
    (["ACCT-4821", "ACCT-0050"], ["4821", "0050"]),
    (["1014821", "2024821"], ["14821", "24821"]),
    (["9994821", "1114821", "7777"], ["94821", "14821", "7777"]),
    (["4821", "14821"], ["4821", "14821"]),  # 4821 is all of its digits
    (["ACCT-4821", "BCCT-4821"], ["ACCT-4821", "BCCT-4821"]),  # same digits: whole numbers
    (["A12", "B-7"], ["12", "7"]),  # fewer than 4 digits: all of them
    (["ABC", "4821"], ["ABC", "4821"]),  # no digits at all: the whole number
]


def test_labels_grow_until_unique_on_the_phone() -> None:
    for numbers, labels in LABEL_CASES:
        found = unique_labels(numbers)
        assert [found[n] for n in numbers] == labels
        assert len(set(found.values())) == len(numbers)
        # The scan labels each account it offers on its own: the same labels.
        assert [label_among(n, numbers) for n in numbers] == labels


def test_an_account_that_cannot_be_paid_by_text_is_not_charged_or_enrolled() -> None:
    closed = account(payable_by_text=False)
    facts = Facts(accounts=(closed,), offers=(offer(),))
    for text in ("YES", "YES 40", "YES 4821", "AUTOPAY ON", "AUTOPAY ON 40"):
        decision = decide(facts, parse(text))
        assert decision.effects == (), text
        assert decision.reply is not None
        assert (decision.reply.key, decision.reply.account_id) == ("not_payable", 1)
    lapsed = Facts(accounts=(closed,), offers=(offer(status="expired", live=False),))
    assert decide(lapsed, parse("YES")).effects == ()  # no fresh offer for it either


def test_autopay_amounts_follow_the_same_rules() -> None:
    facts = Facts(accounts=(account(),))
    for text in ("AUTOPAY ON 1000", "AUTOPAY ON -40", "AUTOPAY ON 40¢"):
        decision = decide(facts, parse(text))
        assert decision.effects == (), text
        assert decision.reply is not None
        assert decision.reply.key == "bad_amount"
    assert decide(facts, parse("AUTOPAY ON 4821")).effects == (SetAutopay((1,), True, None),)
    assert decide(facts, parse("AUTOPAY ON $40")).effects == (SetAutopay((1,), True, 4000),)


# ---------------------------------------------------------------------------------------------
# Opt-out words anywhere in a short text (issue 10)


@pytest.mark.parametrize(
    "text",
    ["please stop", "Opt out", "opt-out", "cancelar por favor", "YES 40 stop",
     "yes $40 opt out", "SI alto", "no, cancel", "YES 4821 unsubscribe"],
)  # fmt: skip
def test_an_opt_out_word_in_a_short_text_opts_out_and_charges_nothing(text: str) -> None:
    decision = decide(ONE_OFFER, parse(text))
    assert decision.effects == (OptOut(),)
    assert decision.reply is not None
    assert decision.reply.key == "opted_out"


def test_opt_out_words_count_as_whole_words_of_a_short_text() -> None:
    assert decide(ONE_OFFER, parse("yes, but stop the texts")).effects == (OptOut(),)
    # Not inside other words ("weekend"), and not in passing in a long text.
    assert decide(ONE_OFFER, parse("yes, this weekend")).effects == (Fund(10, 1, 2500),)
    long_text = "Can you add money to the account at the end of the week please"
    assert OptOut() not in decide(ONE_OFFER, parse(long_text)).effects


# ---------------------------------------------------------------------------------------------
# A top-up on demand (issue 16): ADD / AGREGAR, or a YES with no live offer, is answered with an
# offer; only the next YES funds it. Only a YES to a live offer (`ONE_OFFER`) is a `Fund`.

ALONE = Facts(accounts=(account(),))
SPANISH = Facts(accounts=(account(language="es"),))
LAPSED = Facts(accounts=(account(),), offers=(offer(status="expired", live=False),))
WAITING = Facts(accounts=(account(),), offers=(offer(status="pending", live=False),))
IN_FLIGHT = Facts(accounts=(account(),), offers=(offer(status="accepted", live=False),))
FUNDED = Facts(accounts=(account(),), offers=(offer(status="funded", live=False),))
# Funded a moment ago: a plain YES now is the same YES sent twice.
JUST_FUNDED = Facts(
    accounts=(account(),), offers=(replace(offer(status="funded", live=False), just_funded=True),)
)
TWO = Facts(accounts=(MOM, SIS))
# An account whose number is short enough that its label is "20": `20` names it.
TWENTY = Facts(accounts=(account(1, "4821"), account(2, "20", nickname="Tio")))


@pytest.mark.parametrize(
    ("facts", "text", "effects", "reply"),
    [
        # The amount typed, else the preset (the engine fills it in), in both languages.
        (ALONE, "ADD", (TopUp(1),), None),
        (ALONE, "add 20", (TopUp(1, 2000),), None),
        (ALONE, "ADD $20", (TopUp(1, 2000),), None),
        (ALONE, "ADD $20.50 please", (TopUp(1, 2050),), None),
        (ALONE, "ADD 20 4821", (TopUp(1, 2000),), None),
        (ALONE, "ADD 4821", (TopUp(1),), None),  # a label, never $4,821.00
        (ALONE, "top up 40", (TopUp(1, 4000),), None),
        (SPANISH, "AGREGAR", (TopUp(1),), None),
        (SPANISH, "agregar 20", (TopUp(1, 2000),), None),
        (SPANISH, "Recarga $20 4821", (TopUp(1, 2000),), None),
        # YES (SI) with no offer at all asks for a top-up too.
        (ALONE, "YES", (TopUp(1),), None),
        (ALONE, "YES 20", (TopUp(1, 2000),), None),
        (SPANISH, "SI 20", (TopUp(1, 2000),), None),
        (FUNDED, "YES", (TopUp(1),), None),
        # Right after a payment a plain YES is told it went through; an amount or ADD asks.
        (JUST_FUNDED, "YES", (), "just_funded"),
        (JUST_FUNDED, "SI", (), "just_funded"),
        (JUST_FUNDED, "YES 4821", (), "just_funded"),
        (JUST_FUNDED, "YES 20", (TopUp(1, 2000),), None),
        (JUST_FUNDED, "ADD", (TopUp(1),), None),
        # Beside a closed account, the one payable account is the one meant; naming the closed
        # one says it cannot be paid by text.
        (Facts(accounts=(account(), account(2, "5566", payable_by_text=False))), "ADD 20",
         (TopUp(1, 2000),), None),
        (Facts(accounts=(account(), account(2, "5566", payable_by_text=False))), "ADD 20 5566",
         (), "not_payable"),
        # A lapsed or waiting offer: a plain YES makes it again as it was; an amount asks for
        # that amount instead.
        (LAPSED, "YES", (OfferAgain(1),), None),
        (WAITING, "YES", (OfferAgain(1),), None),
        (LAPSED, "YES 20", (TopUp(1, 2000),), None),
        (LAPSED, "SI 20", (TopUp(1, 2000),), None),
        (WAITING, "YES 40", (TopUp(1, 4000),), None),
        (LAPSED, "ADD", (TopUp(1),), None),
        (LAPSED, "YES forty", (), "bad_amount"),
        # A live offer: YES keeps funding it (an amount typed, that amount); ADD asks again.
        (ONE_OFFER, "YES 20", (Fund(10, 1, 2000),), None),
        (ONE_OFFER, "ADD", (TopUp(1),), None),
        (ONE_OFFER, "ADD 40", (TopUp(1, 4000),), None),
        # A payment in flight is not offered again.
        (IN_FLIGHT, "ADD 20", (), "already_processing"),
        (IN_FLIGHT, "YES 20", (), "already_processing"),
        (IN_FLIGHT, "YES", (), "already_processing"),
        # Limits are checked before anything is offered.
        (ALONE, "ADD 2", (), "top_up_out_of_limits"),
        (ALONE, "ADD 250", (), "top_up_out_of_limits"),
        (ALONE, "ADD $0", (), "top_up_out_of_limits"),
        (SPANISH, "AGREGAR 500", (), "top_up_out_of_limits"),
        (ALONE, "YES 250", (), "top_up_out_of_limits"),
        (ALONE, "ADD 1000", (), "bad_amount"),
        (ALONE, "ADD twenty", (), "bad_amount"),
        (ALONE, "ADD 20 30", (), "bad_amount"),
        (ALONE, "ADD -20", (), "bad_amount"),
        (Facts(accounts=(account(deposited_last_24h_cents=48_000),)), "ADD 25", (), "daily_limit"),
        (Facts(accounts=(account(deposited_last_24h_cents=48_000),)), "ADD 20", (TopUp(1, 2000),),
         None),
        # No card, a closed account, an opted-out or unknown number: no offer.
        (Facts(accounts=(account(card_last4=None),)), "ADD 20", (), "no_card"),
        (Facts(accounts=(account(payable_by_text=False),)), "ADD 20", (), "not_payable"),
        (Facts(accounts=(account(payable_by_text=False),)), "YES", (), "not_payable"),
        (Facts(accounts=(account(),), opted_out=True), "ADD 20", (), "still_opted_out"),
        (Facts(accounts=(account(),), opted_out=True), "AGREGAR", (), "still_opted_out"),
        (Facts(accounts=()), "ADD 20", (), "unknown_number"),
        (ALONE, "ADD 20 4242 4242 4242 4242", (), "card_number_warning"),
        (ALONE, "ADD 20 stop", (OptOut(),), "opted_out"),
        # Several accounts: the one named, or which one?
        (TWO, "ADD 20", (), "which_account_top_up"),
        (TWO, "YES", (), "which_account_top_up"),
        (TWO, "AGREGAR 20", (), "which_account_top_up"),
        (TWO, "ADD 20 0050", (TopUp(2, 2000),), None),
        (TWO, "ADD 0050", (TopUp(2),), None),  # ...0050's preset, never $50
        (TWO, "YES 0050 $30", (TopUp(2, 3000),), None),
        (TWO, "ADD 4821 0050", (), "which_account_top_up"),
        # A number that labels an account on the phone is never an amount.
        (TWENTY, "ADD 20", (TopUp(2),), None),
        (TWENTY, "ADD 20 $20", (TopUp(2, 2000),), None),
        (TWENTY, "ADD 4821 $20", (TopUp(1, 2000),), None),
    ],
)  # fmt: skip
def test_a_top_up_on_demand_is_an_offer_never_a_charge(
    facts: Facts, text: str, effects: tuple[object, ...], reply: str | None
) -> None:
    decision = decide(facts, parse(text))
    assert decision.effects == effects
    assert (decision.reply.key if decision.reply else None) == reply


def test_which_account_lists_every_account_on_the_phone() -> None:
    decision = decide(TWO, parse("ADD 20"))
    assert decision.reply is not None
    assert decision.reply.account_ids == (1, 2)


def test_add_with_an_open_offer_checks_the_amount_that_will_be_offered() -> None:
    # ADD alone gives the open offer again as it is ($25.00): the limits are those of $25.00.
    tight = Facts(
        accounts=(account(deposited_last_24h_cents=49_000, preset_amount_cents=500),),
        offers=(offer(),),
    )
    decision = decide(tight, parse("ADD"))
    assert decision.effects == ()
    assert decision.reply is not None
    assert decision.reply.key == "daily_limit"
