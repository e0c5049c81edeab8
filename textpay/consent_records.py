"""Reading the consent record (`consent_event`): the evidence an operator hands over when a TCPA
complaint arrives. Every opt-in and opt-out of a number, with its time, the words (or carrier
error) that caused it and where it came from; AutoPay's consent changes are in it too.

A range is whole UTC days, both ends included (`DayRange`); the page reads it newest first, a
page at a time, and the CSV export streams it oldest first. `textpay.consent` writes the record;
nothing here writes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from textpay.errors import FieldError, ValidationFailed
from textpay.models import ConsentEvent

CSV_COLUMNS = ("id", "time_utc", "phone", "kind", "words", "source", "account_id")
# The widest range a date may name: PostgreSQL and Python agree on these years.
_EARLIEST = date(2000, 1, 1)
_LATEST = date(9998, 12, 31)


@dataclass(frozen=True)
class DayRange:
    """Whole UTC days, `first` to `last` inclusive; None is open at that end."""

    first: date | None = None
    last: date | None = None

    @property
    def start(self) -> datetime | None:
        return datetime.combine(self.first, time(0), tzinfo=UTC) if self.first else None

    @property
    def end(self) -> datetime | None:
        """The moment after the range (midnight after `last`)."""
        if self.last is None:
            return None
        return datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=UTC)


def parse_range(first: str | None, last: str | None, *, names: tuple[str, str]) -> DayRange:
    """Two `YYYY-MM-DD` days (either may be absent or empty), or `ValidationFailed` naming each
    bad one (`names` are the fields' names as the caller knows them)."""
    errors: list[FieldError] = []
    days: list[date | None] = []
    for raw, name in zip((first, last), names, strict=True):
        day = None
        if raw:
            try:
                day = date.fromisoformat(raw) if len(raw) == 10 else None
            except ValueError:
                day = None
            if day is None or not _EARLIEST <= day <= _LATEST:
                errors.append(FieldError(name, "must be a date written YYYY-MM-DD"))
                day = None
        days.append(day)
    begin, finish = days
    if not errors and begin and finish and begin > finish:
        errors.append(FieldError(names[1], f"must not be before {names[0]}"))
    if errors:
        raise ValidationFailed(errors, detail="The date range is invalid.")
    return DayRange(begin, finish)


def _in_range(days: DayRange, phone: str | None) -> SelectOfScalar[ConsentEvent]:
    statement = select(ConsentEvent)
    if days.start is not None:
        statement = statement.where(col(ConsentEvent.created_at) >= days.start)
    if days.end is not None:
        statement = statement.where(col(ConsentEvent.created_at) < days.end)
    if phone is not None:
        statement = statement.where(ConsentEvent.phone == phone)
    return statement


def page(
    session: Session,
    days: DayRange,
    *,
    phone: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[ConsentEvent]:
    """Events newest first (by id: the order they were recorded); `before_id` pages back."""
    statement = _in_range(days, phone)
    if before_id is not None:
        statement = statement.where(col(ConsentEvent.id) < before_id)
    return list(session.exec(statement.order_by(col(ConsentEvent.id).desc()).limit(limit)))


def csv_lines(session: Session, days: DayRange) -> Iterator[str]:
    """The range as CSV, oldest first: a header line, then one line per event (phone in E.164,
    words exactly as recorded), read from the database a few hundred rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    statement = (
        _in_range(days, None).order_by(col(ConsentEvent.id)).execution_options(yield_per=500)
    )
    for event in session.exec(statement):
        writer.writerow(
            (
                event.id,
                event.created_at.astimezone(UTC).isoformat(),
                event.phone,
                event.kind,
                event.words,
                event.source,
                "" if event.account_id is None else event.account_id,
            )
        )
        yield flush()
