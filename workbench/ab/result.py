"""An A/B's outcome, whatever ran it: variants' equity curves and metrics side by side, and the verdict
on their returns (daily returns once the run spans :data:`DAILY_AFTER`, else per bar, or per a
coarser period for long runs of short bars: :func:`verdict_returns`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.ab.stats import Method, Verdict, verdict
from workbench.ab.variants import Variant
from workbench.config import SessionConfig
from workbench.metrics import period_returns

__all__ = ["ABResult", "COARSER", "DAILY_AFTER", "MAX_PERIODS", "judge", "verdict_returns"]

#: runs at least this long are judged on daily returns (per-bar returns of minute bars are mostly
#: zeros and strongly autocorrelated; a day is the period the Sharpe statistics expect)
DAILY_AFTER = pd.Timedelta(days=30)
#: shorter runs are judged per bar up to this many bars, else on the finest of :data:`COARSER` that
#: gives at most this many periods (the bootstrap's cost grows with the periods)
MAX_PERIODS = 2000
COARSER = ("5min", "15min", "1h", "4h")


def verdict_returns(equity: pd.DataFrame, initial_balance: float, period: str = "auto") -> tuple[pd.DataFrame, str]:
    """(returns per period, one column per variant; the period used) of equity curves on one index.
    ``period``: "bar", a pandas frequency such as "1D" or "1h", or "auto": daily from
    :data:`DAILY_AFTER`, else per bar up to :data:`MAX_PERIODS` bars, else the finest of
    :data:`COARSER` that gives at most that many periods."""
    if equity.empty:
        raise ValueError("no equity points yet: the variants have not run a bar")
    if period == "auto":
        span = equity.index[-1] - equity.index[0]
        fits = [f for f in COARSER if span / pd.Timedelta(f) <= MAX_PERIODS]
        period = "1D" if span >= DAILY_AFTER else "bar" if len(equity) <= MAX_PERIODS else fits[0] if fits else "1D"
    eq = equity
    if period != "bar":
        try:
            eq = _last_per_period(eq, period)
        except ValueError as e:
            raise ValueError(f"period must be 'auto', 'bar' or a pandas frequency like '1D' (got {period!r})") from e
    if eq.isna().to_numpy().any():  # a variant without a point at some time: its last value holds
        eq = eq.ffill().bfill()
    out = pd.DataFrame({c: period_returns(eq[c], initial_balance) for c in eq.columns}, index=eq.index)
    return out, period


def _last_per_period(equity: pd.DataFrame, period: str) -> pd.DataFrame:
    """``equity.resample(period).last().dropna(how="all")``. For an increasing UTC (or naive) index and a
    fixed period that divides a day (bins then start at multiples of it since the epoch, as pandas aligns
    them from midnight), each bin's last row is found by binary search of the bin edges, unless one of
    those rows has a NaN: a fraction of a millisecond for a year of minute bars, pandas ~5 ms."""
    idx = equity.index
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(period)).value
    except (ValueError, TypeError):
        step = 0
    fast = (isinstance(idx, pd.DatetimeIndex) and (idx.tz is None or str(idx.tz) == "UTC") and step > 0
            and _DAY % step == 0 and len(idx) > 1 and idx.is_monotonic_increasing)
    if not fast:
        return equity.resample(period).last().dropna(how="all")
    i8 = idx.as_unit("ns").asi8
    edges = np.arange(i8[0] // step, i8[-1] // step + 1) * step  # each bin's start (the index increases)
    last = np.searchsorted(i8, edges + step, side="left") - 1  # each bin's last row
    keep = np.r_[True, last[1:] > last[:-1]]  # bins with rows
    rows = np.column_stack([equity[c].to_numpy()[last[keep]] for c in equity.columns])  # no whole-frame copy
    if np.isnan(rows).any():  # pandas takes a column's last value that is not NaN
        return equity.resample(period).last().dropna(how="all")
    labels = pd.DatetimeIndex(edges[keep].view("M8[ns]"), name=idx.name)
    if idx.tz is not None:
        labels = labels.tz_localize("UTC")
    return pd.DataFrame(rows, index=labels.as_unit(idx.unit), columns=equity.columns)


_DAY = pd.Timedelta(days=1).value


def judge(equity: pd.DataFrame, initial_balance: float, *, period: str = "auto", confidence: float = 0.95,
          n_boot: int = 2000, seed: int | None = 0, method: Method = "stationary",
          block: int | None = None) -> tuple[Verdict, str]:
    """The :func:`~workbench.ab.stats.verdict` on the variants' returns per ``period`` (and the period)."""
    returns, used = verdict_returns(equity, initial_balance, period)
    v = verdict({c: returns[c].to_numpy() for c in returns.columns}, confidence=confidence, n_boot=n_boot,
                block=block, seed=seed, method=method)
    return v, used


@dataclass
class ABResult:
    """Variants run on one feed: ``equity`` (one column per variant), ``metrics`` (one row per variant,
    the usual metrics), the ``verdict`` on returns per ``period``; ``results`` the backtests' full
    results (backtest A/B) and ``session_ids`` the store's sessions (paper A/B, saved backtests);
    ``stopped``: variants stopped early, with why."""

    base: SessionConfig
    kind: str
    variants: list[Variant]
    equity: pd.DataFrame
    metrics: pd.DataFrame
    verdict: Verdict
    period: str
    results: Mapping[str, Any] = field(default_factory=dict, repr=False)
    session_ids: dict[str, str] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)

    @property
    def winner(self) -> str | None:
        return self.verdict.winner

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: per variant its changes, metrics and session id, and the verdict."""
        return {
            "kind": self.kind,
            "period": self.period,
            "variants": [{"name": v.name, "changes": v.changes, "params": v.config.params,
                          "session_id": self.session_ids.get(v.name), "stopped": self.stopped.get(v.name),
                          "metrics": {k: val for k, val in self.metrics.loc[v.name].items()}}
                         for v in self.variants],
            "verdict": self.verdict.to_dict(),
        }

    def summary(self) -> str:
        """The metrics side by side and the verdict, as text."""
        cols = [c for c in ("total_return", "sharpe_ratio", "max_drawdown", "win_rate", "trade_count")
                if c in self.metrics.columns]
        stats = pd.DataFrame(self.verdict.stats).T[["psr", "dsr", "min_track_record"]]
        table = self.metrics[cols].join(stats)
        lines = [f"A/B of {len(self.variants)} variants ({self.kind}, returns per {self.period}):",
                 table.to_string(float_format=lambda x: f"{x:.4g}")]
        lines += [f"  {name}: stopped early ({why})" for name, why in self.stopped.items()]
        lines.append(f"verdict: {self.verdict.text}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ABResult({self.kind}, {len(self.variants)} variants, winner={self.winner!r})"
