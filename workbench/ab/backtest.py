"""A/B in a backtest: every variant on the same bars, loaded once.

The bars and the kernel's per-bar arrays are built once (the sweep's
:func:`~workbench.backtest.runner.kernel_inputs`), each distinct strategy-and-params pair's signals
are computed once (variants that differ only in risk, sizing or cost settings share them), then each
variant runs run_backtest's own walk and result building, so a variant's equity and metrics equal
``run_backtest(variant.config)``'s.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench.ab.result import ABResult, judge
from workbench.ab.stats import Method
from workbench.ab.variants import make_variants
from workbench.backtest.result import BacktestResult, build_result
from workbench.backtest.runner import bars_for, breaker_trip, kernel_inputs, walk
from workbench.config import SessionConfig

__all__ = ["ab_backtest"]

Variants = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]


def ab_backtest(
    config: SessionConfig, variants: Variants, *, bars: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
    period: str = "auto", confidence: float = 0.95, n_boot: int = 2000, seed: int | None = 0,
    method: Method = "stationary", block: int | None = None, save_to: Any = None,
) -> ABResult:
    """Backtest each variant of ``config`` (see :func:`workbench.ab.variants.make_variants`) on the same
    bars (``bars`` as for run_backtest, else loaded once from the config's data) and judge them
    (:func:`workbench.ab.result.judge`). ``save_to``: a Store to record each variant as a backtest session."""
    if not isinstance(config, SessionConfig):
        raise TypeError(f"ab_backtest takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    arms = make_variants(config, variants)
    frames = bars_for(config, bars)
    inputs = kernel_inputs(config, frames)
    close = inputs.close_filled()
    from workbench.strategies import create

    signals: dict[str, tuple[Any, Any]] = {}
    results: dict[str, BacktestResult] = {}
    for arm in arms:
        c = arm.config
        key = json.dumps([c.strategy, c.params], sort_keys=True, default=str)
        if key not in signals:
            signals[key] = inputs.signals(create(c.strategy, c.params))
        fills, trip = walk(c, inputs.index, inputs.arr, *signals[key])
        res = build_result(c, frames, inputs.index, fills, close)
        res.breaker = breaker_trip(inputs.index, trip)
        results[arm.name] = res
    first = next(iter(results.values())).equity
    values = np.vstack([r.equity.to_numpy() for r in results.values()])  # (variants, bars): pandas' own layout
    equity = pd.DataFrame(values.T, index=first.index, columns=list(results), copy=False)  # one index, no copy
    metrics = pd.DataFrame({name: r.metrics for name, r in results.items()}).T
    v, used = judge(equity, config.initial_balance, period=period, confidence=confidence, n_boot=n_boot, seed=seed,
                    method=method, block=block)
    ids = {arm.name: save_to.save_backtest(arm.config, results[arm.name]) for arm in arms} if save_to else {}
    return ABResult(config, "backtest", arms, equity, metrics, v, used, results=dict(results), session_ids=ids)
