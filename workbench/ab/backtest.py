"""A/B in a backtest: every variant on the same bars, loaded once.

The bars and the kernel's per-bar arrays are built once (:func:`~workbench.backtest.runner.bars_for`,
:func:`~workbench.backtest.runner.kernel_inputs`), each distinct strategy-and-params pair's signals
are computed once (variants that differ only in risk, sizing or cost settings share them:
:class:`SharedInputs`), and each variant is run_backtest's own run on them
(:func:`~workbench.backtest.runner.run_frames`: the walk, the booking, the metrics), in parallel threads
while the next signals are computed: the walk, the booking and the metrics kernels release the GIL. So a
variant's result (``ABResult.results[name]``) is ``run_backtest(variant.config)``'s.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.ab.result import ABResult, judge
from workbench.ab.stats import Method
from workbench.ab.variants import Variant, make_variants
from workbench.backtest.result import BacktestResult
from workbench.backtest.runner import KernelInputs, bars_for, kernel_inputs, run_frames
from workbench.config import SessionConfig

__all__ = ["SharedInputs", "ab_backtest"]

Variants = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]


def ab_backtest(
    config: SessionConfig, variants: Variants, *, bars: Mapping[str, pd.DataFrame] | pd.DataFrame | None = None,
    period: str = "auto", confidence: float = 0.95, n_boot: int = 2000, seed: int | None = 0,
    method: Method = "stationary", block: int | None = None, save_to: Any = None, lanes: int | None = None,
) -> ABResult:
    """Backtest each variant of ``config`` (see :func:`workbench.ab.variants.make_variants`) on the same
    bars (``bars`` as for run_backtest, else loaded once from the config's data) and judge them
    (:func:`workbench.ab.result.judge`). ``save_to``: a Store to record each variant as a backtest session;
    ``lanes``: threads running variants (default numba's thread count, ``NUMBA_NUM_THREADS``)."""
    if not isinstance(config, SessionConfig):
        raise TypeError(f"ab_backtest takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    arms = make_variants(config, variants)
    frames = bars_for(config, bars)
    if config.legs:  # multi-strategy sessions: each leg has its own signals, nothing to share
        results = {arm.name: run_frames(arm.config, frames) for arm in arms}
    else:
        results = _run_parallel(arms, frames, SharedInputs.of(kernel_inputs(config, frames)), lanes)
    first = next(iter(results.values())).equity
    # one column per variant on one index, each the variant's own array (no copy: a year of minute bars
    # is 4 MB per variant, and stacking them cost more than the verdict)
    equity = pd.DataFrame({name: r.equity.to_numpy() for name, r in results.items()}, index=first.index, copy=False)
    metrics = pd.DataFrame({name: r.metrics for name, r in results.items()}).T
    v, used = judge(equity, config.initial_balance, period=period, confidence=confidence, n_boot=n_boot, seed=seed,
                    method=method, block=block)
    ids = {arm.name: save_to.save_backtest(arm.config, results[arm.name]) for arm in arms} if save_to else {}
    return ABResult(config, "backtest", arms, equity, metrics, v, used, results=results, session_ids=ids)


def _run_parallel(arms: list[Variant], frames: dict[str, pd.DataFrame], inputs: SharedInputs,
                  lanes: int | None) -> dict[str, BacktestResult]:
    """Each variant's run_frames on ``inputs`` in ``lanes`` threads; this thread computes each variant's
    signals (once per strategy and params) before handing it over, while the earlier ones run."""
    import numba

    import workbench.metrics.kernel  # noqa: F401 - imported whole before the threads: jit.kernels would hand a
    # thread the module while another thread is still executing its import

    pending: dict[str, Future[BacktestResult]] = {}
    with ThreadPoolExecutor(max(1, lanes or numba.get_num_threads()), thread_name_prefix="ab") as pool:
        for arm in arms:
            inputs.prepare(arm.config)
            pending[arm.name] = pool.submit(run_frames, arm.config, frames, None, inputs)
        return {name: f.result() for name, f in pending.items()}


@dataclass
class SharedInputs(KernelInputs):
    """:class:`~workbench.backtest.runner.KernelInputs` whose signals are computed once per strategy class
    and params and then shared (read only) by every run on them."""

    memo: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, inputs: KernelInputs) -> SharedInputs:
        return cls(inputs.symbols, inputs.frames, inputs.index, inputs.rows, inputs.arr)

    def prepare(self, config: SessionConfig) -> None:
        """Compute the signals a run of ``config`` will ask for, unless computed already."""
        from workbench.strategies import create

        strategy = create(config.strategy, config.params)
        self.signals(strategy)
        if config.direction != "long" and strategy.own_shorts:
            self.short_signals(strategy)

    def signals(self, strategy: Any, buy: np.ndarray | None = None,
                sell: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if buy is not None or sell is not None:  # written into the caller's arrays: not shared
            return super().signals(strategy, buy, sell)
        return self._shared("long", strategy, super().signals)

    def short_signals(self, strategy: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._shared("short", strategy, super().short_signals)

    def _shared(self, side: str, strategy: Any, make: Any) -> tuple[np.ndarray, np.ndarray]:
        kind = type(strategy)
        key = (side, f"{kind.__module__}.{kind.__qualname__}", json.dumps(strategy.p, sort_keys=True, default=str))
        if key not in self.memo:
            self.memo[key] = make(strategy)
        return self.memo[key]
