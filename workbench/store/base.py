"""The Store's plumbing: its engine, one-transaction reads and writes, errors, and the helpers that
turn Python values into column values. The public methods live in the modules named for what
they hold (:mod:`.sessions`, :mod:`.commands`, :mod:`.trading`, :mod:`.runner_state`).

Opening a SQLite file warns if it lost its WAL (:mod:`.files`) and runs ``PRAGMA quick_check``
(about 0.1 s per 100 MB; ``check=False`` skips it). Every read and write raises
:class:`~workbench.store.faults.StorageFault` for a storage reason (disk full, I/O error, locked past
the timeout and retries, read-only, corrupt), the driver's own error for anything else."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Self, TypeVar

import numpy as np
from sqlalchemy import Connection, CursorResult, Engine, delete, insert, select
from sqlalchemy.exc import DBAPIError, StatementError

from workbench.config import SessionConfig
from workbench.domain import SessionState, utc_now
from workbench.paths import default_db_url
from workbench.secrets import redact
from workbench.store import schema as s
from workbench.store.db import BUSY_TIMEOUT_MS, RETRY_SECONDS, WRITE, make_engine, retry
from workbench.store.errors import NotFoundError, StoreError
from workbench.store.faults import StorageFault, as_fault, database_name
from workbench.store.files import sqlite_path, warn_if_wal_missing
from workbench.store.jsonutil import dumps
from workbench.store.migrate import upgrade

T = TypeVar("T")
PROBE_BYTES = 8192  # a write probe's payload: more than a page, so the probe must allocate pages


def db_value(x: Any) -> Any:
    """A value the database driver takes: enums by value, numpy scalars as Python numbers."""
    if isinstance(x, Enum):
        return x.value
    return x.item() if isinstance(x, np.generic) else x


def db_values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: db_value(v) for k, v in row.items()}


def state_name(state: SessionState | str) -> str:
    """``state`` as stored; ValueError naming the known states otherwise."""
    try:
        return SessionState(db_value(state)).value
    except ValueError:
        raise ValueError(f"unknown session state {state!r}; use one of {[v.value for v in SessionState]}") from None


def new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the database did not report the new row's id")
    return int(key[0])


def finite(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def config_fields(config: SessionConfig) -> dict[str, Any]:
    """The session columns that follow from ``config``."""
    return {"kind": db_value(config.kind), "strategy": config.strategy, "symbols": dumps(config.symbols),
            "config_json": config.to_json(), "initial_balance": config.initial_balance}


@contextmanager
def _bad_input() -> Iterator[None]:
    """Re-raise a value SQLAlchemy could not bind (e.g. a string for a time) as its own TypeError/ValueError."""
    try:
        yield
    except StatementError as e:
        if isinstance(e, DBAPIError) or not isinstance(e.orig, (TypeError, ValueError)):
            raise
        raise e.orig from None


class StoreBase:
    """The store at ``url`` (migrated to the newest schema on open) and its transactions.

    ``check``: run ``PRAGMA quick_check`` when opening a SQLite file (a corrupt one raises
    :class:`StorageFault` with kind "corrupt"). ``busy_timeout_ms`` and ``retry_seconds``: how long
    one statement waits for another connection's lock, and how long a busy transaction is retried,
    before a :class:`StorageFault` with kind "locked"."""

    def __init__(self, url: str | None = None, *, check: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 retry_seconds: float = RETRY_SECONDS):
        self.url = url or default_db_url()
        self.engine: Engine = make_engine(self.url, busy_timeout_ms=busy_timeout_ms)
        self.busy_timeout_ms, self.retry_seconds = int(busy_timeout_ms), float(retry_seconds)
        self._writer = self.engine.execution_options(**WRITE)
        path = sqlite_path(self.engine.url)
        existed = path is not None and path.exists() and path.stat().st_size > 0
        if path is not None:
            warn_if_wal_missing(path)  # before any connection resets the -shm index
        try:
            with self._faults("open"):
                if check and existed:
                    self.quick_check()
                upgrade(self.engine, retry_seconds=self.retry_seconds)
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _faults(self, operation: str) -> Iterator[None]:
        """Re-raise a storage error of the driver as a :class:`StorageFault` naming this database."""
        try:
            yield
        except DBAPIError as e:
            fault = as_fault(e, self.engine.url, operation)
            if fault is None:
                raise
            raise fault from e

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with _bad_input(), self._writer.begin() as conn:
                return fn(conn)

        with self._faults("write"):
            return retry(run, self.retry_seconds)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with _bad_input(), self.engine.connect() as conn:
                return fn(conn)

        with self._faults("read"):
            return retry(run, self.retry_seconds)

    def quick_check(self) -> None:
        """SQLite's ``PRAGMA quick_check``; :class:`StorageFault` (kind "corrupt") listing what it found."""
        if self.engine.dialect.name != "sqlite":
            return

        def run() -> list[str]:
            with self.engine.connect() as conn:
                return [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check")]

        with self._faults("open"):
            rows = retry(run, self.retry_seconds)
        if rows != ["ok"]:
            raise StorageFault("corrupt", database_name(self.engine.url), "open", "; ".join(rows[:5]))

    def writable(self, timeout: float = 1.0) -> bool:
        """True if a small write commits now: a probe row (bigger than a page) inserted into the events
        and deleted again, in one transaction that waits at most ``timeout`` s for a lock. False on a
        :class:`StorageFault` (disk full, I/O error, locked, read-only, ...); nothing is left behind."""
        row = {"session_id": None, "time": utc_now(), "kind": "probe", "message": "x" * PROBE_BYTES,
               "data_json": None, "actor": "store"}
        try:
            with self._faults("write"), self._writer.connect() as conn:
                raw: Any = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
                if raw is not None:
                    raw.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                try:
                    with conn.begin():
                        probe = new_id(conn.execute(insert(s.events).values(**row)))
                        conn.execute(delete(s.events).where(s.events.c.id == probe))
                finally:
                    if raw is not None:
                        raw.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        except StorageFault:
            return False
        return True

    @staticmethod
    def _require(conn: Connection, session_id: str) -> None:
        if conn.execute(select(s.sessions.c.id).where(s.sessions.c.id == session_id)).first() is None:
            raise NotFoundError(f"no session {session_id!r}")

    @staticmethod
    def _event(conn: Connection, session_id: str | None, kind: str, message: str, data: Any, actor: str) -> int:
        # every event (state changes, errors with their tracebacks, commands) passes the one redaction rule
        row = {"session_id": session_id, "time": utc_now(), "kind": kind, "message": redact(message),
               "data_json": None if data is None else redact(dumps(data)), "actor": actor}
        return new_id(conn.execute(insert(s.events).values(**row)))
