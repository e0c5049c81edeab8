"""Running a view's work in one unit of work, the only place web requests open transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from textpay.db import is_unique_violation, unit_of_work
from webhooks.services import services

T = TypeVar("T")


def in_transaction(work: Callable[[Session], T]) -> T:
    """Run `work` in one unit of work. A lost unique-key race is retried once: the second try
    sees the winner's row and answers as a replay or a conflict."""
    engine = services().engine
    try:
        with unit_of_work(engine) as session:
            return work(session)
    except IntegrityError as error:
        if not is_unique_violation(error):
            raise
    with unit_of_work(engine) as session:
        return work(session)


def rolled_back(work: Callable[[Session], T]) -> T:
    """Run `work` in a transaction that is always rolled back: what a change would do, without
    making it (the console's settings preview)."""
    with Session(services().engine, expire_on_commit=False) as session:
        try:
            return work(session)
        finally:
            session.rollback()


def streamed(work: Callable[[Session], Iterator[str]]) -> Iterator[str]:
    """`work`'s output, read in one transaction held open while the response streams (a CSV
    export of any length never sits in memory whole). Wrap in `stream_with_context`."""
    with unit_of_work(services().engine) as session:
        yield from work(session)
