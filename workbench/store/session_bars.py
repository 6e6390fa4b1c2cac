"""The closed live bars a session was handed (table ``session_bars``, revision 0007).

A live feed appends each time's bars before the session processes them (:mod:`workbench.engine.live_feed`),
so what is stored covers at least every bar the session acted on; a bar delivered again after a resume
replaces the stored one (the session acts on the new delivery). The fidelity twin (:mod:`workbench.twin`)
backtests these bars instead of downloading them again, and an A/B beside a live session
(:mod:`workbench.ab.live`) replays them to its paper variants as they arrive.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select

from workbench.domain import as_utc
from workbench.store import schema as s

__all__ = ["BarRow", "append_session_bars", "last_session_bar", "session_bars", "session_bar_symbols"]

#: (symbol, open time, open, high, low, close, volume)
BarRow = tuple[str, datetime, float, float, float, float, float]
_OHLCV = ("open", "high", "low", "close", "volume")


def append_session_bars(store: Any, session_id: str, rows: Iterable[BarRow]) -> int:
    """Store ``rows`` as bars session ``session_id`` was handed (one transaction; a bar already stored for
    that symbol and time is replaced). Returns how many were written."""
    values = [{"session_id": session_id, "symbol": sym, "time": t,
               **{k: float(v) for k, v in zip(_OHLCV, ohlcv)}} for sym, t, *ohlcv in rows]
    if not values:
        return 0

    def run(conn: Connection) -> int:
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:  # pragma: no cover - the store runs on SQLite and PostgreSQL
            raise NotImplementedError(f"session bars on {conn.dialect.name}")
        stmt = insert(s.session_bars)
        stmt = stmt.on_conflict_do_update(index_elements=["session_id", "symbol", "time"],
                                          set_={k: stmt.excluded[k] for k in _OHLCV})
        conn.execute(stmt, values)
        return len(values)

    return int(store._write(run))


def session_bars(store: Any, session_id: str, symbol: str, start: Any = None, end: Any = None,
                 *, after: Any = None) -> pd.DataFrame:
    """The stored bars of ``symbol`` for ``session_id`` in ``[start, end]`` (and after ``after``, exclusive)
    as an OHLCV frame indexed by UTC open time (empty if none)."""
    c = s.session_bars.c
    stmt = select(c.time, *(c[k] for k in _OHLCV)).where(c.session_id == session_id, c.symbol == symbol)
    for bound, op in ((start, "__ge__"), (end, "__le__"), (after, "__gt__")):
        if bound is not None:
            stmt = stmt.where(getattr(c.time, op)(pd.Timestamp(bound).to_pydatetime()))
    rows = store._read(lambda conn: conn.execute(stmt.order_by(c.time)).all())
    frame = pd.DataFrame(rows, columns=["time", *_OHLCV]).astype({k: float for k in _OHLCV})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.set_index("time")


def session_bar_symbols(store: Any, session_id: str) -> Sequence[str]:
    """The symbols ``session_id`` has stored bars of."""
    c = s.session_bars.c
    stmt = select(c.symbol).where(c.session_id == session_id).distinct()
    return sorted(str(r[0]) for r in store._read(lambda conn: conn.execute(stmt).all()))


def last_session_bar(store: Any, session_id: str) -> datetime | None:
    """The open time of the newest bar stored for ``session_id`` (any symbol), or None."""
    c = s.session_bars.c
    stmt = select(func.max(c.time)).where(c.session_id == session_id)
    last = store._read(lambda conn: conn.execute(stmt).scalar())  # the column's type: timezone-aware UTC
    return None if last is None else as_utc(last)
