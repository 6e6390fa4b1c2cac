"""An A/B's outcome, whatever ran it: variants' equity curves and metrics side by side, and the verdict
on their returns (daily returns once the run spans :data:`DAILY_AFTER`, else per bar, or per a
coarser period for long runs of short bars: :func:`verdict_returns`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
            eq = eq.resample(period).last().dropna(how="all")
        except ValueError as e:
            raise ValueError(f"period must be 'auto', 'bar' or a pandas frequency like '1D' (got {period!r})") from e
    if eq.isna().to_numpy().any():  # a variant without a point at some time: its last value holds
        eq = eq.ffill().bfill()
    out = pd.DataFrame({c: period_returns(eq[c], initial_balance) for c in eq.columns}, index=eq.index)
    return out, period


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
    results: dict[str, Any] = field(default_factory=dict, repr=False)
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
