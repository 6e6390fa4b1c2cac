"""Backtests: ``workbench.backtest(config)`` runs one (the module itself is callable).

:func:`run_backtest` loads bars, computes the strategy's signals, executes them with the shared
execution semantics and returns a :class:`BacktestResult` holding the vectorbt portfolio.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from workbench.backtest.result import BacktestResult
from workbench.backtest.runner import run_backtest

__all__ = ["BacktestResult", "run_backtest"]


class _CallableModule(types.ModuleType):
    def __call__(self, config: Any, bars: Any = None, *, progress: bool = False) -> BacktestResult:
        """``workbench.backtest(config)`` is ``run_backtest(config)``."""
        return run_backtest(config, bars, progress=progress)


sys.modules[__name__].__class__ = _CallableModule
