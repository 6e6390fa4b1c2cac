"""Order latency (rule 13 of docs/execution-semantics.md): one fill-delay rule for backtests and paper.

A signal decided on bar t's close is an order at bar t+1's open; with latency it reaches the market
``latency`` later. Bars only know prices at their opens (and the range between), so it fills at the open of
the first bar of its symbol that opens at or after it arrives: :func:`delay_bars` more bars later
(``bars``: that many; ``ms``: ceil(ms / bar length), so 0 ms delays nothing and any positive latency up to
one bar costs one bar). Exit and entry *signals* are delayed, and what the position is at the fill bar
decides them (an entry is ignored if the symbol is held by then, an exit if it is flat), as without
latency. Stops, take profit, trailing stops, holding-time and flattening exits are not delayed: they are
levels the market (or the exchange's protective order) crosses, not decisions sent after a bar.

Both sides call this module: the walk gets signal arrays shifted by :func:`delay_signals` and the
bar-by-bar Trader passes its pending signals through a :class:`SignalDelay`, so a backtest and a paper
session with latency still make the same trades. Live sessions measure latency instead of simulating it.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import Latency, SessionConfig

__all__ = ["SignalDelay", "delay_bars", "delay_signals"]


def _bar_ms(timeframe: str) -> float:
    return pd.Timedelta(timeframe).total_seconds() * 1000.0  # as rules.day_bars reads config.data.timeframe


def delay_bars(latency: Latency | None, timeframe: str) -> int:
    """Bars a signal's fill waits beyond the next bar's open: ``latency.bars``, or ceil(``latency.ms`` / the
    bar's length in ms); 0 without latency."""
    if latency is None:
        return 0
    if latency.bars is not None:
        return int(latency.bars)
    return int(math.ceil(float(latency.ms or 0.0) / _bar_ms(timeframe) - 1e-9))


def delay_signals(
    buy: np.ndarray, sell: np.ndarray, has_bar: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The walk's (n, m) ``buy``/``sell`` signal arrays with each column's signals moved ``k`` of that
    column's own bars later (``has_bar`` (n, m): the column has a bar at that row); signals pushed past the
    last bar are dropped. ``k`` = 0 returns the arrays unchanged."""
    if k < 0:
        raise ValueError(f"a fill delay is >= 0 bars (got {k})")
    if k == 0:
        return buy, sell
    out_b, out_s = np.zeros_like(buy), np.zeros_like(sell)
    for c in range(buy.shape[1]):
        rows = np.flatnonzero(has_bar[:, c])
        if len(rows) > k:
            out_b[rows[k:], c] = buy[rows[:-k], c]
            out_s[rows[k:], c] = sell[rows[:-k], c]
    return out_b, out_s


class SignalDelay:
    """The bar-by-bar side of :func:`delay_signals`: each column's pending (entry, exit) signals wait ``k``
    of its symbol's bars in a queue. Part of the Trader's checkpoint (:meth:`snapshot`)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"SignalDelay delays by >= 1 bar (got {k}); use no delay for 0")
        self.k = int(k)
        self.queues: dict[str, deque[tuple[bool, bool]]] = {}

    @classmethod
    def for_config(cls, config: SessionConfig, simulated: bool = True) -> SignalDelay | None:
        """The delay of ``config.latency``, or None when there is none or the orders are not ``simulated``
        (a live exchange has its own latency)."""
        k = delay_bars(config.latency, config.data.timeframe) if simulated else 0
        return cls(k) if k > 0 else None

    def apply(self, pending: MutableMapping[str, tuple[bool, bool]], columns: Iterable[str], kind: str = "") -> None:
        """After the signals of a bar time with bars for ``columns`` (the Trader's bars' keys: symbols, or the
        legs' column keys): each such column's new signal joins its queue and the one ``k`` bars older becomes
        its pending signal (none in its first ``k`` bars). ``kind`` keeps other signals' queues apart (e.g.
        'short:' for a strategy's own short signals)."""
        have = set(columns)
        for key in list(pending):
            if key not in have:
                continue
            q = self.queues.setdefault(kind + key, deque())
            q.append(pending[key])
            pending[key] = q.popleft() if len(q) > self.k else (False, False)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able: the delay and each column's queued signals."""
        return {"k": self.k, "queues": {key: [list(v) for v in q] for key, q in self.queues.items()}}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Replace the queues with a :meth:`snapshot`'s (one taken with another delay is refused)."""
        if not state:
            return
        if int(state["k"]) != self.k:
            raise ValueError(f"the checkpoint delays signals by {state['k']} bars, the config by {self.k}; "
                             "resume with the latency the session started with")
        self.queues = {key: deque((bool(v[0]), bool(v[1])) for v in q) for key, q in state["queues"].items()}
