"""The market data validator: pure functions over OHLCV frames (a time index, raw as a feed delivered
them: unsorted and repeated times allowed) and a REST vs websocket cross-check.

* :func:`gaps`: missing bars (a step longer than the timeframe);
* :func:`duplicates`: times delivered more than once (``differs``: with other values);
* :func:`outliers`: impossible bars (high below open/close, low above them, prices <= 0, negative
  volume) and close-to-close moves beyond ``z`` robust deviations (median absolute deviation over
  the ``window`` bars before);
* :func:`stale_periods`: runs of at least ``min_bars`` bars that did not trade (open = high = low =
  close = the previous close, volume 0);
* :func:`cross_check`: the same bars from two sources (REST ``fetch_ohlcv`` vs websocket
  ``watch_ohlcv``, see :meth:`workbench.engine.live_feed.LiveFeed.cross_check`): bars one side lacks and
  values that differ beyond a relative tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PRICES = ("open", "high", "low", "close")
OHLCV = (*PRICES, "volume")


def _frame(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in OHLCV if c not in bars.columns]
    if missing:
        raise ValueError(f"bars need columns {', '.join(OHLCV)}; missing {', '.join(missing)}")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars need a DatetimeIndex of bar open times (set_index('time') first)")
    return bars


def _step(timeframe: str | pd.Timedelta) -> pd.Timedelta:
    if isinstance(timeframe, pd.Timedelta):
        return timeframe
    from workbench.data.schema import timeframe_delta

    return timeframe_delta(timeframe)


def gaps(bars: pd.DataFrame, timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """One row per gap: ``after`` (the last bar before it), ``before`` (the next bar), ``missing`` bars."""
    step = _step(timeframe)
    times = pd.DatetimeIndex(_frame(bars).index.unique()).sort_values()
    delta = times[1:] - times[:-1]
    at = np.flatnonzero(delta > step)
    return pd.DataFrame({"after": times[at], "before": times[at + 1],
                         "missing": [int(d // step) - 1 for d in delta[at]]})


def duplicates(bars: pd.DataFrame) -> pd.DataFrame:
    """One row per repeated time: ``time``, ``count`` (deliveries) and ``differs`` (values not all equal)."""
    frame = _frame(bars)
    counts = frame.index.value_counts()
    repeated = counts[counts > 1].sort_index()
    rows = []
    for t, n in repeated.items():
        values = frame.loc[[t], list(OHLCV)]
        rows.append({"time": t, "count": int(n), "differs": bool(len(values.drop_duplicates()) > 1)})
    return pd.DataFrame(rows, columns=["time", "count", "differs"])


def outliers(bars: pd.DataFrame, *, z: float = 10.0, window: int = 60) -> pd.DataFrame:
    """One row per suspicious bar: ``time``, ``kind`` (``invalid`` or ``jump``) and ``detail``."""
    if not z > 0 or window < 2:
        raise ValueError(f"outliers need z > 0 and window >= 2 (got z={z}, window={window})")
    frame = _frame(bars)
    frame = frame[~frame.index.duplicated()].sort_index()
    rows: list[dict[str, Any]] = []
    o, h, lo, c, v = (frame[k] for k in OHLCV)
    bad = ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (frame[list(PRICES)] <= 0).any(axis=1) | (v < 0))
    for t in frame.index[bad.to_numpy()]:
        r = frame.loc[t]
        rows.append({"time": t, "kind": "invalid", "detail": ", ".join(f"{k}={r[k]:g}" for k in OHLCV)})
    ret = np.log(c.where(c > 0)).diff()
    med = ret.rolling(window, min_periods=1).median()
    # the spread of the moves before this bar (at least a quarter window of them)
    mad = (ret - med).abs().rolling(window, min_periods=max(window // 4, 2)).median().shift(1)
    score = (ret - med.shift(1)).abs() / (1.4826 * mad)
    prev = c.shift(1)
    for t in frame.index[(score > z).to_numpy()]:
        rows.append({"time": t, "kind": "jump", "detail": f"close {c[t]:g} moved {ret[t]:+.2%} from {prev[t]:g} "
                                                          f"({score[t]:.0f} deviations)"})
    return pd.DataFrame(rows, columns=["time", "kind", "detail"]).sort_values("time", kind="stable") \
        .reset_index(drop=True)


def stale_periods(bars: pd.DataFrame, *, min_bars: int = 5) -> pd.DataFrame:
    """One row per run of ``min_bars`` or more untraded bars: ``start``, ``end`` (first and last), ``bars``."""
    if min_bars < 1:
        raise ValueError(f"min_bars must be >= 1 (got {min_bars})")
    frame = _frame(bars)
    frame = frame[~frame.index.duplicated()].sort_index()
    prev = frame["close"].shift(1)
    flat = (frame["volume"] == 0) & (frame[list(PRICES)].eq(prev, axis=0).all(axis=1))
    run_id = (flat != flat.shift(1)).cumsum()
    rows = []
    for _, run in frame[flat.to_numpy()].groupby(run_id[flat]):
        if len(run) >= min_bars:
            rows.append({"start": run.index[0], "end": run.index[-1], "bars": len(run)})
    return pd.DataFrame(rows, columns=["start", "end", "bars"])


def cross_check(rest: pd.DataFrame, ws: pd.DataFrame, *, rel_tol: float = 1e-9) -> pd.DataFrame:
    """Compare the bars two sources gave for the times both cover (from the later first bar to the earlier
    last): one row per difference: ``time``, ``what`` (``only_rest``, ``only_ws`` or a column), ``rest``, ``ws``."""
    a, b = _frame(rest), _frame(ws)
    a, b = a[~a.index.duplicated(keep="last")].sort_index(), b[~b.index.duplicated(keep="last")].sort_index()
    if a.empty or b.empty:
        return pd.DataFrame(columns=["time", "what", "rest", "ws"])
    lo, hi = max(a.index[0], b.index[0]), min(a.index[-1], b.index[-1])
    a, b = a[(a.index >= lo) & (a.index <= hi)], b[(b.index >= lo) & (b.index <= hi)]
    rows: list[dict[str, Any]] = []
    rows += [{"time": t, "what": "only_rest", "rest": None, "ws": None} for t in a.index.difference(b.index)]
    rows += [{"time": t, "what": "only_ws", "rest": None, "ws": None} for t in b.index.difference(a.index)]
    both = a.index.intersection(b.index)
    for col in OHLCV:
        x, y = a.loc[both, col].to_numpy(float), b.loc[both, col].to_numpy(float)
        off = ~np.isclose(x, y, rtol=rel_tol, atol=0.0)
        rows += [{"time": t, "what": col, "rest": float(p), "ws": float(q)}
                 for t, p, q in zip(both[off], x[off], y[off])]
    return pd.DataFrame(rows, columns=["time", "what", "rest", "ws"]).sort_values(["time", "what"]) \
        .reset_index(drop=True)


@dataclass
class Report:
    """All checks of one symbol's bars; ``summary`` counts each finding."""

    gaps: pd.DataFrame
    duplicates: pd.DataFrame
    outliers: pd.DataFrame
    stale: pd.DataFrame
    bars: int = 0
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not any(self.summary.values())


def validate(bars: pd.DataFrame, timeframe: str | pd.Timedelta, *, z: float = 10.0, window: int = 60,
             stale_bars: int = 5) -> Report:
    """Every check over ``bars`` (see the module docstring)."""
    g, d = gaps(bars, timeframe), duplicates(bars)
    o, s = outliers(bars, z=z, window=window), stale_periods(bars, min_bars=stale_bars)
    summary = {"missing_bars": int(g["missing"].sum()), "gaps": len(g), "duplicates": len(d), "outliers": len(o),
               "stale_periods": len(s)}
    return Report(g, d, o, s, len(bars), summary)


__all__ = ["OHLCV", "Report", "cross_check", "duplicates", "gaps", "outliers", "stale_periods", "validate"]
