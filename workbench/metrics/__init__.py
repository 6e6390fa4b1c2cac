"""The one metrics module: backtests, live sessions and reports all compute their numbers here.

Inputs are an equity curve (account value per period, indexed by time) and a trade log with
the columns of ``TRADE_COLUMNS``. Conventions:

* Per-period returns: ``r[0] = equity[0] / initial_balance - 1``, then ``equity[t] / equity[t-1] - 1``
  (as vectorbt's ``Portfolio.returns``). Annualization uses ``periods_per_year``, inferred from the
  median spacing of the equity index over a 365-day year (crypto trades every day).
* Drawdowns, VaR and expected shortfall are positive fractions of loss (0.12 = 12 %). The kernel's
  VaR/ES are per bar; :mod:`workbench.metrics.tail` adds them over a day (the ``*_1d`` keys).
* A ratio whose denominator is zero is ``inf`` (or ``-inf``) when its numerator is non-zero and
  NaN when both are zero: a profit factor with wins and no losses is ``float('inf')``.
* Anything undefined for the data given (no trades, a single period, no time index) is NaN.

Each metric is defined once, in the numba kernel :func:`workbench.metrics.kernel.metrics_nb`
(the sweeps call it per combination): :func:`compute_metrics` checks a frame and passes its arrays,
:func:`metrics_from_arrays` (run_backtest's path) takes the arrays directly. The kernel module is
loaded on first use (:func:`metrics_kernel`): a process that has not loaded numba (a dashboard) runs
the same source interpreted. The trade schema
(``TRADE_COLUMNS``) is :mod:`workbench.domain`'s, re-exported here.
"""
from __future__ import annotations

import math
from numbers import Real
from types import ModuleType

import numpy as np
import pandas as pd

from workbench.domain import EXIT_REASONS, TRADE_COLUMNS, TRADE_STATUSES
from workbench.jit import interpreted, kernels
from workbench.metrics.tail import TAIL_KEYS, tail_metrics, tail_risk

__all__ = [
    "EXIT_REASONS", "METRIC_LABELS", "TRADE_COLUMNS", "TRADE_STATUSES", "compute_metrics", "drawdown_series",
    "empty_trades", "format_metric", "infer_periods_per_year", "metrics_from_arrays", "metrics_kernel",
    "monthly_returns", "period_returns", "tail_risk",
]


METRIC_KEYS: tuple[str, ...] = (
    "pnl", "final_equity", "total_return", "annualized_return", "volatility", "sharpe_ratio", "sortino_ratio",
    "max_drawdown", "value_at_risk", "expected_shortfall", "calmar_ratio", "win_rate", "profit_factor",
    "avg_win", "avg_loss", "risk_reward", "trade_count", "trades_per_day", "avg_trade_duration_hours",
    "exposure", "best_trade", "worst_trade",
)  # metrics_nb's output, in order (the kernel imports it)
_MONEY, _PCT, _RATIO = "{:,.2f}", "{:.2%}", "{:.2f}"
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "pnl": ("P&L", _MONEY),
    "final_equity": ("Final Equity", _MONEY),
    "total_return": ("Total Return", _PCT),
    "annualized_return": ("Annualized Return", _PCT),
    "volatility": ("Volatility (ann.)", _PCT),
    "sharpe_ratio": ("Sharpe Ratio", _RATIO),
    "sortino_ratio": ("Sortino Ratio", _RATIO),
    "max_drawdown": ("Max Drawdown", _PCT),
    "value_at_risk": ("VaR per bar (95 %)", _PCT),
    "expected_shortfall": ("ES per bar (95 %)", _PCT),
    "calmar_ratio": ("Calmar Ratio", _RATIO),
    "win_rate": ("Win Rate", _PCT),
    "profit_factor": ("Profit Factor", _RATIO),
    "avg_win": ("Average Win", _MONEY),
    "avg_loss": ("Average Loss", _MONEY),
    "risk_reward": ("Risk/Reward", _RATIO),
    "trade_count": ("Trades", "{:,.0f}"),
    "trades_per_day": ("Trades per Day", _RATIO),
    "avg_trade_duration_hours": ("Avg Trade Duration (h)", "{:,.1f}"),
    "exposure": ("Exposure", _PCT),
    "best_trade": ("Best Trade", _PCT),
    "worst_trade": ("Worst Trade", _PCT),
    # workbench.metrics.tail: over a day, the figures a person reads as "how much can I lose in a day"
    "value_at_risk_1d": ("VaR (95 %, 1 day)", _PCT),
    "expected_shortfall_1d": ("ES (95 %, 1 day)", _PCT),
    "value_at_risk_1d_cf": ("VaR Cornish-Fisher (95 %, 1 day)", _PCT),
    "expected_shortfall_1d_cf": ("ES Cornish-Fisher (95 %, 1 day)", _PCT),
}
if tuple(METRIC_LABELS) != METRIC_KEYS + TAIL_KEYS:  # one list of metrics: the kernel's, then the tail's
    raise ImportError("METRIC_LABELS must label exactly metrics_nb.METRIC_KEYS then tail.TAIL_KEYS, in order")

_REQUIRED_TRADE_COLUMNS = ("entry_time", "exit_time", "pnl", "return_pct", "duration", "status")
_YEAR = pd.Timedelta(days=365)


def empty_trades() -> pd.DataFrame:
    """A trade log with no rows and the ``TRADE_COLUMNS`` schema and dtypes."""
    dtypes = {
        "symbol": "object", "entry_time": "datetime64[ns, UTC]", "exit_time": "datetime64[ns, UTC]",
        "duration": "timedelta64[ns]", "exit_reason": "object", "status": "object", "side": "object",
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in TRADE_COLUMNS})


def format_metric(key: str, value: float) -> str:
    """``value`` formatted with the hint from ``METRIC_LABELS``; NaN shows as "n/a", inf as "∞"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return METRIC_LABELS[key][1].format(value)


def infer_periods_per_year(index: pd.Index) -> float:
    """Periods in a 365-day year from the median spacing of a DatetimeIndex; NaN if not inferable."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return float("nan")
    i8 = _ns(index)
    lo, hi = metrics_kernel()._step_range_nb(i8)
    spacing = float(lo) if lo == hi else float(np.median(np.diff(i8)))  # evenly spaced: the median, no partition
    if spacing <= 0:
        raise ValueError("equity index must be increasing in time (sort it and drop duplicate timestamps)")
    return _YEAR.value / spacing


def period_returns(equity: pd.Series, initial_balance: float) -> pd.Series:
    """Per-period returns; the first period is measured against ``initial_balance``."""
    eq = _check_equity(equity)
    _check_balance(initial_balance)
    return pd.Series(_returns(eq.to_numpy(), initial_balance), index=eq.index, name="returns")


def drawdown_series(equity: pd.Series, initial_balance: float | None = None) -> pd.Series:
    """Fraction below the running peak at each period (0.12 = 12 % below); ``initial_balance``,
    when given, counts as the first peak."""
    v = _check_equity(equity).to_numpy()
    peak = np.maximum.accumulate(v)
    if initial_balance is not None:
        _check_balance(initial_balance)
        peak = np.maximum(peak, initial_balance)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (peak - v) / peak, np.nan)
    return pd.Series(dd, index=equity.index, name="drawdown")


def monthly_returns(equity: pd.Series, initial_balance: float | None = None) -> pd.DataFrame:
    """Compounded return of each calendar month as a year x month (1-12) table, for a heatmap.
    The first month is measured from ``initial_balance`` if given, else from the first equity point."""
    eq = _check_equity(equity)
    if not isinstance(eq.index, pd.DatetimeIndex):
        raise ValueError("monthly_returns needs equity indexed by a DatetimeIndex (timestamps of each point)")
    month_end = eq.resample("ME").last().dropna()
    prev = month_end.shift(1)
    if len(prev):
        prev.iloc[0] = eq.iloc[0] if initial_balance is None else _check_balance(initial_balance)
    ret = month_end / prev - 1.0
    table = (
        pd.DataFrame({"year": ret.index.year, "month": ret.index.month, "ret": ret.to_numpy()})
        .pivot(index="year", columns="month", values="ret")
        .reindex(columns=range(1, 13))
    )
    table.columns.name = "month"
    return table


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame | None,
    initial_balance: float,
    periods_per_year: float | None = None,
) -> dict[str, float]:
    """Every performance, risk and trade metric (keys of ``METRIC_LABELS``) from an equity curve
    and a trade log; see the module docstring for conventions. The numbers are those of the one
    metrics kernel, :func:`workbench.metrics.kernel.metrics_nb` (also the sweeps')."""
    eq = _check_equity(equity)
    _check_balance(initial_balance)
    tr = _check_trades(trades)
    if periods_per_year is None:
        ppy = infer_periods_per_year(eq.index)
    elif isinstance(periods_per_year, Real) and math.isfinite(periods_per_year) and periods_per_year > 0:
        ppy = float(periods_per_year)
    else:
        raise ValueError(f"periods_per_year must be a positive number (got {periods_per_year!r}), or None to infer it")
    start, end = _trade_rows(eq.index, tr)
    d = pd.to_timedelta(tr["duration"]).to_numpy(dtype="timedelta64[ns]")
    duration = np.where(np.isnat(d), np.nan, d.view(np.int64).astype(np.float64))
    return metrics_from_arrays(
        eq.to_numpy(), float(initial_balance), ppy, start, end, tr["pnl"].to_numpy(dtype=float),
        tr["return_pct"].to_numpy(dtype=float), duration, (tr["status"] == "closed").to_numpy(dtype=bool),
    )


def metrics_from_arrays(
    equity: np.ndarray, initial_balance: float, periods_per_year: float, start: np.ndarray, end: np.ndarray,
    pnl: np.ndarray, return_pct: np.ndarray, duration_ns: np.ndarray, closed: np.ndarray,
) -> dict[str, float]:
    """:func:`compute_metrics` from arrays, checked already: equity per period, and per trade the
    first row it is open (``start``; -1 if not placeable), the first row it no longer is (``end``,
    ``len(equity)`` while open), pnl, return_pct, holding time in ns (NaN unknown) and status."""
    n = len(equity)
    out = metrics_kernel().metrics_nb(
        np.ascontiguousarray(equity, dtype=np.float64), float(initial_balance), float(periods_per_year),
        np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64), np.asarray(pnl, dtype=np.float64),
        np.asarray(return_pct, dtype=np.float64), np.asarray(duration_ns, dtype=np.float64),
        np.asarray(closed, dtype=np.bool_), np.empty((3, n)),
    )
    metrics = dict(zip(METRIC_KEYS, out.tolist()))
    metrics["trade_count"] = int(metrics["trade_count"])
    metrics.update(tail_metrics(equity, initial_balance, periods_per_year))
    return metrics


def metrics_kernel() -> ModuleType:
    """The metrics kernel: :mod:`workbench.metrics.kernel` compiled by numba once numba is loaded in this
    process, else the same source run by the interpreter (:func:`interpreted_kernel`). A dashboard kernel
    shows a running session's metrics without loading numba (~140 MB and ~1 s); its curves are short."""
    return kernels("workbench.metrics.kernel")


def interpreted_kernel() -> ModuleType:
    """:mod:`workbench.metrics.kernel`'s source executed with ``numba.njit`` a no-op: the same definitions,
    run by Python and NumPy, with no numba import (a few ms for 10,000 points, ~1 s for 500,000)."""
    return interpreted("workbench.metrics.kernel")


def _returns(v: np.ndarray, initial_balance: float) -> np.ndarray:
    prev = np.empty_like(v)
    if len(v):
        prev[0] = initial_balance
        prev[1:] = v[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev != 0, v / prev - 1.0, 0.0)  # a wiped-out account stays at 0 %



def _trade_rows(index: pd.Index, trades: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per trade, the rows of ``index`` it is open in: entry_time <= t < exit_time (open trades: to
    the end) as (start, end) positions; start -1 when the index has no times to place them on."""
    n, k = len(index), len(trades)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if not isinstance(index, pd.DatetimeIndex) or n == 0:
        return np.full(k, -1, dtype=np.int64), np.full(k, -1, dtype=np.int64)
    entry = _times_like(trades["entry_time"], index)
    exit_ = _times_like(trades["exit_time"], index)
    times = _ns(index)
    start = times.searchsorted(_ns(entry), side="left")
    end = np.where(exit_.isna(), n, times.searchsorted(_ns(exit_), side="left"))
    return start.astype(np.int64), end.astype(np.int64)


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (no copy when the index is in ns already)."""
    return index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8


def _times_like(values: pd.Series, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    t = pd.DatetimeIndex(pd.to_datetime(values))
    if index.tz is not None and t.tz is None:
        return t.tz_localize(index.tz)
    if index.tz is None and t.tz is not None:
        return t.tz_convert("UTC").tz_localize(None)
    return t


def _check_equity(equity: pd.Series) -> pd.Series:
    if not isinstance(equity, pd.Series):
        raise ValueError(
            f"equity must be a pandas Series of account values indexed by time (got {type(equity).__name__})"
        )
    try:
        eq = equity.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"equity must hold numbers (got dtype {equity.dtype})") from None
    bad = ~np.isfinite(eq.to_numpy())
    if bad.any():
        raise ValueError(
            f"equity has {int(bad.sum())} NaN/inf values (first at {eq.index[bad.argmax()]!r}); "
            "forward-fill or drop them first"
        )
    return eq


def _check_balance(initial_balance: float) -> float:
    ok = isinstance(initial_balance, Real) and not isinstance(initial_balance, bool)
    if not ok or not math.isfinite(initial_balance) or initial_balance <= 0:
        raise ValueError(f"initial_balance must be a positive number (got {initial_balance!r})")
    return float(initial_balance)


def _check_trades(trades: pd.DataFrame | None) -> pd.DataFrame:
    if trades is None:
        return empty_trades()
    if not isinstance(trades, pd.DataFrame):
        raise ValueError(f"trades must be a DataFrame with the TRADE_COLUMNS schema (got {type(trades).__name__})")
    missing = [c for c in _REQUIRED_TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise ValueError(f"trades lack column(s) {', '.join(missing)}; the schema is TRADE_COLUMNS: {TRADE_COLUMNS}")
    unknown = set(trades["status"].unique()) - set(TRADE_STATUSES)
    if unknown:
        raise ValueError(f"trade status must be one of {TRADE_STATUSES} (got {sorted(map(str, unknown))})")
    return trades
