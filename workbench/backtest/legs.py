"""Backtests of multi-strategy sessions: each leg's strategy on its symbols, one column per (leg, symbol)
of the one walk (:mod:`workbench.execution.legs`), and the results per leg.

The trade and order logs carry a ``leg`` column beside ``symbol``, which holds the column's key as in
sessions and the store (the symbol, or ``SYMBOL@leg`` when several legs trade it; :func:`with_legs`
adds the leg to any such log); :func:`leg_summary` is the per-leg P&L (its sum is the session's P&L);
:func:`leg_equity` each leg's P&L over time.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from workbench.backtest.result import BacktestResult, build_result
from workbench.backtest.runner import _shifted_signals, breaker_trip, kernel_inputs, walk
from workbench.config import SessionConfig
from workbench.execution.legs import columns, leg_of, leg_summary, with_legs

__all__ = ["run_legs", "with_legs", "leg_summary", "leg_equity", "leg_metrics", "leg_table"]


def run_legs(config: SessionConfig, frames: Mapping[str, pd.DataFrame]) -> BacktestResult:
    """Backtest a config with ``legs`` on ``frames`` (symbol -> bars, as run_backtest loads them)."""
    from workbench.strategies import create

    cols = columns(config)
    keys = [c.key for c in cols]
    inputs = kernel_inputs(config, {c.key: frames[c.symbol] for c in cols}, keys)
    strategies = {leg.name: create(leg.strategy, leg.params) for leg in config.legs}

    def by_column(side: str) -> tuple[np.ndarray, np.ndarray]:
        """Each column's (entry, exit) signals of ``side`` ('signals' or 'short_signals') from its leg's strategy,
        shifted as rule 1 says; False where the column has no bar."""
        shape = (len(inputs.index), len(keys))
        entry, exit_ = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        for j, c in enumerate(cols):
            df = inputs.frames[c.key]
            entry[inputs.rows[j], j], exit_[inputs.rows[j], j] = _shifted_signals(
                getattr(strategies[c.leg], side)(df), df.index, c.symbol)
        return entry, exit_

    buy, sell = by_column("signals")
    # short signals (rule 15), each column's leg strategy's own or its default rule's: the walk applies the
    # default rule itself when no leg has its own
    own = config.direction != "long" and any(s.own_shorts for s in strategies.values())
    fills, trip = walk(config, inputs.index, inputs.arr, buy, sell, shorts=by_column("short_signals") if own else None)
    result = build_result(config, dict(frames), inputs.index, fills, inputs.close_filled())
    result.breaker = breaker_trip(inputs.index, trip)
    for name in ("trades", "orders"):
        _then(result, name, lambda frame: with_legs(frame, config))
    return result


def _then(result: BacktestResult, name: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Apply ``fn`` to the lazy frame ``name`` of ``result`` when it is first read."""
    made = result.__dict__["_lazy_" + name]
    setattr(result, name, lambda: fn(made() if callable(made) else made))


def leg_equity(result: BacktestResult) -> pd.DataFrame:
    """Each leg's P&L over time (bar index x leg): its closed trades' P&L at their exits plus its open
    positions valued at the close, net of fees. The legs' sum is the session's equity minus its initial balance."""
    trades = result.trades
    index = result.equity.index
    close = pd.DataFrame({s: df["close"] for s, df in result.bars.items()}).reindex(index).ffill().bfill()
    symbol = {k: s for k, (_, s) in leg_of(result.config).items()}
    out = pd.DataFrame(0.0, index=index, columns=[leg.name for leg in result.config.legs])
    for t in trades.itertuples(index=False):
        held = (index >= t.entry_time) & ((index < t.exit_time) if t.status == "closed" else True)
        sign = -1.0 if t.side == "short" else 1.0
        out.loc[held, t.leg] += sign * t.quantity * (close[symbol[t.symbol]].to_numpy()[held] - t.entry_price) \
            - t.entry_fees
        if t.status == "closed":
            out.loc[index >= t.exit_time, t.leg] += t.pnl
    return out


def leg_table(config: SessionConfig, trades: pd.DataFrame, state: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per leg for views and reports: name, strategy, params (the runner ``state``'s current ones if
    given), symbols, allocation, paused (from ``state``), then :func:`leg_summary` of ``trades``."""
    legs_state = dict((state or {}).get("legs") or {})
    params, paused = dict(legs_state.get("params") or {}), set(legs_state.get("paused") or [])
    names = [leg.name for leg in config.legs]
    head = pd.DataFrame({
        "strategy": [leg.strategy for leg in config.legs],
        "params": [", ".join(f"{k}={v}" for k, v in params.get(leg.name, leg.params).items()) for leg in config.legs],
        "symbols": [", ".join(leg.symbols) for leg in config.legs],
        "allocation": [float(leg.allocation) for leg in config.legs],
        "paused": [leg.name in paused for leg in config.legs],
    }, index=pd.Index(names, name="leg"))
    summary = leg_summary(with_legs(trades, config) if len(trades) else trades.assign(leg=[]), names)
    return head.join(summary).reset_index()


def leg_metrics(result: BacktestResult) -> pd.DataFrame:
    """Every metric (``workbench.metrics.compute_metrics``) per leg (rows), each leg's equity being its share
    of the initial balance (allocation x initial balance) plus its P&L (:func:`leg_equity`)."""
    from workbench.metrics import compute_metrics

    curves, trades = leg_equity(result), result.trades
    rows = {}
    for leg in result.config.legs:
        start = float(leg.allocation) * float(result.config.initial_balance)
        mine = trades[trades["leg"] == leg.name].drop(columns="leg")
        rows[leg.name] = compute_metrics(curves[leg.name] + start, mine, start)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("leg")
