"""When a card stops being good, and which warning it is due: pure date arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from textpay.card_expiry import card_key, expiry_moment, warning_due
from textpay.models import CardExpiryNoticeKind


def test_a_card_is_good_through_the_last_day_of_its_month_in_the_given_zone() -> None:
    assert expiry_moment(3, 2027, "America/New_York") == datetime(2027, 4, 1, 4, tzinfo=UTC)
    assert expiry_moment(11, 2026, "America/Los_Angeles") == datetime(2026, 12, 1, 8, tzinfo=UTC)
    # December's end is in January of the next year.
    assert expiry_moment(12, 2026, "America/Chicago") == datetime(2027, 1, 1, 6, tzinfo=UTC)


def test_the_first_warning_from_30_days_the_second_from_7_days_none_once_expired() -> None:
    end = datetime(2027, 4, 1, 4, tzinfo=UTC)
    moment = timedelta(seconds=1)
    assert warning_due(end, end - timedelta(days=30) - moment) is None
    assert warning_due(end, end - timedelta(days=30)) is CardExpiryNoticeKind.FIRST_WARNING
    assert warning_due(end, end - timedelta(days=7) - moment) is CardExpiryNoticeKind.FIRST_WARNING
    assert warning_due(end, end - timedelta(days=7)) is CardExpiryNoticeKind.SECOND_WARNING
    assert warning_due(end, end - moment) is CardExpiryNoticeKind.SECOND_WARNING
    assert warning_due(end, end) is None


def test_a_new_card_or_a_new_expiry_is_a_new_key_and_no_key_holds_the_token() -> None:
    key = card_key("tok_visa", None, 3, 2027)
    assert key == card_key("tok_visa", None, 3, 2027)
    assert key != card_key("tok_visa", None, 4, 2027)
    assert key != card_key("tok_mastercard", None, 3, 2027)
    assert key != card_key("pm_1", "cus_1", 3, 2027)
    assert "tok_visa" not in key
    assert len(key) == 64
