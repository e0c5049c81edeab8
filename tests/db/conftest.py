"""Fixtures of the database tests."""

from __future__ import annotations

import time

import pytest

from textpay import db


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps of `BEGIN IMMEDIATE`'s retries (`db._begin_immediate`): what a writer spends
    polling SQLite's write lock, in seconds, one entry a try."""
    sleeps: list[float] = []

    class CountingTime:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(db, "time", CountingTime)
    return sleeps
