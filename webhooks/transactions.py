"""Running a view's work in one unit of work, the only place web requests open transactions."""

from __future__ import annotations

from collections.abc import Callable
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
