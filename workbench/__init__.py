"""workbench: research and operations workbench for trading sessions.

``workbench.backtest(config)``, ``workbench.sweep(config, grid)`` and ``workbench.ui`` load on
first use, so importing the package stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from workbench.config import ConfigError, SessionConfig, make_config  # noqa: E402

__all__ = ["ConfigError", "SessionConfig", "clone", "make_config", "promote", "suggest_allocations", "sweep",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name == "sweep":
        from workbench.backtest.sweep import sweep

        return sweep
    if name == "suggest_allocations":  # leg allocations from a portfolio optimizer, as a suggestion
        from workbench.backtest.allocate import suggest_allocations

        return suggest_allocations
    if name in ("clone", "promote"):  # a new session from an existing one, lineage recorded
        from workbench import lineage

        return getattr(lineage, name)
    if name == "fidelity":  # the fidelity twin of a paper or live session (workbench.twin)
        from workbench.twin import fidelity

        return fidelity
    if name in ("backtest", "ui", "engine", "store", "data", "strategies", "reports"):
        import importlib

        return importlib.import_module(f"workbench.{name}")
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
