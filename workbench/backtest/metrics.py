"""The one metrics module: backtests, live sessions and reports all compute their numbers here.

Inputs are an equity curve (account value per period, indexed by time) and a trade log with
the columns of ``TRADE_COLUMNS``. Conventions:

* Per-period returns: ``r[0] = equity[0] / initial_balance - 1``, then ``equity[t] / equity[t-1] - 1``
  (as vectorbt's ``Portfolio.returns``). Annualization uses ``periods_per_year``, inferred from the
  median spacing of the equity index over a 365-day year (crypto trades every day).
* Drawdowns, VaR and expected shortfall are positive fractions of loss (0.12 = 12 %).
* A ratio whose denominator is zero is ``inf`` (or ``-inf``) when its numerator is non-zero and
  NaN when both are zero: a profit factor with wins and no losses is ``float('inf')``.
* Anything undefined for the data given (no trades, a single period, no time index) is NaN.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import pandas as pd
from numba import njit

from workbench.domain import EXIT_REASONS, TRADE_COLUMNS, TRADE_STATUSES


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
    "value_at_risk": ("Value at Risk (95 %)", _PCT),
    "expected_shortfall": ("Expected Shortfall (95 %)", _PCT),
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
}

_REQUIRED_TRADE_COLUMNS = ("entry_time", "exit_time", "pnl", "return_pct", "duration", "status")
_YEAR = pd.Timedelta(days=365)


def empty_trades() -> pd.DataFrame:
    """A trade log with no rows and the ``TRADE_COLUMNS`` schema and dtypes."""
    dtypes = {
        "symbol": "object", "entry_time": "datetime64[ns, UTC]", "exit_time": "datetime64[ns, UTC]",
        "duration": "timedelta64[ns]", "exit_reason": "object", "status": "object",
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
    lo, hi = _step_range_nb(i8)
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
    and a trade log; see the module docstring for conventions."""
    eq = _check_equity(equity)
    _check_balance(initial_balance)
    tr = _check_trades(trades)
    if periods_per_year is None:
        ppy = infer_periods_per_year(eq.index)
    elif isinstance(periods_per_year, Real) and math.isfinite(periods_per_year) and periods_per_year > 0:
        ppy = float(periods_per_year)
    else:
        raise ValueError(f"periods_per_year must be a positive number (got {periods_per_year!r}), or None to infer it")

    v = eq.to_numpy()
    n = len(v)
    final = float(v[-1]) if n else float(initial_balance)
    total_return = final / initial_balance - 1.0
    if n:
        r, neg_sq, max_dd = _returns_and_drawdown_nb(v, float(initial_balance))
    else:
        r, max_dd = _returns(v, initial_balance), float("nan")
        neg_sq = r
    nan = float("nan")

    with np.errstate(over="ignore", invalid="ignore"):
        growth = np.float64(max(final / initial_balance, 0.0))
        annualized = float(growth ** (ppy / n) - 1.0) if n else nan
    mean = float(r.mean()) if n else nan
    std = float(r.std(ddof=1)) if n >= 2 else nan
    downside = float(np.sqrt(np.mean(neg_sq))) if n >= 2 else nan  # neg_sq = np.minimum(r, 0.0) ** 2
    sqrt_ppy = math.sqrt(ppy) if math.isfinite(ppy) else nan
    if n:
        q, tail = _lower_tail(r, 0.05)
        var, es = 0.0 - q, 0.0 - float(tail.mean())  # 0.0 - x: no -0.0
    else:
        var = es = nan

    is_closed = (tr["status"] == "closed").to_numpy(dtype=bool)
    pnl = tr["pnl"].to_numpy(dtype=float)[is_closed]
    count = len(pnl)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    avg_win = float(wins.mean()) if len(wins) else nan
    avg_loss = float(losses.mean()) if len(losses) else nan
    span_days = n / ppy * 365.0 if n else nan
    rets = tr["return_pct"].to_numpy(dtype=float)[is_closed]

    return {
        "pnl": final - initial_balance,
        "final_equity": final,
        "total_return": total_return,
        "annualized_return": annualized,
        "volatility": std * sqrt_ppy,
        "sharpe_ratio": _ratio(mean, std) * sqrt_ppy,
        "sortino_ratio": _ratio(mean, downside) * sqrt_ppy,
        "max_drawdown": max_dd,
        "value_at_risk": var,
        "expected_shortfall": es,
        "calmar_ratio": _ratio(annualized, max_dd),
        "win_rate": len(wins) / count if count else nan,
        "profit_factor": _ratio(float(wins.sum()), -float(losses.sum())) if count else nan,
        "avg_win": avg_win,
        "avg_loss": avg_loss,
        "risk_reward": avg_win / abs(avg_loss) if len(losses) else nan,
        "trade_count": count,
        "trades_per_day": count / span_days if span_days > 0 else nan,
        "avg_trade_duration_hours": (
            float(tr["duration"][is_closed].mean() / pd.Timedelta(hours=1)) if count else nan
        ),
        "exposure": _exposure(eq.index, tr),
        "best_trade": float(rets.max()) if count else nan,
        "worst_trade": float(rets.min()) if count else nan,
    }


def _returns(v: np.ndarray, initial_balance: float) -> np.ndarray:
    prev = np.empty_like(v)
    if len(v):
        prev[0] = initial_balance
        prev[1:] = v[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev != 0, v / prev - 1.0, 0.0)  # a wiped-out account stays at 0 %


@njit(cache=True)
def _returns_and_drawdown_nb(v: np.ndarray, initial_balance: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(r, np.minimum(r, 0.0) ** 2, drawdown_series(v, initial_balance).max())`` with
    ``r = _returns(v, initial_balance)``, in one pass, the same numbers (the peak is >=
    initial_balance > 0; ``v`` is finite and not empty)."""
    n = len(v)
    r = np.empty(n)
    neg_sq = np.empty(n)
    prev = initial_balance
    peak = -np.inf
    worst = -np.inf
    for t in range(n):
        x = v[t]
        rt = x / prev - 1.0 if prev != 0.0 else 0.0
        r[t] = rt
        neg = rt if rt < 0.0 else 0.0
        neg_sq[t] = neg * neg
        prev = x
        if x > peak:
            peak = x
        pk = peak if peak > initial_balance else initial_balance
        dd = (pk - x) / pk
        if dd > worst:
            worst = dd
    return r, neg_sq, worst


@njit(cache=True)
def _step_range_nb(i8: np.ndarray) -> tuple[int, int]:
    """(smallest, largest) step between consecutive values (at least two values)."""
    lo = hi = i8[1] - i8[0]
    for t in range(2, len(i8)):
        d = i8[t] - i8[t - 1]
        if d < lo:
            lo = d
        elif d > hi:
            hi = d
    return lo, hi


_SMALL = 4096


def _lower_tail(r: np.ndarray, q: float) -> tuple[float, np.ndarray]:
    """``(np.quantile(r, q), r[r <= that])``, the same numbers (q < 0.5), with one small partition:
    the order statistics around the quantile are taken from the values below a threshold picked
    on a sample (all of ``r`` when the sample's threshold does not hold enough values)."""
    n = len(r)
    vi = np.float64(n - 1) * np.float64(q)  # numpy's "linear" method: virtual index (n - 1) q
    k = int(np.floor(vi))
    if n < _SMALL or k + 1 >= n:
        qv = float(np.quantile(r, q))
        return qv, r[r <= qv]
    sample = r[:: n // (_SMALL // 2)]
    j = min(len(sample) - 1, int(len(sample) * (q + 0.03)) + 8)
    threshold = np.partition(sample, j)[j]
    mask = r <= threshold
    below = r[mask] if np.count_nonzero(mask) >= k + 2 else r
    part = np.partition(below, [k, k + 1])
    a, b = part[k], part[k + 1]
    gamma = vi - np.float64(k)
    diff = b - a  # numpy's _lerp
    qv = float(b - diff * (1.0 - gamma)) if gamma >= 0.5 else float(a + diff * gamma)
    return qv, below[below <= qv]


def _ratio(num: float, den: float) -> float:
    """num/den; a zero denominator gives +-inf for a non-zero numerator, NaN for zero or NaN."""
    if math.isnan(num) or math.isnan(den):
        return float("nan")
    if den == 0:
        return math.copysign(float("inf"), num) if num != 0 else float("nan")
    return num / den


def _exposure(index: pd.Index, trades: pd.DataFrame) -> float:
    """Fraction of periods with a position open: entry_time <= t < exit_time (open trades: to the end)."""
    n = len(index)
    if trades.empty:
        return 0.0 if n else float("nan")
    if not isinstance(index, pd.DatetimeIndex) or n == 0:
        return float("nan")
    entry = _times_like(trades["entry_time"], index)
    exit_ = _times_like(trades["exit_time"], index)
    times = _ns(index)
    start = times.searchsorted(_ns(entry), side="left")
    end = np.where(exit_.isna(), n, times.searchsorted(_ns(exit_), side="left"))
    keep = end > start
    start, end = start[keep], end[keep]
    if not len(start):
        return 0.0
    order = np.argsort(start, kind="stable")  # periods covered = length of the union of [start, end)
    start, end = start[order], end[order]
    reach = np.maximum.accumulate(end)
    before = np.empty_like(reach)
    before[0], before[1:] = start[0], reach[:-1]
    covered = int(np.maximum(end - np.maximum(start, before), 0).sum())
    return covered / n


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
