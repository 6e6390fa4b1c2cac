"""Backtests: ``workbench.backtest(config)`` runs one (the module itself is callable).

:func:`run_backtest` loads bars, computes the strategy's signals, executes them with the shared
execution semantics and returns a :class:`BacktestResult` (its vectorbt portfolio is built on
first access). numba's cache directory is set here, before any kernel is decorated, so the
kernels of a fresh process load from the shared on-disk cache (see :mod:`.warmup`).
"""
from __future__ import annotations

import sys
import types
from typing import Any

from workbench.backtest.warmup import configure_numba_cache

configure_numba_cache()

from workbench.backtest.result import BacktestResult  # noqa: E402
from workbench.backtest.runner import run_backtest  # noqa: E402

__all__ = ["BacktestResult", "run_backtest"]


class _CallableModule(types.ModuleType):
    def __call__(self, config: Any, bars: Any = None, *, progress: bool = False) -> BacktestResult:
        """``workbench.backtest(config)`` is ``run_backtest(config)``."""
        return run_backtest(config, bars, progress=progress)


sys.modules[__name__].__class__ = _CallableModule
