"""What a session trades: its orders, fills, positions, equity curve and trades, and saved backtests.

Equity is stored in full, never downsampled: a year of minute points (525,600 rows) is a bulk
insert of well under a second (multi-row INSERTs on SQLite), and readers can resample as they like."""
from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, insert, select, update

from workbench.config import SessionConfig
from workbench.domain import Fill, Order, Position, SessionKind, SessionState
from workbench.metrics.regime import regime_columns
from workbench.store import schema as s
from workbench.store.base import config_fields, db_value, db_values, finite, utc_now
from workbench.store.frames import EQUITY_COLUMNS, equity_frame, to_frame, trade_rows, trades_frame, utc
from workbench.store.jsonutil import dumps, loads
from workbench.store.lease import LeaseStore
from workbench.store.sessions import lineage_values

#: equity rows per SQLite INSERT statement: 5 bound values a row stay under 999, the oldest SQLite limit
_ROWS_PER_INSERT = 199


@functools.cache
def _equity_insert_sql(rows: int) -> str:
    """``INSERT INTO equity (session_id, time, equity, cash, exposure) VALUES (?, ...), ...`` for
    ``rows`` rows (SQLite's qmark parameters)."""
    names = ("session_id", "time", *EQUITY_COLUMNS)
    one = "(" + ", ".join("?" * len(names)) + ")"
    return f"INSERT INTO {s.equity.name} ({', '.join(names)}) VALUES " + ", ".join([one] * rows)


def _floats_or_none(values: np.ndarray) -> list[float | None]:
    """``values`` as Python floats, NaN as None (NULL)."""
    out: list[float | None] = values.tolist()
    if np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


class TradingStore(LeaseStore):
    """Orders, fills, positions, equity, trades and backtests (mixed into :class:`workbench.store.Store`)."""

    # ---- orders, fills, positions -----------------------------------------
    @staticmethod
    def _upsert_order(conn: Connection, session_id: str, order: Order) -> None:
        if not isinstance(order, Order):
            raise TypeError(f"order: expected an Order, got {type(order).__name__}")
        now = utc_now()
        values = TradingStore._order_values(order, now)
        o = s.orders.c
        done = conn.execute(update(s.orders).where(o.session_id == session_id, o.client_id == order.client_id)
                            .values(**values)).rowcount
        if not done:
            conn.execute(insert(s.orders).values(session_id=session_id, client_id=order.client_id,
                                                 created_at=order.created_at or now, **values))

    @staticmethod
    def _order_values(order: Order, now: datetime) -> dict[str, Any]:
        """An order's row values (all but session_id, client_id, created_at)."""
        return db_values({"symbol": order.symbol, "side": order.side, "type": order.type, "quantity": order.quantity,
                        "limit_price": order.limit_price, "status": order.status,
                        "filled_quantity": order.filled_quantity, "reason": order.reason,
                        "exchange_id": order.exchange_id, "updated_at": now})

    @staticmethod
    def _upsert_orders(conn: Connection, session_id: str, orders: list[Order]) -> None:
        """:meth:`_upsert_order` for many: the new ones in one bulk insert, known ones updated one by one."""
        o, now = s.orders.c, utc_now()
        known: set[str] = set()
        ids = [x.client_id for x in orders]
        for k in range(0, len(ids), 500):
            known.update(conn.execute(select(o.client_id).where(o.session_id == session_id,
                                                                o.client_id.in_(ids[k:k + 500]))).scalars())
        new = {x.client_id: x for x in orders if x.client_id not in known}
        if new:
            conn.execute(insert(s.orders), [{"session_id": session_id, "client_id": x.client_id,
                                             "created_at": x.created_at or now, **TradingStore._order_values(x, now)}
                                            for x in new.values()])
        for x in orders:
            if x.client_id in known:
                TradingStore._upsert_order(conn, session_id, x)

    @staticmethod
    def _upsert_position(conn: Connection, session_id: str, pos: Position) -> None:
        if not isinstance(pos, Position):
            raise TypeError(f"position: expected a Position, got {type(pos).__name__}")
        values = db_values({"quantity": pos.quantity, "avg_price": pos.avg_price, "opened_at": pos.opened_at,
                          "realized_pnl": pos.realized_pnl, "peak_price": pos.peak_price,
                          "extra_json": dumps(pos.extra) if pos.extra else None, "updated_at": utc_now()})
        p = s.positions.c
        done = conn.execute(update(s.positions).where(p.session_id == session_id, p.symbol == pos.symbol)
                            .values(**values)).rowcount
        if not done:
            conn.execute(insert(s.positions).values(session_id=session_id, symbol=pos.symbol, **values))

    def upsert_order(self, session_id: str, order: Order) -> None:
        """Insert the order, or update it if its ``client_id`` is already known for the session."""
        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            self._fence(conn, session_id)
            self._upsert_order(conn, session_id, order)

        self._write(run)

    def orders(self, session_id: str, status: str | Iterable[str] | None = None) -> pd.DataFrame:
        """The session's orders in creation order, optionally only those with ``status`` (one or several)."""
        o = s.orders.c
        stmt = select(*[c for c in s.orders.c if c.name != "id"]).where(o.session_id == session_id)
        if status is not None:
            stmt = stmt.where(o.status.in_([db_value(status)] if isinstance(status, (str, Enum))
                                           else [db_value(x) for x in status]))
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
        row = db_values({"session_id": session_id, "client_id": fill.client_id, "fill_id": fill.fill_id,
                       "symbol": fill.symbol, "side": fill.side, "quantity": fill.quantity, "price": fill.price,
                       "commission": fill.commission, "slippage": fill.slippage, "time": fill.time})
        f = s.fills.c

        def run(conn: Connection) -> bool:
            self._require(conn, session_id)
            self._fence(conn, session_id)
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
        """Bulk insert. On SQLite the rows go to the driver as multi-row INSERTs of up to
        :data:`_ROWS_PER_INSERT` rows (one statement step per chunk, not per row: ~1.3 us a point
        instead of ~3 with ``executemany``), with the times pre-formatted as stored and the floats as
        Python floats (NaN as NULL), no per-row conversion. Other backends use SQLAlchemy's batched
        executemany."""
        if frame.empty:
            return
        floats = {c: _floats_or_none(frame[c].to_numpy(dtype=float)) for c in EQUITY_COLUMNS}
        if conn.dialect.name != "sqlite":
            times = frame.index.to_pydatetime().tolist()
            conn.execute(insert(s.equity), [{"session_id": session_id, "time": t, **dict(zip(floats, v))}
                                            for t, *v in zip(times, *floats.values())])
            return
        width, m = 2 + len(EQUITY_COLUMNS), len(frame)
        flat: list[Any] = [session_id] * (width * m)  # row-major: session_id, time, equity, cash, exposure
        flat[1::width] = s.UTCDateTime.sqlite_text(frame.index)
        for k, c in enumerate(EQUITY_COLUMNS, 2):
            flat[k::width] = floats[c]
        for lo in range(0, m, _ROWS_PER_INSERT):
            n = min(_ROWS_PER_INSERT, m - lo)
            conn.exec_driver_sql(_equity_insert_sql(n), tuple(flat[width * lo:width * (lo + n)]))

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
            self._fence(conn, session_id)
            conn.execute(delete(s.trades).where(s.trades.c.session_id == session_id))
            if rows:
                conn.execute(insert(s.trades), rows)

        self._write(run)

    def trades(self, session_id: str) -> pd.DataFrame:
        """The session's round trips in the order saved: ``TRADE_COLUMNS`` (``duration`` a timedelta,
        fees NaN for trades saved before the store kept them)."""
        t = s.trades.c
        stmt = select(*[c for c in s.trades.c if c.name not in ("id", "session_id")])
        stmt = stmt.where(t.session_id == session_id).order_by(t.id)
        return trades_frame(self._read(lambda c: to_frame(c, stmt)))

    def save_backtest(self, config: SessionConfig, result: Any, *, parent_id: str | None = None) -> str:
        """Save a finished backtest as a 'completed' backtest session, atomically; returns its id.
        ``parent_id``: the session it was cloned from (lineage, as :meth:`create_session`).

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
        now = utc_now()
        row = {"id": sid, "name": config.name, "state": SessionState.COMPLETED.value, "created_at": now,
               "started_at": now, "ended_at": now, "final_equity": final, "pnl": pnl,
               "total_return": finite(total_return), "trade_count": int(metrics.get("trade_count", len(tr_rows))),
               "metrics_json": dumps(metrics), **config_fields(config), **regime_columns(getattr(result, "bars", None))}

        def run(conn: Connection) -> str:
            row.update(lineage_values(conn, parent_id, row["config_json"]))
            conn.execute(insert(s.sessions).values(**row))
            if tr_rows:
                conn.execute(insert(s.trades), tr_rows)
            self._insert_equity(conn, sid, curve)
            self._event(conn, sid, "state", "backtest saved", {"to": "completed"}, "system")
            return sid

        return self._write(run)
