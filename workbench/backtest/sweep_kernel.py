"""Numba kernels for parameter sweeps: many combinations through the execution kernel at once.

A sweep must not build a vectorbt Portfolio per combination, so :func:`booking.book_nb` (the
same booking as run_backtest's result) books :func:`kernel.fills_nb`'s fills (the same walk as
run_backtest's) the way
``Portfolio.from_orders`` does, writing only the equity curve, and
:func:`workbench.metrics.kernel.metrics_nb` (the kernel ``compute_metrics`` wraps) computes
its metrics, so a sweep row equals ``run_backtest(...).metrics``. :func:`sweep_chunk_nb` runs a
chunk of combinations in parallel (``prange``) and releases the GIL.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from workbench.backtest.booking import book_nb, trade_carry_nb
from workbench.execution.simulate import KernelParams, fills_nb
from workbench.metrics.kernel import METRIC_KEYS, N_METRICS, _kth, metrics_nb, np_sum

__all__ = ["METRIC_KEYS", "N_METRICS", "_kth", "metrics_nb", "np_sum", "sweep_chunk_nb"]


if KernelParams._fields[-2:] != ("short_sig", "cover_sig"):  # pragma: no cover - with_shorts_nb's layout
    raise ImportError("KernelParams must end with short_sig, cover_sig (sweep_kernel.with_shorts_nb replaces them)")


@njit(cache=True)
def with_shorts_nb(p: KernelParams, short_sig: np.ndarray, cover_sig: np.ndarray) -> KernelParams:
    """``p`` with a combination's own short signals (``p._replace``, which numba lacks)."""
    return KernelParams(*(p[:-2] + (short_sig, cover_sig)))


@njit(cache=True, parallel=True, nogil=True)
def sweep_chunk_nb(
    times: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
    volume: np.ndarray, close_filled: np.ndarray,
    buys: np.ndarray,  # (k, n, m) bool, shifted like run_backtest's
    sells: np.ndarray,
    shorts: np.ndarray,  # (k, n, m) bool: the strategies' own short entries and exits, or (0, n, m): the
    covers: np.ndarray,  # default short rule (rule 15)
    allowed: np.ndarray, flatten: np.ndarray, p: KernelParams, ppy: float,
    lanes: int,  # parallel lanes (numba.get_num_threads())
) -> np.ndarray:
    """Metrics (k, N_METRICS) of k combinations: kernel.fills_nb, booking.book_nb (equity only)
    and metrics_nb each, in ``lanes`` parallel lanes that each reuse one set of per-bar buffers."""
    k = buys.shape[0]
    n = len(times)
    out = np.empty((k, N_METRICS))
    none = np.empty(0)  # book_nb: cash and asset value are not needed
    lanes = max(1, min(k, lanes))
    for lane in prange(lanes):
        value = np.empty(n)
        work = np.empty((3, n))
        for j in range(lane, k, lanes):
            f_idx, f_col, f_qty, f_price, _, f_reason, _, _ = fills_nb(
                times, open_, high, low, close, volume, buys[j], sells[j], allowed, flatten,
                p if shorts.shape[0] == 0 else with_shorts_nb(p, shorts[j], covers[j]),
            )
            b = book_nb(
                f_idx, f_col, f_qty, f_price, close_filled, p.init_cash, p.taker, p.fixed_fee, none, none, value,
                p.leverage != 1.0,  # a leveraged long may borrow (rule 16)
            )
            # exit trades: size, entry_idx, entry_price, exit_idx, pnl, status (1 closed)
            t_size, t_entry, t_price, t_exit, t_pnl, t_status = b[7], b[8], b[9], b[11], b[14], b[15]
            fund, interest = trade_carry_nb(f_idx, f_col, f_qty, f_price, f_reason, b[6], t_entry, close.shape[1])
            t_pnl = t_pnl + (fund + interest)  # carrying costs are the trades' P&L (rule 16), as in the result
            closed = t_status == 1
            t_ret = t_pnl / (t_size * t_price)  # return_pct as result.trades_frame computes it
            t_end = np.where(closed, t_exit, n)  # exposure: open trades to the end
            t_dur = (times[t_exit] - times[t_entry]).astype(np.float64)
            out[j] = metrics_nb(value, p.init_cash, ppy, t_entry, t_end, t_pnl, t_ret, t_dur, closed, work)
    return out
