"""Conversions between pandas objects and the store's rows, with clear errors for bad input."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Float, Integer, Select, type_coerce
from sqlalchemy.types import NullType

from workbench.domain import TRADE_COLUMNS, to_utc, utc_index
from workbench.store.schema import UTCDateTime

EQUITY_COLUMNS = ("equity", "cash", "exposure")
TRADE_REQUIRED = ("symbol", "entry_time", "entry_price", "quantity")
TRADE_NUMERIC = ("entry_price", "exit_price", "quantity", "pnl", "return_pct", "entry_fees", "exit_fees",
                 "commission", "slippage", "funding", "interest")

def utc(value: Any, what: str = "time") -> datetime:
    """``value`` (datetime, date, ISO string, pandas Timestamp) as an aware UTC datetime; naive means UTC."""
    return to_utc(value, what).to_pydatetime()


def equity_frame(data: Any) -> pd.DataFrame:
    """Equity points as a frame indexed by UTC time with float columns equity, cash, exposure (NaN if absent).

    Takes a Series (time index → equity), a DataFrame with an ``equity`` column (times in the
    index or a ``time`` column; ``cash``/``exposure`` optional), or an iterable of dicts or of
    ``(time, equity[, cash[, exposure]])`` tuples.
    """
    if isinstance(data, pd.Series):
        frame = data.rename("equity").to_frame()
    elif isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        items = list(data)
        if items and not isinstance(items[0], dict):
            cols = ["time", *EQUITY_COLUMNS][: len(items[0])]
            items = [dict(zip(cols, it)) for it in items]
        frame = pd.DataFrame(items)
    else:
        raise TypeError(f"equity points: expected a Series, DataFrame or rows, got {type(data).__name__}")
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in EQUITY_COLUMNS},
                            index=pd.DatetimeIndex([], tz=timezone.utc, name="time"))
    if "equity" not in frame.columns:
        raise ValueError(f"equity points need an 'equity' column; got columns {list(frame.columns)}")
    times = utc_index(frame["time"] if "time" in frame.columns else frame.index, "equity time")
    out = {}
    for c in EQUITY_COLUMNS:
        try:
            out[c] = pd.to_numeric(frame[c]).to_numpy(dtype=float) if c in frame.columns else np.nan
        except (ValueError, TypeError) as e:
            raise ValueError(f"equity column {c!r} is not numeric ({e})") from None
    result = pd.DataFrame(out, index=times.rename("time"))
    if result["equity"].isna().any():
        raise ValueError(f"equity has {int(result['equity'].isna().sum())} NaN value(s); drop or fill them first")
    return result


def trade_rows(session_id: str, trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for the trades table from a trade log (``TRADE_COLUMNS``); extra columns are ignored,
    missing optional ones are NULL.

    ``status`` defaults to 'closed' when ``exit_time`` is set, else 'open'; commission and
    slippage default to 0; ``duration`` (a timedelta, stored as seconds) to exit_time - entry_time.
    """
    if not isinstance(trades, pd.DataFrame):
        raise TypeError(f"trades: expected a DataFrame, got {type(trades).__name__}")
    missing = [c for c in TRADE_REQUIRED if c not in trades.columns]
    if missing:
        raise ValueError(f"trades are missing column(s) {missing}; required: {list(TRADE_REQUIRED)}")
    if trades.empty:
        return []
    frame = pd.DataFrame({c: trades[c].to_numpy() if c in trades.columns else None for c in TRADE_COLUMNS})
    empty = [c for c in TRADE_REQUIRED if frame[c].isna().any()]
    if empty:
        raise ValueError(f"trades have missing values in required column(s) {empty}")
    for c in TRADE_NUMERIC:
        try:
            frame[c] = pd.to_numeric(frame[c]).astype(float)
        except (ValueError, TypeError) as e:
            raise ValueError(f"trades column {c!r} is not numeric ({e})") from None
    frame[["commission", "slippage"]] = frame[["commission", "slippage"]].fillna(0.0)
    frame["entry_time"] = utc_index(frame["entry_time"], "trade entry_time")
    try:
        frame["exit_time"] = pd.to_datetime(frame["exit_time"], utc=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"trade exit_time: cannot read as date/times ({e})") from None
    if pd.api.types.is_numeric_dtype(frame["duration"]) and frame["duration"].notna().any():
        raise ValueError("trades column 'duration' must hold time spans (timedelta / pd.Timedelta), not numbers")
    try:
        duration = pd.to_timedelta(frame["duration"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"trades column 'duration' is not a time span ({e})") from None
    held = (frame["exit_time"] - frame["entry_time"]).where(duration.isna(), duration)
    frame["duration"] = held.dt.total_seconds()
    frame["status"] = frame["status"].where(frame["status"].notna(),
                                            np.where(frame["exit_time"].notna(), "closed", "open"))
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for r in rows:
        r["session_id"] = session_id
        for c in ("entry_time", "exit_time"):
            if r[c] is not None:
                r[c] = r[c].to_pydatetime()
    return rows


def trades_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The trades table's rows (from :func:`to_frame`) as a trade log: ``TRADE_COLUMNS`` in order,
    ``duration`` a timedelta (NaT while open)."""
    out = frame.reindex(columns=list(TRADE_COLUMNS))
    out["duration"] = pd.to_timedelta(out["duration"].astype(float), unit="s")
    out["side"] = out["side"].where(out["side"].notna(), "long")  # rows saved before shorts (revision 0008)
    out[["funding", "interest"]] = out[["funding", "interest"]].astype(float).fillna(0.0)
    return out


def to_frame(conn: Connection, stmt: Select[Any]) -> pd.DataFrame:
    """Run ``stmt`` and return its rows as a DataFrame with dtypes from the column types: UTC
    datetime64 for UTCDateTime, float for Float (NULL → NaN), nullable Int64 for Integer with NULLs.

    Times are fetched as stored and parsed in one vectorized step (fast for long equity curves).
    """
    cols = list(stmt.selected_columns)
    raw = [type_coerce(c, NullType).label(c.name) if isinstance(c.type, UTCDateTime) else c for c in cols]
    result = conn.execute(stmt.with_only_columns(*raw, maintain_column_froms=True))
    frame = pd.DataFrame([tuple(r) for r in result], columns=list(result.keys()))
    for c in cols:
        if isinstance(c.type, UTCDateTime):
            frame[c.name] = pd.to_datetime(frame[c.name], utc=True, format="ISO8601").dt.as_unit("us")
        elif isinstance(c.type, Float):
            frame[c.name] = frame[c.name].astype(float)
        elif isinstance(c.type, Integer) and frame[c.name].isna().any():
            frame[c.name] = frame[c.name].astype("Int64")
    return frame
