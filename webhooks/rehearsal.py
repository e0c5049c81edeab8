"""The web process's rehearsal of a text before its workers are forked (`gunicorn.conf.py`).

`textpay.rehearsal` says why: the statements of a YES and a BAL are compiled once, in the
arbiter, and every worker forked from it starts with them. Here is the edge that runs it: in
one transaction that is always rolled back, then with the arbiter's connections closed, so that
no worker inherits one. gunicorn listens and waits for this before it forks, so the wait is
bounded: on PostgreSQL the transaction gives up on a lock after `LOCK_TIMEOUT` and on any
statement after `STATEMENT_TIMEOUT` (a migration or a `VACUUM FULL` holding a table); a
connection attempt waits as `DATABASE_URL`'s `connect_timeout` says (README: Deploying); on
SQLite the wait for the write lock is the usual busy timeout. A rehearsal that fails (the
database not there yet, its schema not made, a table locked) is logged and the web starts
anyway: its workers then compile on first use, as before.
"""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import func, select
from sqlmodel import Session

from textpay.db import on_postgresql
from textpay.rehearsal import rehearse_texts
from textpay.timeutil import utcnow
from webhooks.services import Services

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "5s"


def rehearse(app: Flask) -> bool:
    """Rehearse a YES and a BAL on `app`'s engine, changing nothing. True when it ran through.
    An app without TextPay's services has nothing to rehearse."""
    found = app.extensions.get("textpay")
    if not isinstance(found, Services):
        return False
    try:
        with Session(found.engine, expire_on_commit=False) as session:
            try:
                if on_postgresql(session):
                    session.execute(select(
                        func.set_config("lock_timeout", LOCK_TIMEOUT, True),
                        func.set_config("statement_timeout", STATEMENT_TIMEOUT, True),
                    ))  # fmt: skip
                rehearse_texts(session, found.engine_config, now=utcnow())
            finally:
                session.rollback()
    except Exception:
        log.warning("the rehearsal of a text failed; each worker compiles its statements on "
                    "its first texts instead", exc_info=True)  # fmt: skip
        return False
    finally:
        found.engine.dispose()
    return True
