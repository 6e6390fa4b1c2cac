"""The Store: sessions, their orders, fills, positions, trades, equity, events and commands.

The store is the shared truth between processes (runners, dashboards, ``workbench host``):
every method is one short transaction, and returns plain dicts or DataFrames. SQLite
(default: :func:`workbench.paths.default_db_url`) is tuned for several processes on one file
(see :mod:`workbench.store.db`); any other SQLAlchemy URL works unchanged.

Equity is stored in full, never downsampled: a year of minute points (525,600 rows) is one
bulk ``executemany`` of a few seconds, and readers can resample as they like.
"""
from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Connection, CursorResult, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, StatementError

from workbench.config import ConfigError, SessionConfig
from workbench.domain import Fill, Order, Position, SessionKind, SessionState
from workbench.paths import default_db_url
from workbench.store import schema as s
from workbench.store.db import WRITE, make_engine, retry
from workbench.store.frames import equity_frame, to_frame, trade_rows, utc
from workbench.store.jsonutil import dumps, loads
from workbench.store.migrate import upgrade

T = TypeVar("T")

COMMAND_STATUSES = ("applied", "rejected")
_SESSION_FIELDS = frozenset(c.name for c in s.sessions.c) - {"id", "state"}


class StoreError(Exception):
    """A store operation could not be done as asked."""


class NotFoundError(StoreError, KeyError):
    """No such session, command or template."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _value(x: Any) -> Any:
    """A value the database driver takes: enums by value, numpy scalars as Python numbers."""
    if isinstance(x, Enum):
        return x.value
    return x.item() if isinstance(x, np.generic) else x


def _values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _value(v) for k, v in row.items()}


def _state(state: SessionState | str) -> str:
    try:
        return SessionState(_value(state)).value
    except ValueError:
        raise ValueError(f"unknown session state {state!r}; use one of {[v.value for v in SessionState]}") from None


@contextmanager
def _bad_input() -> Iterator[None]:
    """Re-raise a value SQLAlchemy could not bind (e.g. a string for a time) as its own TypeError/ValueError."""
    try:
        yield
    except StatementError as e:
        if isinstance(e, DBAPIError) or not isinstance(e.orig, (TypeError, ValueError)):
            raise
        raise e.orig from None


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the database did not report the new row's id")
    return int(key[0])


def _finite(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


class Store:
    """Persistent store of trading sessions at ``url`` (migrated to the newest schema on open)."""

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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------
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
        row = {"session_id": session_id, "time": _now(), "kind": kind, "message": message,
               "data_json": None if data is None else dumps(data), "actor": actor}
        return _new_id(conn.execute(insert(s.events).values(**row)))

    # ---- sessions --------------------------------------------------------
    def create_session(self, config: SessionConfig, *, state: SessionState | str = "created",
                       name: str | None = None, parent_id: str | None = None) -> str:
        """Record a new session for ``config`` and return its id; with ``parent_id`` it is run
        ``parent.run_no + 1`` of the same lineage (a restart or clone)."""
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config: expected a SessionConfig, got {type(config).__name__}")
        sid = uuid.uuid4().hex[:12]
        row = {"id": sid, "name": config.name if name is None else name, "state": _state(state),
               "created_at": _now(), **self._config_fields(config)}

        def run(conn: Connection) -> str:
            row["run_no"] = 1
            if parent_id is not None:
                parent = conn.execute(select(s.sessions.c.run_no).where(s.sessions.c.id == parent_id)).first()
                if parent is None:
                    raise NotFoundError(f"no parent session {parent_id!r}")
                row.update(parent_id=parent_id, run_no=parent.run_no + 1)
            conn.execute(insert(s.sessions).values(**row))
            self._event(conn, sid, "state", f"session created ({row['state']})",
                        {"to": row["state"], "run_no": row["run_no"], "parent_id": parent_id}, "system")
            return sid

        return self._write(run)

    @staticmethod
    def _config_fields(config: SessionConfig) -> dict[str, Any]:
        return {"kind": _value(config.kind), "strategy": config.strategy, "symbols": dumps(config.symbols),
                "config_json": config.to_json(), "initial_balance": config.initial_balance}

    def get_session(self, session_id: str) -> dict[str, Any]:
        """Every column of the session, with ``symbols`` (list), ``metrics`` (dict) and ``config``
        (the SessionConfig; None plus ``config_error`` if it no longer validates) parsed."""
        row = self._read(lambda c: c.execute(select(s.sessions).where(s.sessions.c.id == session_id)).first())
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        out = dict(row._mapping)
        out["symbols"] = loads(out["symbols"])
        out["metrics"] = loads(out.pop("metrics_json")) or {}
        try:
            out["config"] = SessionConfig.from_json(out["config_json"])
        except ConfigError as e:
            out["config"], out["config_error"] = None, str(e)
        return out

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Set columns of a session. ``config`` (SessionConfig) also updates kind, strategy,
        symbols and balance; ``metrics`` (dict) and ``symbols`` (list) are stored as JSON.
        Use :meth:`set_state` for the state."""
        values: dict[str, Any] = {}
        for key, val in fields.items():
            if key == "config":
                if not isinstance(val, SessionConfig):
                    raise TypeError(f"config: expected a SessionConfig, got {type(val).__name__}")
                values.update(self._config_fields(val))
            elif key == "metrics":
                values["metrics_json"] = dumps(val)
            elif key == "symbols":
                values["symbols"] = dumps(list(val))
            elif key == "state":
                raise ValueError("change the state with set_state(), which also records the event")
            elif key in _SESSION_FIELDS:
                values[key] = _value(val)
            else:
                allowed = sorted(_SESSION_FIELDS | {"config", "metrics"})
                raise ValueError(f"unknown session field {key!r}; use one of {allowed}")
        if not values:
            return

        def run(conn: Connection) -> None:
            if conn.execute(update(s.sessions).where(s.sessions.c.id == session_id).values(**values)).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    def set_state(self, session_id: str, state: SessionState | str, *, actor: str = "system", message: str = "",
                  expect: SessionState | str | Iterable[SessionState | str] | None = None) -> bool:
        """Move a session to ``state`` and record a 'state' event (who, from, to, why).

        Sets ``started_at`` on the first move to starting/running and ``ended_at`` on a final
        state. With ``expect``, only moves from those states (an atomic compare-and-set, e.g. for
        a host claiming a 'requested' session) and returns False, changing nothing, otherwise.
        """
        new = _state(state)
        allowed = None
        if expect is not None:
            allowed = {_state(expect)} if isinstance(expect, (str, SessionState)) else {_state(e) for e in expect}

        def run(conn: Connection) -> bool:
            row = conn.execute(select(s.sessions.c.state, s.sessions.c.started_at)
                               .where(s.sessions.c.id == session_id)).first()
            if row is None:
                raise NotFoundError(f"no session {session_id!r}")
            if allowed is not None and row.state not in allowed:
                return False
            now = _now()
            values: dict[str, Any] = {"state": new}
            if new in ("starting", "running") and row.started_at is None:
                values["started_at"] = now
            if SessionState(new).is_final:
                values["ended_at"] = now
            done = conn.execute(update(s.sessions).values(**values)
                                .where(s.sessions.c.id == session_id, s.sessions.c.state == row.state)).rowcount
            if not done:  # changed under us (only possible without SQLite's write lock)
                return False
            self._event(conn, session_id, "state", message or f"{row.state} → {new}",
                        {"from": row.state, "to": new}, actor)
            return True

        return self._write(run)

    def heartbeat(self, session_id: str, runner: str) -> None:
        """Record that ``runner`` (host:pid) is alive and running the session now."""
        def run(conn: Connection) -> None:
            stmt = update(s.sessions).where(s.sessions.c.id == session_id).values(heartbeat_at=_now(), runner=runner)
            if conn.execute(stmt).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    def list_sessions(self, kind: SessionKind | str | None = None, strategy: str | None = None,
                      states: Iterable[SessionState | str] | None = None, since: Any = None,
                      until: Any = None) -> pd.DataFrame:
        """Sessions, newest first, filtered by kind, strategy, states and creation time
        (``since`` inclusive, ``until`` exclusive). Config and metrics JSON are left out."""
        cols = [c for c in s.sessions.c if c.name not in ("config_json", "metrics_json")]
        stmt = self._filtered(select(*cols), kind, strategy, states, since, until)
        frame = self._read(lambda c: to_frame(c, stmt))
        frame["symbols"] = [loads(x) for x in frame["symbols"]]
        return frame

    @staticmethod
    def _filtered(stmt: Any, kind: Any, strategy: str | None, states: Any, since: Any, until: Any) -> Any:
        c = s.sessions.c
        if kind is not None:
            try:
                stmt = stmt.where(c.kind == SessionKind(_value(kind)).value)
            except ValueError:
                raise ValueError(f"unknown kind {kind!r}; use one of {[k.value for k in SessionKind]}") from None
        if strategy is not None:
            stmt = stmt.where(c.strategy == strategy)
        if states is not None:
            stmt = stmt.where(c.state.in_([_state(x) for x in ([states] if isinstance(states, str) else states)]))
        if since is not None:
            stmt = stmt.where(c.created_at >= utc(since, "since"))
        if until is not None:
            stmt = stmt.where(c.created_at < utc(until, "until"))
        return stmt.order_by(c.created_at.desc(), c.id)

    def delete_session(self, session_id: str) -> None:
        """Delete a session with all its rows; its restarts/clones keep existing, unparented."""
        def run(conn: Connection) -> None:
            if conn.execute(delete(s.sessions).where(s.sessions.c.id == session_id)).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    # ---- events ----------------------------------------------------------
    def add_event(self, session_id: str | None, kind: str, message: str, data: Any = None,
                  actor: str = "system") -> int:
        """Record an event (``session_id`` None for store-wide ones); returns its id."""
        if not kind or not isinstance(kind, str):
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")

        def run(conn: Connection) -> int:
            if session_id is not None:
                self._require(conn, session_id)
            return self._event(conn, session_id, kind, message, data, actor)

        return self._write(run)

    def events(self, session_id: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Events in time order (all sessions if ``session_id`` is None); ``limit`` keeps the newest."""
        e = s.events.c
        stmt = select(e.id, e.session_id, e.time, e.kind, e.message, e.data_json, e.actor)
        if session_id is not None:
            stmt = stmt.where(e.session_id == session_id)
        stmt = stmt.order_by(e.time.desc(), e.id.desc())
        if limit is not None:
            stmt = stmt.limit(int(limit))
        frame = self._read(lambda c: to_frame(c, stmt))
        frame["data"] = [loads(x) for x in frame.pop("data_json")]
        return frame.iloc[::-1].reset_index(drop=True)

    # ---- orders, fills, positions -----------------------------------------
    @staticmethod
    def _upsert_order(conn: Connection, session_id: str, order: Order) -> None:
        if not isinstance(order, Order):
            raise TypeError(f"order: expected an Order, got {type(order).__name__}")
        now = _now()
        values = Store._order_values(order, now)
        o = s.orders.c
        done = conn.execute(update(s.orders).where(o.session_id == session_id, o.client_id == order.client_id)
                            .values(**values)).rowcount
        if not done:
            conn.execute(insert(s.orders).values(session_id=session_id, client_id=order.client_id,
                                                 created_at=order.created_at or now, **values))

    @staticmethod
    def _order_values(order: Order, now: datetime) -> dict[str, Any]:
        """An order's row values (all but session_id, client_id, created_at)."""
        return _values({"symbol": order.symbol, "side": order.side, "type": order.type, "quantity": order.quantity,
                        "limit_price": order.limit_price, "status": order.status,
                        "filled_quantity": order.filled_quantity, "reason": order.reason,
                        "exchange_id": order.exchange_id, "updated_at": now})

    @staticmethod
    def _upsert_orders(conn: Connection, session_id: str, orders: list[Order]) -> None:
        """:meth:`_upsert_order` for many: the new ones in one bulk insert, known ones updated one by one."""
        o, now = s.orders.c, _now()
        known: set[str] = set()
        ids = [x.client_id for x in orders]
        for k in range(0, len(ids), 500):
            known.update(conn.execute(select(o.client_id).where(o.session_id == session_id,
                                                                o.client_id.in_(ids[k:k + 500]))).scalars())
        new = {x.client_id: x for x in orders if x.client_id not in known}
        if new:
            conn.execute(insert(s.orders), [{"session_id": session_id, "client_id": x.client_id,
                                             "created_at": x.created_at or now, **Store._order_values(x, now)}
                                            for x in new.values()])
        for x in orders:
            if x.client_id in known:
                Store._upsert_order(conn, session_id, x)

    @staticmethod
    def _upsert_position(conn: Connection, session_id: str, pos: Position) -> None:
        if not isinstance(pos, Position):
            raise TypeError(f"position: expected a Position, got {type(pos).__name__}")
        values = _values({"quantity": pos.quantity, "avg_price": pos.avg_price, "opened_at": pos.opened_at,
                          "realized_pnl": pos.realized_pnl, "peak_price": pos.peak_price,
                          "extra_json": dumps(pos.extra) if pos.extra else None, "updated_at": _now()})
        p = s.positions.c
        done = conn.execute(update(s.positions).where(p.session_id == session_id, p.symbol == pos.symbol)
                            .values(**values)).rowcount
        if not done:
            conn.execute(insert(s.positions).values(session_id=session_id, symbol=pos.symbol, **values))

    def upsert_order(self, session_id: str, order: Order) -> None:
        """Insert the order, or update it if its ``client_id`` is already known for the session."""
        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            self._upsert_order(conn, session_id, order)

        self._write(run)

    def orders(self, session_id: str, status: str | Iterable[str] | None = None) -> pd.DataFrame:
        """The session's orders in creation order, optionally only those with ``status`` (one or several)."""
        o = s.orders.c
        stmt = select(*[c for c in s.orders.c if c.name != "id"]).where(o.session_id == session_id)
        if status is not None:
            stmt = stmt.where(o.status.in_([_value(status)] if isinstance(status, (str, Enum))
                                           else [_value(x) for x in status]))
        return self._read(lambda c: to_frame(c, stmt.order_by(o.id)))

    def add_fill(self, session_id: str, fill: Fill, *, order: Order | None = None,
                 position: Position | None = None) -> bool:
        """Record a fill once: returns False, writing nothing, if its ``fill_id`` is already stored.

        ``order`` and ``position``, if given, are upserted in the same transaction when the fill
        is new, so a crash never leaves a fill without its effect on them.
        """
        if not isinstance(fill, Fill):
            raise TypeError(f"fill: expected a Fill, got {type(fill).__name__}")
        if not fill.fill_id:
            raise ValueError("fill.fill_id is empty; give every fill a unique id so replays stay idempotent")
        row = _values({"session_id": session_id, "client_id": fill.client_id, "fill_id": fill.fill_id,
                       "symbol": fill.symbol, "side": fill.side, "quantity": fill.quantity, "price": fill.price,
                       "commission": fill.commission, "slippage": fill.slippage, "time": fill.time})
        f = s.fills.c

        def run(conn: Connection) -> bool:
            self._require(conn, session_id)
            if conn.execute(select(f.id).where(f.session_id == session_id, f.fill_id == fill.fill_id)).first():
                return False
            conn.execute(insert(s.fills).values(**row))
            if order is not None:
                self._upsert_order(conn, session_id, order)
            if position is not None:
                self._upsert_position(conn, session_id, position)
            return True

        return self._write(run)

    def fills(self, session_id: str, skip: int = 0) -> pd.DataFrame:
        """The session's fills in the order they were recorded; ``skip`` leaves out the first ones
        (a reader that has seen ``skip`` fills gets only the new ones)."""
        f = s.fills.c
        stmt = select(*[c for c in s.fills.c if c.name != "id"]).where(f.session_id == session_id).order_by(f.id)
        if skip:
            stmt = stmt.offset(int(skip))
        return self._read(lambda c: to_frame(c, stmt))

    def upsert_position(self, session_id: str, pos: Position) -> None:
        """Insert or replace the session's position in ``pos.symbol``."""
        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            self._upsert_position(conn, session_id, pos)

        self._write(run)

    def positions(self, session_id: str) -> pd.DataFrame:
        """The session's positions by symbol (closed ones too, with quantity 0); ``extra`` parsed."""
        p = s.positions.c
        stmt = select(*s.positions.c).where(p.session_id == session_id).order_by(p.symbol)
        frame = self._read(lambda c: to_frame(c, stmt))
        frame["extra"] = [loads(x) or {} for x in frame.pop("extra_json")]
        return frame

    # ---- equity and trades ------------------------------------------------
    def add_equity_points(self, session_id: str, frame_or_rows: Any) -> int:
        """Append equity points in one bulk insert; returns how many were written.

        Accepts a Series (time index → equity), a DataFrame with ``equity`` (and optional
        ``cash``, ``exposure``; times in the index or a ``time`` column), or rows as dicts or
        ``(time, equity[, cash[, exposure]])`` tuples. Naive times are UTC.
        """
        frame = equity_frame(frame_or_rows)

        def run(conn: Connection) -> int:
            self._require(conn, session_id)
            self._insert_equity(conn, session_id, frame)
            return len(frame)

        return self._write(run)

    @staticmethod
    def _insert_equity(conn: Connection, session_id: str, frame: pd.DataFrame) -> None:
        """Bulk insert. On SQLite the values are converted once, vectorized (times pre-formatted as
        stored), and go straight to the driver's ``executemany``: ~2× faster than row-by-row
        conversion. Other backends use SQLAlchemy's batched executemany."""
        if frame.empty:
            return
        cols: dict[str, Any] = {"session_id": itertools.repeat(session_id)}
        cols.update({c: frame[c].astype(object).where(frame[c].notna(), None).tolist()
                     for c in ("equity", "cash", "exposure")})
        if conn.dialect.name != "sqlite":
            cols["time"] = frame.index.to_pydatetime().tolist()
            conn.execute(insert(s.equity), [dict(zip(cols, r)) for r in zip(*cols.values())])
            return
        cols["time"] = s.UTCDateTime.sqlite_text(frame.index)
        compiled = insert(s.equity).compile(dialect=conn.dialect, column_keys=list(cols))
        conn.exec_driver_sql(compiled.string, list(zip(*(cols[n] for n in compiled.positiontup or ()))))

    def equity(self, session_id: str, since: Any = None, last: int | None = None) -> pd.DataFrame:
        """The session's equity curve: columns equity, cash, exposure indexed by UTC ``time``;
        ``since`` keeps points after that time (exclusive), ``last`` only the newest ``last`` points."""
        e = s.equity.c
        stmt = select(e.time, e.equity, e.cash, e.exposure).where(e.session_id == session_id)
        if since is not None:
            stmt = stmt.where(e.time > utc(since, "since"))
        if last is not None:
            inner = stmt.order_by(e.time.desc(), e.id.desc()).limit(int(last)).subquery()
            stmt = select(inner.c.time, inner.c.equity, inner.c.cash, inner.c.exposure)
            stmt = stmt.order_by(inner.c.time, inner.c.id) if "id" in inner.c else stmt.order_by(inner.c.time)
            return self._read(lambda c: to_frame(c, stmt)).set_index("time").astype(float)
        stmt = stmt.order_by(e.time, e.id)
        return self._read(lambda c: to_frame(c, stmt)).set_index("time").astype(float)

    def save_trades(self, session_id: str, trades: pd.DataFrame) -> None:
        """Replace the session's trade list with ``trades`` (columns as in the trades table; extras ignored)."""
        rows = trade_rows(session_id, trades)

        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            conn.execute(delete(s.trades).where(s.trades.c.session_id == session_id))
            if rows:
                conn.execute(insert(s.trades), rows)

        self._write(run)

    def trades(self, session_id: str) -> pd.DataFrame:
        """The session's round trips in the order saved."""
        t = s.trades.c
        stmt = select(*[c for c in s.trades.c if c.name != "id"]).where(t.session_id == session_id).order_by(t.id)
        return self._read(lambda c: to_frame(c, stmt))

    def save_backtest(self, config: SessionConfig, result: Any) -> str:
        """Save a finished backtest as a 'completed' backtest session, atomically; returns its id.

        ``result`` needs ``equity`` (Series or frame, stored in full), ``trades`` (DataFrame) and
        ``metrics`` (dict, stored as JSON). pnl/final_equity come from the equity curve;
        total_return and trade_count from the metrics when present, else computed.
        """
        missing = [a for a in ("equity", "trades", "metrics") if not hasattr(result, a)]
        if missing:
            raise TypeError(f"result has no {', '.join(missing)}; expected a backtest result")
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config: expected a SessionConfig, got {type(config).__name__}")
        config = config.model_copy(update={"kind": SessionKind.BACKTEST})
        metrics = dict(result.metrics or {})
        sid = uuid.uuid4().hex[:12]
        curve = equity_frame(result.equity)
        tr_rows = trade_rows(sid, result.trades)
        final = float(curve["equity"].iloc[-1]) if len(curve) else None
        pnl = None if final is None else final - config.initial_balance
        total_return = metrics.get("total_return", None if pnl is None else pnl / config.initial_balance)
        now = _now()
        row = {"id": sid, "name": config.name, "state": SessionState.COMPLETED.value, "created_at": now,
               "started_at": now, "ended_at": now, "run_no": 1, "final_equity": final, "pnl": pnl,
               "total_return": _finite(total_return), "trade_count": int(metrics.get("trade_count", len(tr_rows))),
               "metrics_json": dumps(metrics), **self._config_fields(config)}

        def run(conn: Connection) -> str:
            conn.execute(insert(s.sessions).values(**row))
            if tr_rows:
                conn.execute(insert(s.trades), tr_rows)
            self._insert_equity(conn, sid, curve)
            self._event(conn, sid, "state", "backtest saved", {"to": "completed"}, "system")
            return sid

        return self._write(run)

    # ---- history -----------------------------------------------------------
    def history(self, kind: SessionKind | str | None = None, strategy: str | None = None, since: Any = None,
                until: Any = None) -> pd.DataFrame:
        """The guide's session history, newest first: date, strategy, kind, pnl, return (a fraction),
        trades, plus id, name, state. Sessions still running show P&L from their latest equity point."""
        c, e, t = s.sessions.c, s.equity.c, s.trades.c
        last_equity = (select(e.equity).where(e.session_id == c.id).order_by(e.time.desc(), e.id.desc())
                       .limit(1).scalar_subquery())
        n_trades = select(func.count()).select_from(s.trades).where(t.session_id == c.id).scalar_subquery()
        pnl = func.coalesce(c.pnl, last_equity - c.initial_balance)
        stmt = select(c.created_at.label("date"), c.strategy, c.kind, pnl.label("pnl"),
                      func.coalesce(c.total_return, pnl / c.initial_balance).label("return"),
                      func.coalesce(c.trade_count, n_trades).label("trades"), c.id, c.name, c.state)
        stmt = self._filtered(stmt, kind, strategy, None, since, until)
        return self._read(lambda conn: to_frame(conn, stmt))

    # ---- commands ----------------------------------------------------------
    def send_command(self, session_id: str, command: str, args: dict[str, Any] | None = None,
                     actor: str = "user") -> int:
        """Queue a command for the session's runner (also recorded as a 'command' event); returns its id."""
        if not command or not isinstance(command, str):
            raise ValueError(f"command must be a non-empty string, got {command!r}")

        def run(conn: Connection) -> int:
            self._require(conn, session_id)
            cmd_id = _new_id(conn.execute(insert(s.commands).values(
                session_id=session_id, created_at=_now(), command=command,
                args_json=None if args is None else dumps(args), actor=actor, status="pending", result="",
            )))
            self._event(conn, session_id, "command", f"{command} requested", {"id": cmd_id, "args": args}, actor)
            return cmd_id

        return self._write(run)

    def pending_commands(self, session_id: str) -> list[dict[str, Any]]:
        """Commands not yet applied or rejected, oldest first, with ``args`` parsed."""
        m = s.commands.c
        stmt = select(s.commands).where(m.session_id == session_id, m.status == "pending").order_by(m.id)
        return self._read(lambda c: [self._command_dict(r) for r in c.execute(stmt)])

    def get_command(self, cmd_id: int) -> dict[str, Any]:
        """One command with its status and result (e.g. to see that a runner applied it)."""
        row = self._read(lambda c: c.execute(select(s.commands).where(s.commands.c.id == cmd_id)).first())
        if row is None:
            raise NotFoundError(f"no command {cmd_id!r}")
        return self._command_dict(row)

    @staticmethod
    def _command_dict(row: Any) -> dict[str, Any]:
        out = dict(row._mapping)
        out["args"] = loads(out.pop("args_json")) or {}
        return out

    def finish_command(self, cmd_id: int, status: str, result: str = "") -> None:
        """Mark a pending command 'applied' or 'rejected' with a result text (also a 'command' event)."""
        if status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {COMMAND_STATUSES}, got {status!r}")
        m = s.commands.c

        def run(conn: Connection) -> None:
            row = conn.execute(select(m.session_id, m.command, m.status).where(m.id == cmd_id)).first()
            if row is None:
                raise NotFoundError(f"no command {cmd_id!r}")
            if row.status != "pending":
                raise StoreError(f"command {cmd_id} ({row.command}) is already {row.status}")
            conn.execute(update(s.commands).where(m.id == cmd_id)
                         .values(status=status, applied_at=_now(), result=result))
            self._event(conn, row.session_id, "command", f"{row.command} {status}" + (f": {result}" if result else ""),
                        {"id": cmd_id, "status": status}, "system")

        self._write(run)

    # ---- templates ---------------------------------------------------------
    def save_template(self, name: str, config: SessionConfig, description: str = "", builtin: bool = False) -> None:
        """Save (or overwrite) a named config template."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"template name must be a non-empty string, got {name!r}")
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config: expected a SessionConfig, got {type(config).__name__}")
        values = {"description": description, "config_json": config.to_json(), "builtin": bool(builtin)}

        def run(conn: Connection) -> None:
            if not conn.execute(update(s.templates).where(s.templates.c.name == name).values(**values)).rowcount:
                conn.execute(insert(s.templates).values(name=name, created_at=_now(), **values))

        self._write(run)

    def get_template(self, name: str) -> SessionConfig:
        """The config saved under ``name`` (validated again)."""
        text = self._read(lambda c: c.execute(select(s.templates.c.config_json)
                                              .where(s.templates.c.name == name)).scalar())
        if text is None:
            raise NotFoundError(f"no template {name!r}")
        return SessionConfig.from_json(text)

    def list_templates(self) -> pd.DataFrame:
        """Templates by name: name, description, builtin, created_at, kind, strategy, symbols."""
        stmt = select(s.templates).order_by(s.templates.c.name)
        frame = self._read(lambda c: to_frame(c, stmt))
        configs = [loads(x) for x in frame.pop("config_json")]
        for key in ("kind", "strategy", "symbols"):
            frame[key] = [cfg.get(key) for cfg in configs]
        return frame

    def delete_template(self, name: str) -> None:
        """Delete a template."""
        def run(conn: Connection) -> None:
            if conn.execute(delete(s.templates).where(s.templates.c.name == name)).rowcount == 0:
                raise NotFoundError(f"no template {name!r}")

        self._write(run)

    # ---- runner state --------------------------------------------------------
    def save_runner_state(self, session_id: str, state: dict[str, Any]) -> None:
        """Replace the runner's recovery state (JSON; datetimes come back as datetimes)."""
        if not isinstance(state, dict):
            raise TypeError(f"runner state: expected a dict, got {type(state).__name__}")
        values = {"state_json": dumps(state), "updated_at": _now()}
        r = s.session_state.c

        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            if not conn.execute(update(s.session_state).where(r.session_id == session_id).values(**values)).rowcount:
                conn.execute(insert(s.session_state).values(session_id=session_id, **values))

        self._write(run)

    def load_runner_state(self, session_id: str) -> dict[str, Any] | None:
        """The last saved runner state, or None if there is none."""
        r = s.session_state.c
        return loads(self._read(lambda c: c.execute(select(r.state_json).where(r.session_id == session_id)).scalar()))

    def save_checkpoint(self, session_id: str, state: dict[str, Any] | None = None, *, fills: Iterable[Fill] = (),
                        orders: Iterable[Order] = (), positions: Iterable[Position] = (),
                        equity: Any = None) -> int:
        """A runner's batched writes in ONE transaction: new ``fills`` (those whose ``fill_id`` is stored
        already are skipped), ``orders`` and ``positions`` upserted, ``equity`` points appended (as
        :meth:`add_equity_points` takes them) and, if given, the runner ``state`` replaced. Fills are
        thus durable together with the checkpoint that covers them. Returns how many fills were new."""
        fills, orders, positions = list(fills), list(orders), list(positions)
        for o in orders:
            if not isinstance(o, Order):
                raise TypeError(f"order: expected an Order, got {type(o).__name__}")
        if state is not None and not isinstance(state, dict):
            raise TypeError(f"runner state: expected a dict, got {type(state).__name__}")
        for fill in fills:
            if not isinstance(fill, Fill):
                raise TypeError(f"fill: expected a Fill, got {type(fill).__name__}")
            if not fill.fill_id:
                raise ValueError("fill.fill_id is empty; give every fill a unique id so replays stay idempotent")
        frame = equity_frame(equity) if equity is not None and len(equity) else None
        state_values = None if state is None else {"state_json": dumps(state), "updated_at": _now()}
        f, r = s.fills.c, s.session_state.c

        def run(conn: Connection) -> int:
            self._require(conn, session_id)
            seen: set[str] = set()
            ids = [x.fill_id for x in fills]
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                seen.update(conn.execute(select(f.fill_id).where(f.session_id == session_id,
                                                                 f.fill_id.in_(chunk))).scalars())
            rows = []
            for x in fills:
                if x.fill_id in seen:
                    continue
                seen.add(x.fill_id)
                rows.append(_values({"session_id": session_id, "client_id": x.client_id, "fill_id": x.fill_id,
                                     "symbol": x.symbol, "side": x.side, "quantity": x.quantity, "price": x.price,
                                     "commission": x.commission, "slippage": x.slippage, "time": x.time}))
            if rows:
                conn.execute(insert(s.fills), rows)
            if orders:
                self._upsert_orders(conn, session_id, orders)
            for p in positions:
                self._upsert_position(conn, session_id, p)
            if frame is not None:
                self._insert_equity(conn, session_id, frame)
            if state_values is not None:
                if not conn.execute(update(s.session_state).where(r.session_id == session_id)
                                    .values(**state_values)).rowcount:
                    conn.execute(insert(s.session_state).values(session_id=session_id, **state_values))
            return len(rows)

        return self._write(run)
