"""The psycopg cursor of TextPay's PostgreSQL connections: a result's columns described on demand.

psycopg's `Cursor.description` makes a `Column` object for every column of the result each time
it is read, and SQLAlchemy reads it after every statement. For a statement it has run before,
SQLAlchemy only asks whether there is a description at all (it keeps the result's columns with
the compiled statement), so the objects were made for nothing: about 80 of them for an average
text, 64 for its facts query alone (0.05 ms of the worker's CPU). Here `description` answers
the question at once and makes the columns only when something reads them, from the same
result psycopg would have used.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg import Column
from psycopg.pq import ExecStatus

# The statuses psycopg describes even without fields ("SELECT ;"), as its own property does.
_TUPLES = frozenset({ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK})


class Description(Sequence[Column]):
    """The columns of one result, made the first time they are read. Read after the cursor
    moved on to another result, it refuses instead of describing the wrong one."""

    __slots__ = ("_columns", "_cursor", "_result")

    def __init__(self, cursor: Cursor, result: Any) -> None:
        self._cursor = cursor
        self._result = result
        self._columns: list[Column] | None = None

    def __len__(self) -> int:
        return int(self._result.nfields)

    @overload
    def __getitem__(self, index: int) -> Column: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Column]: ...
    def __getitem__(self, index: int | slice) -> Column | Sequence[Column]:
        return self._made()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._made())

    def __repr__(self) -> str:
        if self._columns is None and self._cursor.pgresult is not self._result:
            return "<description of a result its cursor has moved on from>"
        return repr(self._made())

    def _made(self) -> list[Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:
                raise RuntimeError("a result's description was read after its cursor moved on")
            self._columns = psycopg.Cursor.description.fget(self._cursor)  # type: ignore[attr-defined]
        return self._columns


class Cursor(psycopg.Cursor[Any]):
    """psycopg's cursor with `description` made on demand (`Description`)."""

    @property
    def description(self) -> Description | None:  # type: ignore[override]
        result = self.pgresult
        if result is None or not (result.nfields or result.status in _TUPLES):
            return None
        return Description(self, result)
