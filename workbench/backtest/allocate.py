"""Leg allocations suggested by a portfolio optimizer (PyPortfolioOpt) on the legs' backtest returns.

:func:`suggest_allocations` backtests each leg alone (its strategy on its symbols, all the capital),
takes the returns of its equity per ``freq`` period and proposes allocations: ``hrp`` (hierarchical
risk parity), ``max_sharpe`` or ``min_volatility``, scaled to the legs' current total. The result is a
suggestion: :meth:`AllocationSuggestion.accept` returns a NEW config with them; nothing is applied silently.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import SessionConfig

__all__ = ["METHODS", "AllocationSuggestion", "suggest_allocations", "weights_from_returns", "leg_returns"]

METHODS = ("hrp", "max_sharpe", "min_volatility")
MIN_PERIODS = 5


@dataclass
class AllocationSuggestion:
    """Proposed ``allocations`` (leg -> fraction of capital) by ``method``, beside the ``current`` ones, with
    the optimizer's ``expected`` annual return, volatility and Sharpe ratio of the legs' mix."""

    config: SessionConfig
    method: str
    allocations: dict[str, float]
    current: dict[str, float]
    expected: dict[str, float] = field(default_factory=dict)
    returns: pd.DataFrame | None = field(default=None, repr=False)

    def accept(self) -> SessionConfig:
        """A new config with the suggested allocations (legs suggested 0 are left out)."""
        legs = [{**leg.model_dump(), "allocation": self.allocations[leg.name]}
                for leg in self.config.legs if self.allocations[leg.name] > 0]
        return self.config.replace(legs=legs)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "allocations": self.allocations, "current": self.current,
                "expected": self.expected}

    def frame(self) -> pd.DataFrame:
        """Current and suggested allocation per leg."""
        return pd.DataFrame({"current": self.current, "suggested": self.allocations}).rename_axis("leg")


def leg_returns(config: SessionConfig, bars: Mapping[str, pd.DataFrame] | None = None,
                freq: str = "1D") -> pd.DataFrame:
    """Each leg backtested alone with all the capital: its equity's returns per ``freq`` period (period x leg)."""
    from workbench.backtest.runner import bars_for, run_backtest

    frames = bars_for(config, bars)
    out = {}
    for leg in config.legs:
        alone = config.replace(legs=[{**leg.model_dump(), "allocation": 1.0}])
        equity = run_backtest(alone, {s: frames[s] for s in leg.symbols}).equity
        out[leg.name] = equity.resample(freq).last().ffill().pct_change().iloc[1:]
    return pd.DataFrame(out)


def weights_from_returns(returns: pd.DataFrame, method: str = "hrp", periods_per_year: float = 365.0
                         ) -> tuple[dict[str, float], dict[str, float]]:
    """Optimizer weights (column -> weight, summing to 1) of ``returns`` (period x leg) by ``method``, and the
    expected annual return, volatility and Sharpe ratio of that mix."""
    if method not in METHODS:
        raise ValueError(f"unknown allocation method {method!r}; use one of {', '.join(METHODS)}")
    returns = returns.dropna()
    if len(returns) < MIN_PERIODS or returns.shape[1] < 2:
        raise ValueError(f"need at least {MIN_PERIODS} periods of returns of at least 2 legs to suggest allocations "
                         f"(got {len(returns)} x {returns.shape[1]}): backtest a longer range or use a shorter freq")
    from pypfopt import EfficientFrontier, HRPOpt, expected_returns, risk_models  # type: ignore[import-untyped]

    opt: Any
    if method == "hrp":
        opt = HRPOpt(returns)
        opt.optimize()
        perf = opt.portfolio_performance(frequency=periods_per_year)
    else:
        mu = expected_returns.mean_historical_return(returns, returns_data=True, frequency=periods_per_year,
                                                     compounding=False)
        cov = risk_models.sample_cov(returns, returns_data=True, frequency=periods_per_year)
        opt = EfficientFrontier(mu, cov)
        try:
            opt.max_sharpe() if method == "max_sharpe" else opt.min_volatility()
        except Exception as e:  # pypfopt: no leg beats the risk-free rate, or the solver failed
            raise ValueError(f"{method} found no allocation ({e}); try method='hrp', which needs no expected "
                             "returns") from None
        perf = opt.portfolio_performance()
    weights = {str(k): float(v) for k, v in opt.clean_weights().items()}
    return weights, dict(zip(("annual_return", "annual_volatility", "sharpe_ratio"), map(float, perf), strict=True))


def suggest_allocations(config: SessionConfig, bars: Mapping[str, pd.DataFrame] | None = None, *,
                        method: str = "hrp", freq: str = "1D") -> AllocationSuggestion:
    """Suggest the legs' allocations of ``config`` by ``method`` (:data:`METHODS`) from their backtests on
    ``bars`` (default: loaded for config.start-end); the suggestion keeps the legs' current total."""
    if not isinstance(config, SessionConfig) or len(config.legs) < 2:
        raise ValueError("suggest_allocations needs a SessionConfig with at least two legs (config.legs)")
    if method not in METHODS:
        raise ValueError(f"unknown allocation method {method!r}; use one of {', '.join(METHODS)}")
    returns = leg_returns(config, bars, freq)
    ppy = pd.Timedelta(days=365) / pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    weights, expected = weights_from_returns(returns, method, ppy)
    current = {leg.name: float(leg.allocation) for leg in config.legs}
    budget = sum(current.values())
    allocations = {k: float(np.floor(w * budget * 1e6) / 1e6) for k, w in weights.items()}  # sum <= budget
    return AllocationSuggestion(config, method, allocations, current, expected, returns)
