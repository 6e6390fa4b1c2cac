"""Engines for the store: SQLite tuned for several processes on one file, and retries when it is busy.

On SQLite every connection gets WAL journaling (readers never block the writer),
``synchronous=NORMAL`` (durable across process crashes; a power cut may lose the last
commits), a busy timeout and foreign keys. Transactions are begun explicitly: reads with
``BEGIN`` (one consistent snapshot), writes with ``BEGIN IMMEDIATE`` (the write lock is taken
up front, so two writers queue on the busy timeout instead of failing mid-transaction).
Other URLs (PostgreSQL, ...) get a plain engine.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from workbench.store.faults import fault_kind

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
RETRY_SECONDS = 60.0
WRITE = {"workbench_write": True}


def make_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; SQLite files get the pragmas above (and their directory created).
    ``busy_timeout_ms``: how long one SQLite statement waits for another connection's lock."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {url!r}; use e.g. 'sqlite:///path/to/workbench.db'") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", partial(_sqlite_connect, busy_timeout_ms=int(busy_timeout_ms)))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn: Any, _record: Any, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" hook below own transactions
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("workbench_write") else "BEGIN")


def is_busy(err: OperationalError) -> bool:
    """True for a transient lock conflict (SQLite's 'database is locked'): a storage fault of kind "locked"."""
    return fault_kind(err) == "locked"


def retry(fn: Callable[[], T], deadline_s: float = RETRY_SECONDS) -> T:
    """Call ``fn`` again (with jittered backoff) while it fails because the database is busy."""
    end = time.monotonic() + deadline_s
    delay = 0.01
    while True:
        try:
            return fn()
        except OperationalError as e:
            if not is_busy(e) or time.monotonic() + delay > end:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
