"""THE execution rules of docs/execution-semantics.md, once: time windows, sizing and caps, fill
price and slippage, fees, stops, the circuit breaker, the order rate, reason codes and the
cash/position ledger of the vectorized walk.

* :mod:`~workbench.execution.nb`: the rules as numba kernels;
* :mod:`~workbench.execution.simulate`: the vectorized walk over a whole backtest (the ledger);
* :mod:`~workbench.execution.rules`: thin wrappers for one order or one bar (the session engine);
* :mod:`~workbench.execution.codes`: the codes and their names.

Backtests, sweeps and sessions all call these; nothing else defines an execution rule.
"""
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562), so that importing the package or
    # its numba-free parts (e.g. :mod:`~workbench.execution.ledger` in a dashboard) does not load numba
    from workbench.execution.nb import MAX_SELL_SLIPPAGE, MIN_QUANTITY
    from workbench.execution.rules import (
        CASH,
        CLOSE_ALL,
        CONCENTRATION,
        END,
        ENTRY,
        EVENT,
        LIQUIDATION,
        MAX_POSITION,
        MAX_SHARE,
        MIN_VOLUME,
        PORTFOLIO_LIMIT,
        SIGNAL,
        STOP_LOSS,
        TAKE_PROFIT,
        TIME_LIMIT,
        TOO_SMALL,
        TRAILING_STOP,
        Bar,
        affordable_quantity,
        breaker_breach,
        cap_entry,
        day_bars,
        entry_allowed,
        entry_allowed_at,
        entry_quantity,
        event_flatten,
        fee,
        fill_price,
        flatten_at,
        position_exit,
        reserved_cash,
        slippage_cost,
        slippage_fraction,
        stop_exit,
        target_quantity,
        time_block,
        wall_clock_ns,
        warm_up,
    )

_NB = ("MAX_SELL_SLIPPAGE", "MIN_QUANTITY")


def __getattr__(name: str) -> Any:
    """``workbench.execution.NAME`` for the names of ``__all__``, imported from its module on first use."""
    if name not in __all__:
        raise AttributeError(f"module 'workbench.execution' has no attribute {name!r}")
    value = getattr(importlib.import_module("workbench.execution." + ("nb" if name in _NB else "rules")), name)
    globals()[name] = value
    return value


__all__ = [
    "Bar", "affordable_quantity", "breaker_breach", "cap_entry", "day_bars", "entry_allowed", "entry_allowed_at",
    "event_flatten", "flatten_at",
    "entry_quantity", "fee", "fill_price", "reserved_cash", "slippage_cost", "slippage_fraction", "stop_exit",
    "target_quantity", "time_block",
    "wall_clock_ns", "warm_up", "MIN_QUANTITY", "MAX_SELL_SLIPPAGE", "ENTRY", "SIGNAL", "STOP_LOSS",
    "TAKE_PROFIT", "TRAILING_STOP", "TIME_LIMIT", "CLOSE_ALL", "END", "EVENT", "LIQUIDATION", "position_exit",
    "MIN_VOLUME", "MAX_POSITION",
    "PORTFOLIO_LIMIT", "CONCENTRATION", "MAX_SHARE", "CASH", "TOO_SMALL",
]
