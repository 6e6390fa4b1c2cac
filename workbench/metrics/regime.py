"""The market regime of a stretch of bars: ``trending``, ``ranging`` or ``high-volatility``, with the numbers.

From the log returns ``r`` of each symbol's closes (``n`` of them):

* **trend strength** ``= |sum r| / (std r * sqrt n)``: the net move in units of what a random walk with
  the same volatility would drift (about ``|N(0, 1)|`` for a random walk, so 2 is a move that chance
  makes about one time in twenty);
* **efficiency** ``= |sum r| / sum |r|`` (Kaufman's ratio, shown, not used by the rule);
* **volatility**: ``std r`` annualized over a 365-day year from the bars' median spacing;
* **volatility percentile**: where that volatility falls (0-100) among the rolling volatilities of
  ``reference`` bars (e.g. the months before), over windows as long as the bars given (at most 1440
  bars); NaN without a reference.

With several symbols the numbers are their means. The rule, in order: ``high-volatility`` when the
volatility is at least ``high_vol`` (default 1.0, 100 %/year) or its percentile at least
``high_percentile`` (default 90); else ``trending`` when the trend strength is at least ``trend``
(default 2.0); else ``ranging``. Fewer than ``MIN_BARS`` bars give ``None``.

:func:`regime_split` labels each period (a day by default) of a run this way and adds up the run's
performance per label: the guide's "performance in different market conditions".
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = ["REGIMES", "MIN_BARS", "Regime", "market_regime", "regime_columns", "regime_split", "session_regime_columns"]

REGIMES: tuple[str, ...] = ("trending", "ranging", "high-volatility")
MIN_BARS = 30
_YEAR_SECONDS = 365 * 24 * 3600.0

Bars: TypeAlias = "pd.DataFrame | Mapping[Any, pd.DataFrame]"


@dataclass(frozen=True)
class Regime:
    """A regime label and the numbers behind it (see the module docstring)."""

    label: str
    trend_strength: float
    efficiency: float
    volatility: float
    vol_percentile: float
    bars: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Regime:
        nan = float("nan")
        return cls(label=str(data["label"]), bars=int(data.get("bars") or 0),
                   **{k: nan if data.get(k) is None else float(data[k])
                      for k in ("trend_strength", "efficiency", "volatility", "vol_percentile")})


def _frames(bars: Bars, what: str) -> list[pd.DataFrame]:
    if isinstance(bars, pd.DataFrame):
        return [bars]
    if isinstance(bars, Mapping):
        return list(bars.values())
    raise TypeError(f"{what}: expected a bars frame or a dict symbol -> bars frame, got {type(bars).__name__}")


def _returns(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    """Log returns of the closes and the bars per year (from the median spacing of the index)."""
    if "close" not in frame:
        raise ValueError("bars need a 'close' column to compute a market regime")
    close = frame["close"].to_numpy(dtype=float)
    close = close[np.isfinite(close) & (close > 0)]
    r = np.diff(np.log(close))
    per_year = float("nan")
    if isinstance(frame.index, pd.DatetimeIndex) and len(frame.index) > 1:
        step = float(np.median(np.diff(frame.index.as_unit("ns").asi8))) / 1e9
        per_year = _YEAR_SECONDS / step if step > 0 else per_year
    return r, per_year


def _percentile(vol: float, reference: Bars, window: int) -> float:
    """Percent of the reference's rolling ``window``-return volatilities at or below ``vol`` (per bar)."""
    vols: list[np.ndarray] = []
    for frame in _frames(reference, "reference"):
        r, _ = _returns(frame)
        if len(r) >= window:
            vols.append(pd.Series(r).rolling(window).std().dropna().to_numpy())
    pool = np.concatenate(vols) if vols else np.empty(0)
    return float((pool <= vol).mean() * 100.0) if len(pool) else float("nan")


def market_regime(bars: Bars, *, reference: Bars | None = None, trend: float = 2.0, high_vol: float = 1.0,
                  high_percentile: float = 90.0) -> Regime | None:
    """The regime of ``bars`` (a frame or symbol -> frame; see the module docstring), or None when no
    symbol has ``MIN_BARS`` bars."""
    stats = []
    for frame in _frames(bars, "bars"):
        r, per_year = _returns(frame)
        if len(r) + 1 < MIN_BARS:
            continue
        sd = float(r.std(ddof=1))
        net = abs(float(r.sum()))
        strength = net / (sd * math.sqrt(len(r))) if sd > 0 else (math.inf if net else 0.0)
        moved = float(np.abs(r).sum())
        eff = net / moved if moved > 0 else 0.0
        pct = float("nan") if reference is None else _percentile(sd, reference, min(len(r), 1440))
        stats.append((strength, eff, sd * math.sqrt(per_year), pct, len(r) + 1))
    if not stats:
        return None
    strength, eff, vol, pct = (float(np.mean([s[i] for s in stats])) for i in range(4))
    if vol >= high_vol or (math.isfinite(pct) and pct >= high_percentile):
        label = "high-volatility"
    elif strength >= trend:
        label = "trending"
    else:
        label = "ranging"
    return Regime(label, strength, eff, vol, pct, int(sum(s[4] for s in stats)))


def regime_columns(bars: Bars | None) -> dict[str, Any]:
    """The session row's ``regime``/``regime_json`` for ``bars`` (``{}`` when there is no regime)."""
    import json

    found = market_regime(bars) if bars is not None and len(bars) else None
    return {} if found is None else {"regime": found.label, "regime_json": json.dumps(found.as_dict())}


def session_regime_columns(config: Any, upto: Any) -> dict[str, Any]:
    """:func:`regime_columns` of the bars a session on ``config`` saw up to ``upto``, read without the
    network: the sample or CSV data, or the bars cache for an exchange (``{}`` when it has none of them;
    :func:`workbench.fidelity.fidelity` fetches them and records the regime then)."""
    from workbench.data import load_bars
    from workbench.data.cache import BarCache

    if upto is None:  # it saw no bar
        return {}
    frames: dict[str, pd.DataFrame] = {}
    for symbol in config.symbols:
        if config.data.source == "ccxt":
            frame = BarCache().read(config.data.exchange, symbol, config.data.timeframe, config.start, upto)
        else:
            frame = load_bars(config.data, symbol, config.start, upto)
        if len(frame):
            frames[symbol] = frame
    return regime_columns(frames)


def regime_split(equity: pd.Series, trades: pd.DataFrame, bars: Bars, period: str = "1D", *,
                 initial: float | None = None) -> pd.DataFrame:
    """Performance per market regime: each ``period`` of the bars labelled by :func:`market_regime`
    (``unknown`` when too short), then per label the periods, the compounded return and P&L of
    ``equity`` over them (each period from the previous one's last value, the first from ``initial``,
    by default the first value), the trades entered in them
    and the closed ones' win rate. Rows in :data:`REGIMES` order, only labels that occur."""
    frames = {i: f for i, f in enumerate(_frames(bars, "bars"))}
    eq = equity.astype(float).dropna()
    starts = eq.index.floor(period)
    bounds = pd.DatetimeIndex(starts.unique())
    step = pd.Timedelta(period)
    label_of = {}
    for start in bounds:
        found = market_regime({i: f.loc[start:start + step - pd.Timedelta(1, "ns")] for i, f in frames.items()})
        label_of[start] = found.label if found is not None else "unknown"
    last = eq.groupby(starts).last()
    prev = last.shift(1)
    if len(prev):
        prev.iloc[0] = float(eq.iloc[0]) if initial is None else float(initial)
    per = pd.DataFrame({"label": [label_of[t] for t in last.index], "pnl": last - prev, "ret": last / prev - 1.0})
    entry = pd.to_datetime(trades["entry_time"], utc=True).dt.floor(period)
    trade_label = entry.map(label_of)
    rows = []
    for label in (*REGIMES, "unknown"):
        part = per[per["label"] == label]
        if not len(part):
            continue
        mine = trades[(trade_label == label).to_numpy()] if len(trades) else trades
        closed = mine[mine["status"] == "closed"] if len(mine) else mine
        rows.append({"regime": label, "periods": len(part), "return": float((1.0 + part["ret"]).prod() - 1.0),
                     "pnl": float(part["pnl"].sum()), "trades": len(mine),
                     "win_rate": float((closed["pnl"] > 0).mean()) if len(closed) else np.nan})
    return pd.DataFrame(rows, columns=["regime", "periods", "return", "pnl", "trades", "win_rate"]).set_index("regime")
