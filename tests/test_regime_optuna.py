"""Model-based parameter search (Optuna TPE with pruning) on synthetic data: a suggestion, never applied."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from workbench.backtest.optimize import optimize  # noqa: E402
from workbench.backtest.sweep import sweep  # noqa: E402
from workbench.config import make_config  # noqa: E402


def cycles(n: int = 6000, period: int = 400, seed: int = 5) -> pd.DataFrame:
    """1m bars of slow cycles plus noise: a slow moving-average cross rides them, a fast one chops."""
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(0.0, 0.0006, n).cumsum() * 0.2
    close = 100.0 * np.exp(0.03 * np.sin(2 * np.pi * t / period) + noise)
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0002,
                         "low": np.minimum(open_, close) * 0.9998, "close": close, "volume": 1.0}, index=index)


def test_tpe_search_finds_a_top_grid_combination_and_only_suggests_it():
    bars = {"BTC/USDT": cycles()}
    config = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"])
    space = {"fast": (2, 40), "slow": (10, 160)}
    found = optimize(config, n_trials=40, metric="total_return", space=space, bars=bars, seed=1)
    grid = sweep(config, {"fast": list(range(2, 41, 2)), "slow": list(range(10, 161, 10))}, bars=bars,
                 metrics=["total_return"], progress=False).frame
    assert found.value >= grid["total_return"].quantile(0.9)  # as good as the best tenth of a 320-point grid
    again = sweep(config, {k: [v] for k, v in found.params.items() if k in space}, bars=bars,
                  metrics=["total_return"], progress=False).frame
    assert again["total_return"].iloc[0] == pytest.approx(found.value, rel=1e-9)  # the same kernel's number
    states = set(found.trials["state"])
    assert "COMPLETE" in states and "PRUNED" in states  # fast >= slow, or worse than the median early on
    assert config.params == {"fast": 5, "slow": 20}  # a suggestion: nothing applied
    accepted = found.config()
    assert accepted.params == found.params and accepted.symbols == config.symbols
    assert "accept with .config()" in repr(found)


def test_bad_search_inputs_say_what_to_give():
    config = make_config(strategy="sma_cross")
    with pytest.raises(ValueError, match="unknown metric 'sharpe'"):
        optimize(config, metric="sharpe")
    with pytest.raises(ValueError, match="has no param 'slowest'"):
        optimize(config, space={"slowest": (1, 2)})
