"""The one source of "now" and the column type that keeps every timestamp in UTC.

Everything TextPay stores is an aware UTC datetime; local time exists only where a message is
worded or a quiet-hours window is checked. Reading `now` through `utcnow()` is what lets tests
move the clock with freezegun.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# How far `textpay demo` has moved this process's clock (zero everywhere else).
_travelled = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _travelled


@contextmanager
def travel(to: datetime) -> Iterator[None]:
    """Run the block as if it were `to` now, the clock still ticking. For `textpay demo`, which
    plays its story inside every subscriber's sending hours whatever the hour it is run at
    (tests move the clock with freezegun instead)."""
    global _travelled  # noqa: PLW0603 (one process-wide clock is the point)
    before = _travelled
    _travelled = to - datetime.now(UTC)
    try:
        yield
    finally:
        _travelled = before


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones and hands back naive values; PostgreSQL's timestamptz hands back the
    session's zone. Both come out of this type as aware UTC, and naive values are refused on the
    way in so that a local time can never be stored by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
