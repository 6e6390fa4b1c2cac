"""A/B in a backtest: every variant on the same bars, loaded once.

The bars and the kernel's per-bar arrays are built once (the sweep's
:func:`~workbench.backtest.runner.kernel_inputs`), each distinct strategy-and-params pair's signals
are computed once (variants that differ only in risk, sizing or cost settings share them), and the
variants' walks, bookings and metrics run in parallel GIL-free threads
(:class:`workbench.backtest.ab_kernel.Walker`) while the next signals are computed. A variant's full
result (``ABResult.results[name]``: trade and order logs, breaker, scaling steps) is built from its
walk's fills when first read, by run_backtest's own :func:`~workbench.backtest.result.build_result`, so
a variant's equity, metrics and logs equal ``run_backtest(variant.config)``'s. The metrics' tail figures
(:mod:`workbench.metrics.tail`) are computed when ``ABResult.metrics`` is first read.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from workbench.ab.result import ABResult, judge
from workbench.ab.stats import Method
from workbench.ab.variants import Variant, make_variants
from workbench.backtest.ab_kernel import VariantRun, Walker
from workbench.backtest.result import BacktestResult, build_result
from workbench.backtest.runner import KernelInputs, bars_for, breaker_trip, kernel_inputs, run_backtest
from workbench.config import SessionConfig
from workbench.metrics import METRIC_KEYS, infer_periods_per_year
from workbench.metrics.tail import tail_metrics

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
    if config.legs:  # multi-strategy sessions: each variant is run_backtest's own legs run
        done = {arm.name: run_backtest(arm.config, frames) for arm in arms}
        equity = pd.DataFrame({name: r.equity for name, r in done.items()})
        results: Mapping[str, BacktestResult] = done
        table = pd.DataFrame({k: r.metrics for k, r in done.items()}).T

        def metrics() -> pd.DataFrame:
            return table
    else:
        inputs = kernel_inputs(config, frames)
        values = np.empty((len(arms), len(inputs.index)))  # (variants, bars): pandas' own layout, rows written
        runs = _walk(arms, inputs, values)  # by the walks
        equity = pd.DataFrame(values.T, index=inputs.index.rename("time"), columns=list(runs), copy=False)
        results = _Results(arms, frames, inputs, runs)
        ppy = infer_periods_per_year(inputs.index)

        def metrics() -> pd.DataFrame:  # on first read: the tail figures cost ~5 ms a variant
            return _metrics_frame(arms, runs, ppy)
    v, used = judge(equity, config.initial_balance, period=period, confidence=confidence, n_boot=n_boot, seed=seed,
                    method=method, block=block)
    ids = {arm.name: save_to.save_backtest(arm.config, results[arm.name]) for arm in arms} if save_to else {}
    return ABResult(config, "backtest", arms, equity, metrics, v, used, results=results, session_ids=ids)


def _walk(arms: list[Variant], inputs: KernelInputs, values: np.ndarray) -> dict[str, VariantRun]:
    """Each variant's :class:`VariantRun` (its equity in its row of ``values``): signals once per strategy
    and params, walks in parallel."""
    from workbench.strategies import create

    signals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pending: dict[str, Future[VariantRun]] = {}
    ppy = infer_periods_per_year(inputs.index)
    with Walker(inputs.index, inputs.arr, inputs.close_filled(), ppy) as walker:
        for row, arm in zip(values, arms, strict=True):
            c = arm.config
            key = json.dumps([c.strategy, c.params], sort_keys=True, default=str)
            if key not in signals:
                signals[key] = inputs.signals(create(c.strategy, c.params))
            pending[arm.name] = walker.submit(c, *signals[key], row)
        return {name: f.result() for name, f in pending.items()}


def _metrics_frame(arms: list[Variant], runs: Mapping[str, VariantRun], ppy: float) -> pd.DataFrame:
    """One row per variant: metrics_from_arrays' dict (the kernel's metrics, then the tail figures, computed
    in parallel threads)."""
    import numba

    with ThreadPoolExecutor(numba.get_num_threads()) as pool:  # NumPy's sorts and loops release the GIL
        tails = [pool.submit(tail_metrics, runs[a.name].value, float(a.config.initial_balance), ppy) for a in arms]
    rows = {}
    for arm, tail in zip(arms, tails, strict=True):
        row: dict[str, float] = dict(zip(METRIC_KEYS, runs[arm.name].metrics.tolist()))
        row["trade_count"] = int(row["trade_count"])
        row.update(tail.result())
        rows[arm.name] = row
    return pd.DataFrame(rows).T


class _Results(Mapping[str, BacktestResult]):
    """Variant name -> its BacktestResult, built from its walk's fills on first read (as run_backtest builds it)."""

    def __init__(self, arms: list[Variant], frames: dict[str, pd.DataFrame], inputs: KernelInputs,
                 runs: Mapping[str, VariantRun]):
        self.configs = {arm.name: arm.config for arm in arms}
        self.frames, self.inputs, self.runs = frames, inputs, runs
        self.built: dict[str, BacktestResult] = {}

    def __getitem__(self, name: str) -> BacktestResult:
        if name not in self.built:
            run, inputs = self.runs[name], self.inputs
            res = build_result(self.configs[name], self.frames, inputs.index, run.fills, inputs.close_filled())
            res.breaker = breaker_trip(inputs.index, run.trip)
            self.built[name] = res
        return self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)
