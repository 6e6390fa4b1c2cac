"""Trade-by-trade review: excursions, timing quality and win/loss attribution of a trade log over its bars.

Pure pandas/numpy over the trade log (``TRADE_COLUMNS``) and the session's bars (``symbol -> OHLC frame``,
UTC index), vectorised per symbol with ``searchsorted`` and ``ufunc.reduceat`` (no loop over trades or
bars), so a backtest of thousands of trades over 500k bars reviews in under a second. Imports no
numba, vectorbt or ccxt: dashboards use it too. Definitions (a long trade; a short one is mirrored):

* **Held bars**: from the entry bar (an entry fills at its bar's open, so all of that bar comes after it)
  up to, not including, the exit bar, plus the exit price itself (an exit fills at the exit bar's open or
  at a stop level inside it; what the bar did after that is not the trade's). An open trade is held
  through the last bar given and has no exit price.
* **MAE** (maximum adverse excursion) ``= max(entry - lowest low held, 0)``, **MFE** (maximum favourable
  excursion) ``= max(highest high held - entry, 0)``, in price; ``mae_pct``/``mfe_pct`` as fractions of
  the entry price.
* **Entry timing** ``= (H - entry) / (H - L)`` over the ``around`` bars either side of the entry bar (itself
  included): 1 bought at the lowest price nearby, 0 at the highest. **Exit timing** ``= (exit - L) / (H - L)``
  around the exit bar: 1 sold at the top. Slippage can put a fill, and so its timing, a little outside
  the bars' range (below 0 or above 1). NaN when the range is flat.
* **Capture** ``= (exit - entry) / (MFE + MAE)``, the trade's efficiency: the share of the whole range it
  was held through that it kept, from 1 (bought at the bottom, sold at the top) to -1 (the reverse);
  NaN for an open trade or when the price never moved.
* **Regime** at entry, from the bar before the entry bar (no look-ahead): the trend is ``up`` when the
  close is above its ``regime_window``-bar moving average and that average rose over the last
  ``regime_window`` bars, ``down`` when both point down, else ``sideways``; the volatility is the tercile
  (``low``/``mid``/``high``) of the ``regime_window``-bar standard deviation of log returns at that bar
  among all the symbol's bars. ``unknown`` before enough bars.
* **Hour**: the entry's hour of day in the session's time zone.

Attribution (:func:`attribution`) counts closed trades only.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.domain import EXIT_REASONS

REVIEW_COLUMNS: tuple[str, ...] = (
    "mae", "mfe", "mae_pct", "mfe_pct", "entry_timing", "exit_timing", "capture", "holding_hours", "hour",
    "trend", "volatility", "regime",
)
#: what :func:`attribution` can group by
ATTRIBUTION_KEYS: tuple[str, ...] = ("symbol", "hour", "exit_reason", "regime")
TRENDS, VOLS = ("up", "sideways", "down"), ("low", "mid", "high")
_WIN, _LOSS, _MARGIN = "#2ca02c", "#d62728", dict(l=50, r=20, t=50, b=40)


def segment_reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(values[lo[i]:hi[i]])`` for every i at once (NaN where ``hi[i] <= lo[i]``)."""
    lo = np.asarray(lo, dtype=np.intp)
    hi = np.asarray(hi, dtype=np.intp)
    if not len(lo):
        return np.empty(0)
    padded = np.append(np.asarray(values, dtype=np.float64), np.nan)  # so hi may equal len(values)
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2], idx[1::2] = lo, hi
    out = ufunc.reduceat(padded, idx)[0::2]
    out[hi <= lo] = np.nan
    return out


def _utc(times: Any) -> pd.DatetimeIndex:
    """Times as a UTC DatetimeIndex (naive means UTC, the domain's rule)."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True))


def _regimes(bars: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trend and volatility labels of every bar (see the module's definition), as object arrays."""
    close = bars["close"].astype(float)
    sma = close.rolling(window, min_periods=window).mean()
    rising, falling = sma > sma.shift(window), sma < sma.shift(window)
    trend = np.where((close > sma) & rising, "up", np.where((close < sma) & falling, "down", "sideways"))
    trend = np.where(sma.shift(window).isna(), "unknown", trend).astype(object)
    vol = np.log(close).diff().rolling(window, min_periods=window).std()
    known = vol.dropna()
    level = np.full(len(vol), "unknown", dtype=object)
    if len(known):
        q1, q2 = np.quantile(known.to_numpy(), [1 / 3, 2 / 3])
        v = vol.to_numpy()
        level[~np.isnan(v)] = np.where(v[~np.isnan(v)] <= q1, "low", np.where(v[~np.isnan(v)] <= q2, "mid", "high"))
    return trend, level


def _review_symbol(tr: pd.DataFrame, bars: pd.DataFrame, around: int, window: int) -> dict[str, np.ndarray]:
    idx = _utc(bars.index)
    n = len(idx)
    high, low = bars["high"].to_numpy(dtype=float), bars["low"].to_numpy(dtype=float)
    entry_t, exit_t = _utc(tr["entry_time"]), _utc(tr["exit_time"])
    closed = ~exit_t.isna()
    entry_pos = idx.searchsorted(entry_t, side="right") - 1  # the bar the entry filled in
    exit_pos = np.where(closed, idx.searchsorted(exit_t.fillna(idx[-1]), side="right") - 1, n - 1)
    lo = np.clip(entry_pos, 0, n)
    hi = np.where(closed, exit_pos, n)  # the exit bar itself is not held (its price is the exit's)
    hi = np.maximum(hi, lo)
    entry = tr["entry_price"].to_numpy(dtype=float)
    exit_ = np.where(closed, tr["exit_price"].to_numpy(dtype=float), np.nan)
    side = np.where(tr["quantity"].to_numpy(dtype=float) < 0, -1.0, 1.0)
    top = np.fmax(segment_reduce(np.maximum, high, lo, hi), exit_)
    bottom = np.fmin(segment_reduce(np.minimum, low, lo, hi), exit_)
    up, down = np.fmax(top - entry, 0.0), np.fmax(entry - bottom, 0.0)
    mfe, mae = np.where(side > 0, up, down), np.where(side > 0, down, up)
    valid = entry_pos >= 0
    mfe, mae = np.where(valid, mfe, np.nan), np.where(valid, mae, np.nan)

    def nearby(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.clip(pos - around, 0, n), np.clip(pos + around + 1, 0, n)
        return segment_reduce(np.maximum, high, a, b), segment_reduce(np.minimum, low, a, b)

    with np.errstate(invalid="ignore", divide="ignore"):
        h, lw = nearby(entry_pos)
        span = np.where(h > lw, h - lw, np.nan)
        entry_timing = np.where(side > 0, h - entry, entry - lw) / span
        h, lw = nearby(np.where(closed, exit_pos, 0))
        span = np.where(closed & (h > lw), h - lw, np.nan)
        exit_timing = np.where(side > 0, exit_ - lw, h - exit_) / span
        moved = mfe + mae
        capture = np.where(moved > 0, side * (exit_ - entry) / moved, np.nan)
    trend, vol = _regimes(bars, window)
    at = entry_pos - 1  # the last bar complete before the entry's fill
    ok = at >= 0
    safe = np.clip(at, 0, max(n - 1, 0))
    return {"mae": mae, "mfe": mfe, "mae_pct": mae / entry, "mfe_pct": mfe / entry,
            "entry_timing": np.where(valid, entry_timing, np.nan), "exit_timing": exit_timing, "capture": capture,
            "trend": np.where(ok, trend[safe], "unknown"), "volatility": np.where(ok, vol[safe], "unknown")}


def review_trades(trades: pd.DataFrame, bars: Mapping[str, pd.DataFrame], *, timezone: str = "UTC",
                  around: int = 2, regime_window: int = 50) -> pd.DataFrame:
    """``trades`` with :data:`REVIEW_COLUMNS` added (see the module's definitions). ``bars``: each traded
    symbol's OHLC bars (a symbol without bars gets NaN excursions and an ``unknown`` regime)."""
    missing = {"symbol", "entry_time", "exit_time", "entry_price", "exit_price", "quantity"} - set(trades.columns)
    if missing:
        raise ValueError(f"review_trades needs the trade log's columns (TRADE_COLUMNS); missing {sorted(missing)}")
    if around < 0 or regime_window < 2:
        raise ValueError(f"around must be >= 0 and regime_window >= 2 (got {around}, {regime_window})")
    out = trades.reset_index(drop=True).copy()
    n = len(out)
    cols: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in REVIEW_COLUMNS[:7]}
    cols["trend"] = np.full(n, "unknown", dtype=object)
    cols["volatility"] = np.full(n, "unknown", dtype=object)
    for sym, rows in out.groupby("symbol", sort=False).indices.items():
        frame = bars.get(sym)
        if frame is None or not len(frame):
            continue
        tr = out.iloc[rows].sort_values("entry_time")
        part = _review_symbol(tr, frame, around, regime_window)
        where = tr.index.to_numpy()
        for k, v in part.items():
            cols[k][where] = v
    for k, v in cols.items():
        out[k] = v
    held = pd.to_datetime(out["exit_time"], utc=True) - pd.to_datetime(out["entry_time"], utc=True)
    out["holding_hours"] = held / pd.Timedelta(hours=1)
    out["hour"] = pd.to_datetime(out["entry_time"], utc=True).dt.tz_convert(timezone).dt.hour
    out["regime"] = np.where(out["trend"] == "unknown", "unknown", out["trend"] + " · " + out["volatility"] + " vol")
    return out


def _closed(reviewed: pd.DataFrame) -> pd.DataFrame:
    return reviewed[reviewed["status"] == "closed"] if "status" in reviewed.columns else reviewed


def _order(by: str, keys: list[Any]) -> list[Any]:
    if by == "exit_reason":
        return sorted(keys, key=lambda k: (EXIT_REASONS.index(k) if k in EXIT_REASONS else len(EXIT_REASONS), str(k)))
    if by == "regime":
        rank = {f"{t} · {v} vol": i for i, (t, v) in enumerate((t, v) for t in TRENDS for v in VOLS)}
        return sorted(keys, key=lambda k: (rank.get(k, len(rank)), str(k)))
    return sorted(keys)


def attribution(reviewed: pd.DataFrame, by: str) -> pd.DataFrame:
    """Closed trades' wins and losses grouped by ``by`` (one of :data:`ATTRIBUTION_KEYS`): trades, wins,
    win rate, total and average P&L, average return and profit factor (gross wins / gross losses: inf
    with no loss, NaN with neither), plus an ``all`` row."""
    if by not in ATTRIBUTION_KEYS:
        raise ValueError(f"attribution by {by!r}: use one of {', '.join(ATTRIBUTION_KEYS)}")
    if by not in reviewed.columns:
        raise ValueError(f"no {by!r} column: pass the frame review_trades returns")
    tr = _closed(reviewed)
    pnl = tr["pnl"].astype(float)
    frame = pd.DataFrame({"key": tr[by].to_numpy(), "pnl": pnl.to_numpy(), "ret": tr["return_pct"].astype(float),
                          "win": (pnl > 0).to_numpy(), "gain": pnl.clip(lower=0).to_numpy(),
                          "loss": (-pnl.clip(upper=0)).to_numpy()})
    groups = [(k, frame[frame["key"] == k]) for k in _order(by, list(pd.unique(frame["key"])))]
    rows = []
    for key, g in [*groups, ("all", frame)]:
        n, gain, loss = len(g), float(g["gain"].sum()), float(g["loss"].sum())
        pf = gain / loss if loss else (np.inf if gain else np.nan)
        rows.append({by: key, "trades": n, "wins": int(g["win"].sum()),
                     "win_rate": g["win"].mean() if n else np.nan, "pnl": float(g["pnl"].sum()),
                     "avg_pnl": g["pnl"].mean() if n else np.nan, "avg_return": g["ret"].mean() if n else np.nan,
                     "profit_factor": pf})
    return pd.DataFrame(rows).set_index(by)


def excursion_summary(reviewed: pd.DataFrame) -> pd.DataFrame:
    """Averages of MAE %, MFE %, entry and exit timing and capture over closed winners, losers and all."""
    tr = _closed(reviewed)
    keys = ["mae_pct", "mfe_pct", "entry_timing", "exit_timing", "capture", "holding_hours"]
    win = tr["pnl"].astype(float) > 0
    parts = {"winners": tr[win], "losers": tr[~win], "all": tr}
    return pd.DataFrame({name: [p[k].astype(float).mean() if len(p) else np.nan for k in keys]
                         for name, p in parts.items()}, index=pd.Index(keys, name="measure"))


def _empty(title: str, text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250, margin=_MARGIN)
    return fig


def _scatter(tr: pd.DataFrame, x: str, title: str, xaxis: str, xfmt: str) -> go.Figure:
    if not len(tr):
        return _empty(title, "no closed trades")
    pnl = tr["pnl"].astype(float)
    fig = go.Figure()
    for name, part, color in (("wins", tr[pnl > 0], _WIN), ("losses", tr[pnl <= 0], _LOSS)):
        text = [f"{s} {r or ''}" for s, r in zip(part["symbol"], part["exit_reason"])]
        hover = f"%{{text}}<br>{xaxis} %{{x:{xfmt}}}<br>P&L %{{y:,.2f}}<extra></extra>"
        fig.add_trace(go.Scatter(x=part[x].to_numpy(dtype=float), y=part["pnl"].to_numpy(dtype=float),
                                 mode="markers", name=f"{name} ({len(part)})", text=text, hovertemplate=hover,
                                 marker=dict(color=color, size=6, opacity=0.7)))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title="P&L per trade", height=340, margin=_MARGIN)
    return fig


def pnl_vs_holding_figure(reviewed: pd.DataFrame) -> go.Figure:
    """Scatter of closed trades' P&L against holding time (hours), winners and losers in their colours."""
    return _scatter(_closed(reviewed), "holding_hours", "P&L against holding time", "holding time (h)", ".2f")


def excursion_figure(reviewed: pd.DataFrame) -> go.Figure:
    """Scatter of closed trades' P&L against their MAE (% of entry): how deep losers and winners went."""
    tr = _closed(reviewed).assign(mae_pct100=lambda d: 100.0 * d["mae_pct"].astype(float))
    return _scatter(tr, "mae_pct100", "P&L against maximum adverse excursion", "MAE (% of entry)", ".2f")
