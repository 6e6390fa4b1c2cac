"""The Store's plumbing: its engine, one-transaction reads and writes, errors, and the helpers that
turn Python values into column values. The public methods live in the modules named for what
they hold (:mod:`.sessions`, :mod:`.commands`, :mod:`.trading`, :mod:`.runner_state`)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Self, TypeVar

import numpy as np
from sqlalchemy import Connection, CursorResult, Engine, insert, select
from sqlalchemy.exc import DBAPIError, StatementError

from workbench.config import SessionConfig
from workbench.domain import SessionState, utc_now
from workbench.paths import default_db_url
from workbench.store import schema as s
from workbench.store.db import WRITE, make_engine, retry
from workbench.store.jsonutil import dumps
from workbench.store.migrate import upgrade

T = TypeVar("T")


class StoreError(Exception):
    """A store operation could not be done as asked."""


class NotFoundError(StoreError, KeyError):
    """No such session, command or template."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


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
    """The store at ``url`` (migrated to the newest schema on open) and its transactions."""

    def __init__(self, url: str | None = None):
        self.url = url or default_db_url()
        self.engine: Engine = make_engine(self.url)
        self._writer = self.engine.execution_options(**WRITE)
        upgrade(self.engine)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with _bad_input(), self._writer.begin() as conn:
                return fn(conn)

        return retry(run)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with _bad_input(), self.engine.connect() as conn:
                return fn(conn)

        return retry(run)

    @staticmethod
    def _require(conn: Connection, session_id: str) -> None:
        if conn.execute(select(s.sessions.c.id).where(s.sessions.c.id == session_id)).first() is None:
            raise NotFoundError(f"no session {session_id!r}")

    @staticmethod
    def _event(conn: Connection, session_id: str | None, kind: str, message: str, data: Any, actor: str) -> int:
        row = {"session_id": session_id, "time": utc_now(), "kind": kind, "message": message,
               "data_json": None if data is None else dumps(data), "actor": actor}
        return new_id(conn.execute(insert(s.events).values(**row)))
