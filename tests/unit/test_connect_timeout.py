"""A PostgreSQL connection attempt gives up after `db.CONNECT_TIMEOUT_SECONDS` (a host that drops
packets would otherwise hold a webhook, or the web's start, for TCP's two minutes), unless the
operator's URL sets its own `connect_timeout`."""

from __future__ import annotations

from textpay import db


def test_psycopg_connections_give_up_connecting_in_seconds() -> None:
    found = db._psycopg_connect_args("postgresql+psycopg://textpay@db.internal/textpay")
    assert found["connect_timeout"] == db.CONNECT_TIMEOUT_SECONDS
    assert 2 <= db.CONNECT_TIMEOUT_SECONDS < 12  # libpq's least; a worker's timeout


def test_the_url_s_own_connect_timeout_wins() -> None:
    found = db._psycopg_connect_args(
        "postgresql+psycopg://textpay@db.internal/textpay?connect_timeout=3"
    )
    assert "connect_timeout" not in found  # psycopg reads it from the URL


def test_other_drivers_get_nothing_of_ours() -> None:
    assert db._psycopg_connect_args("postgresql+psycopg2://textpay@db.internal/textpay") == {}
