"""The A/B's variants in parallel: each variant's walk, booking and metrics in a GIL-free thread.

A variant runs what run_backtest runs for its config: :func:`workbench.backtest.runner.walk` (the walk,
:func:`~workbench.execution.simulate.fills_nb`, with its signal delays, time gates and
:class:`~workbench.execution.simulate.KernelParams` as run_backtest prepares them), then
:func:`book_metrics_nb`: :func:`~workbench.backtest.booking.book_nb` for the equity curve and
:func:`~workbench.metrics.kernel.metrics_nb` on the booked trades, as
:func:`workbench.backtest.result.build_result` computes them. Both kernels release the GIL (``nogil``),
so :class:`Walker` runs the variants in ``numba.get_num_threads()`` threads while the caller computes the
next signals. (One numba ``prange`` kernel, as the sweep's, would need every variant's KernelParams in
one typed container, which numba compiles anew in every process or per number of variants; these
kernels compile once and are cached.)

The walk's fills come back too: a variant's full :class:`~workbench.backtest.result.BacktestResult`
(trade and order logs, breaker, scaling steps) is built from them on demand, without walking again.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
import pandas as pd
from numba import njit

from workbench.backtest.booking import book_nb
from workbench.config import SessionConfig
from workbench.execution.simulate import Fills
from workbench.metrics.kernel import metrics_nb

__all__ = ["VariantRun", "Walker", "book_metrics_nb"]


@njit(cache=True, nogil=True)
def book_metrics_nb(
    f_idx: np.ndarray, f_col: np.ndarray, f_qty: np.ndarray, f_price: np.ndarray,  # fills_nb's fills
    times: np.ndarray,  # (n,) int64 ns bar times
    close: np.ndarray,  # (n, m) close forward/back-filled: the valuation prices
    init_cash: float, taker: float, fixed_fee: float, ppy: float,
    value: np.ndarray,  # (n,) written: the equity curve
) -> np.ndarray:
    """The metrics (``METRIC_KEYS`` order, no tail figures) of one walk's fills; ``value`` gets its equity."""
    none = np.empty(0)  # book_nb: cash and asset value are not needed
    b = book_nb(f_idx, f_col, f_qty, f_price, close, init_cash, taker, fixed_fee, none, none, value)
    # exit trades (result._TRADE_FIELDS): size, entry_idx, entry_price, exit_idx, pnl, status (1 closed);
    # per trade as result._metrics: open to its exit row (the end while open), held ns (NaN while open)
    t_size, t_entry, t_price, t_exit, t_pnl, t_status = b[7], b[8], b[9], b[11], b[14], b[15]
    n = len(times)
    closed = t_status == 1
    t_end = np.where(closed, t_exit, n)
    held = np.where(closed, (times[t_exit] - times[t_entry]).astype(np.float64), np.nan)
    t_ret = t_pnl / (t_size * t_price)
    return metrics_nb(value, init_cash, ppy, t_entry, t_end, t_pnl, t_ret, held, closed, np.empty((3, n)))


class VariantRun(NamedTuple):
    """One variant's walk and booking: its fills, breaker ``trip``, equity ``value`` and ``metrics``
    (``METRIC_KEYS`` order, without the tail figures)."""

    fills: Fills
    trip: np.ndarray
    value: np.ndarray
    metrics: np.ndarray


class Walker:
    """Runs variants on shared bar arrays in ``lanes`` threads (default numba's thread count):
    :meth:`submit` returns at once, so the caller computes the next signals meanwhile."""

    def __init__(self, index: pd.DatetimeIndex, arr: dict[str, np.ndarray], close_filled: np.ndarray, ppy: float,
                 lanes: int | None = None):
        from workbench.backtest.runner import kernel_times

        self.index, self.arr, self.ppy = index, arr, float(ppy)
        self.times = kernel_times(index)
        self.close = np.ascontiguousarray(close_filled, dtype=np.float64)
        self.pool = ThreadPoolExecutor(max(1, lanes or numba.get_num_threads()), thread_name_prefix="ab-walk")

    def submit(self, config: SessionConfig, buy: np.ndarray, sell: np.ndarray,
               value: np.ndarray | None = None) -> Future[VariantRun]:
        """Run ``config``'s walk on signals ``buy``/``sell`` (as run_backtest's walk takes them), and book it;
        the equity curve is written into ``value`` ((n,) float64, e.g. a row of the A/B's equity) if given."""
        return self.pool.submit(self._run, config, buy, sell, np.empty(len(self.times)) if value is None else value)

    def _run(self, config: SessionConfig, buy: np.ndarray, sell: np.ndarray, value: np.ndarray) -> VariantRun:
        from workbench.backtest.runner import walk

        fills, trip = walk(config, self.index, self.arr, buy, sell)
        metrics = book_metrics_nb(
            fills.idx, fills.col, fills.qty, fills.price, self.times, self.close, float(config.initial_balance),
            float(config.commission.taker), float(config.commission.fixed), self.ppy, value,
        )
        return VariantRun(fills, trip, value, metrics)

    def close_pool(self) -> None:
        self.pool.shutdown(wait=True)

    def __enter__(self) -> Walker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_pool()
