"""A lock that workers on several machines share: PostgreSQL's advisory lock.

The budget check ("count the trials, then ask for one") must not interleave between
workers, or two of them can both take the study's last trial. On one machine a file lock
serializes them; workers on several machines share only the database, so the database
holds the lock. It is a session lock on its own connection, released when the block ends
or, if the worker dies, when its connection closes.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from typing import Any

_engines: dict[tuple[int, str], Any] = {}  # (process id, url) -> engine
# One lock per storage: a fixed key in PostgreSQL's 64-bit advisory lock space.
KEY = zlib.crc32(b"hyperlab:budget")


def _engine(url: str) -> Any:
    """This process's engine for `url`: one connection, checked before each use.

    Keyed by process id, because a forked worker must not share its parent's socket (two
    processes on one connection would be one session, holding one lock between them)."""
    import sqlalchemy

    key = (os.getpid(), url)
    if key not in _engines:
        _engines[key] = sqlalchemy.create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            # A connection pooled across a server restart is dead: test it before use.
            pool_pre_ping=True,
            # No transaction around the lock: a session lock does not need one, and an
            # "idle in transaction" session would be cut by idle_in_transaction timeouts.
            isolation_level="AUTOCOMMIT",
        )
    return _engines[key]


@contextlib.contextmanager
def advisory_lock(url: str) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock for the storage at `url` during the block."""
    import sqlalchemy

    with _engine(url).connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": KEY})
        try:
            yield
        finally:
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": KEY})
            except sqlalchemy.exc.DBAPIError:
                # The connection broke inside the block (its session, and the lock with it,
                # are gone), or the lock is in an unknown state: close the session so that
                # the server releases whatever it holds. The block's own error is the one
                # to report.
                conn.invalidate()
