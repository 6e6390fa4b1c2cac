"""Engines for the store: SQLite tuned for several processes on one file, and retries when it is busy.

On SQLite every connection gets WAL journaling (readers never block the writer),
``synchronous=NORMAL`` (durable across process crashes; a power cut may lose the last
commits), a busy timeout and foreign keys. Transactions are begun explicitly: reads with
``BEGIN`` (one consistent snapshot), writes with ``BEGIN IMMEDIATE`` (the write lock is taken
up front, so two writers queue on the busy timeout instead of failing mid-transaction).
PostgreSQL (``postgresql://`` means the psycopg 3 driver) gets the same rules: a read is one
REPEATABLE READ snapshot; a write is a READ COMMITTED transaction that first takes one transaction-level
advisory lock (:data:`PG_WRITE_LOCK`), so writers queue one after another as on SQLite and every
read-then-write of the store (a claim, a migration, a command's status) sees the last committed write.
A URL that does not parse, names an unknown database or lacks its driver is a ValueError saying
what a store URL looks like (:data:`URL_HELP`), the one line every ``--db`` shows.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from workbench.store.faults import fault_kind

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
RETRY_SECONDS = 60.0
WRITE = {"workbench_write": True}
#: what a store URL looks like (every error about a bad ``--db`` ends with it)
URL_HELP = ("a store URL is sqlite:///path/to/workbench.db (a file) or "
            "postgresql://user:password@host:5432/workbench (a PostgreSQL database)")
#: the driver a bare ``postgresql://`` URL gets (psycopg 3, in the package's dependencies)
PG_DRIVER = "postgresql+psycopg"
#: the advisory lock key every PostgreSQL write transaction holds until it ends ("wb" in ASCII)
PG_WRITE_LOCK = 0x7762


def parse_url(url: str) -> URL:
    """``url`` parsed, a bare ``postgresql://`` given the psycopg 3 driver; ValueError with :data:`URL_HELP`."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 (a non-numeric port fails here, not at connect time)
    except (ArgumentError, ValueError) as e:
        raise ValueError(f"not a database URL: {url!r} ({e}); {URL_HELP}") from None
    return parsed.set(drivername=PG_DRIVER) if parsed.drivername in ("postgresql", "postgres") else parsed


def make_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; SQLite files get the pragmas above (and their directory created).
    ``busy_timeout_ms``: how long one SQLite statement waits for another connection's lock."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"the store runs on SQLite or PostgreSQL, not {backend!r}; {URL_HELP}")
    if backend == "postgresql":
        try:
            engine = create_engine(parsed, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as e:
            raise ValueError(f"no driver for {parsed.drivername} ({e}): `pip install 'psycopg[binary]'`; "
                             f"{URL_HELP}") from None
        event.listen(engine, "begin", _pg_begin)
        return engine
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


def _pg_begin(conn: Connection) -> None:
    # psycopg sends BEGIN with the connection's isolation level on the first statement: no extra round trip
    from psycopg import IsolationLevel  # imported by the engine already; optional for SQLite users

    raw: Any = conn.connection.driver_connection
    write = bool(conn.get_execution_options().get("workbench_write"))
    raw.isolation_level = IsolationLevel.READ_COMMITTED if write else IsolationLevel.REPEATABLE_READ
    if write:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


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
