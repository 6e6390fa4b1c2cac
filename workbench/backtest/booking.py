"""vectorbt's ``Portfolio.from_orders`` booking of the walk's fills, in numba: the one definition
used by :func:`workbench.backtest.result.build_result` (series, order and trade logs) and by the
parameter sweep (:func:`workbench.backtest.sweep_kernel.sweep_chunk_nb`, :func:`book_nb` once per
combination inside its ``prange`` loop, equity curve only).

:func:`book_nb` books the walk's list of fills (:func:`workbench.execution.simulate.fills_nb`) with
vectorbt's order execution, tolerances and rounding (``buy_nb``/``sell_nb``, ``cash_flow_nb``,
``cash_grouped_nb``, ``assets_nb``, ``get_exit_trades_nb``), long only, one shared cash balance, no
slippage (it is in the price), so its cash, asset value, value, order and exit-trade records equal
the portfolio's without building it. Short positions (rule 15), borrowing longs and carry rows (rule 16)
are booked by the same arithmetic as the walk's ledger (vectorbt has no portfolio of those).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from workbench.execution.codes import FUNDING_CODE

REL_TOL, ABS_TOL = 1e-9, 1e-12  # vectorbt.utils.math_


@njit(cache=True)
def is_close_nb(a: float, b: float) -> bool:
    """vectorbt's is_close_nb: a and b equal within REL_TOL (relative) or ABS_TOL (absolute)."""
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


@njit(cache=True)
def add_nb(a: float, b: float) -> float:
    """vectorbt's add_nb: a + b, snapped to 0 when they (nearly) cancel."""
    if np.sign(a) != np.sign(b):
        if is_close_nb(abs(a), abs(b)):
            return 0.0
    elif is_close_nb(a + b, 0.0):
        return 0.0
    return a + b


@njit(cache=True)
def _values_nb(
    lo: int, hi: int, close: np.ndarray, assets: np.ndarray, cash_now: float,
    cash_out: np.ndarray, asset_out: np.ndarray, value_out: np.ndarray,
) -> None:
    """Bars lo..hi-1 (no orders): cash, asset value (Σ close × assets, in column order) and value;
    cash and asset value are only written when those outputs are wanted (non-empty)."""
    m = close.shape[1]
    full = len(cash_out) > 0
    if m == 1 and not full:  # the sweep's case: one loop from 0 over views, which numba vectorizes
        a0 = assets[0]
        vs = value_out[lo:hi]
        cs = close[lo:hi, 0]
        for i in range(len(vs)):
            vs[i] = cash_now + (0.0 + cs[i] * a0)
        return
    for i in range(lo, hi):
        total_asset = 0.0
        for c in range(m):
            total_asset += close[i, c] * assets[c]
        value_out[i] = cash_now + total_asset
        if full:
            cash_out[i] = cash_now
            asset_out[i] = total_asset


@njit(cache=True, nogil=True)  # the A/B books its variants in parallel threads
def book_nb(
    f_idx: np.ndarray,  # (k,) bar of each kernel order, in execution order (kernel.fills_nb)
    f_col: np.ndarray,  # (k,) its column
    f_qty: np.ndarray,  # (k,) > 0 buy, -inf sell all
    f_price: np.ndarray,  # (k,) fill price
    close: np.ndarray,  # (n, m) valuation prices, no NaN
    init_cash: float,
    fees: float,
    fixed_fees: float,
    cash_out: np.ndarray,  # (n,) written, or empty: not wanted
    asset_out: np.ndarray,  # (n,) written, or empty: not wanted
    value_out: np.ndarray,  # (n,) written
    margin: bool = False,  # buys may borrow (rule 16): no cap to the cash left
):
    """The kernel's orders through vectorbt's ``from_orders`` logic: fills ``value_out`` (and
    ``cash_out``/``asset_out`` unless empty) per bar and returns the order records (idx, col,
    side 0 buy / 1 sell, size, price, fees) in simulation order and the exit-trade records (col,
    size, entry_idx, entry_price, entry_fees, exit_idx, exit_price, exit_fees, pnl, status 0 open
    / 1 closed, direction 0 long / 1 short) by column, then time. Bars without orders are valued in one run
    each. Shorts (rule 15): a finite negative quantity sells to open a short, +inf buys to cover it; a
    quantity of 0 is a carry row (rule 16) whose price is a cash flow."""
    n, m = close.shape
    k_max = len(f_idx)
    o_idx = np.empty(k_max, dtype=np.int64)
    o_col = np.empty(k_max, dtype=np.int64)
    o_side = np.empty(k_max, dtype=np.int64)
    o_size = np.empty(k_max)
    o_price = np.empty(k_max)
    o_fees = np.empty(k_max)
    full = len(cash_out) > 0

    sim_cash = init_cash
    position = np.zeros(m)  # simulation state (buy_nb / sell_nb)
    assets = np.zeros(m)  # assets_nb
    flow = np.zeros(m)
    cash_now = init_cash  # cash_grouped_nb
    k = 0
    r = 0
    done = 0  # bars before this one are valued
    while r < k_max:
        i = f_idx[r]
        _values_nb(done, i, close, assets, cash_now, cash_out, asset_out, value_out)
        for c in range(m):
            flow[c] = 0.0
        while r < k_max and f_idx[r] == i:
            c = f_col[r]
            size = f_qty[r]
            p = f_price[r]
            r += 1
            if size == 0.0:  # a carry row: funding or interest, a cash flow of the column
                flow[c] = add_nb(flow[c], p)
                sim_cash = sim_cash + p
                continue
            if size == np.inf or (size < 0.0 and size != -np.inf):  # a short: cover all / open
                final_size = -position[c] if size == np.inf else -size
                if is_close_nb(final_size, 0.0):
                    continue
                acq = final_size * p
                fees_paid = acq * fees + fixed_fees
                side = 0 if size == np.inf else 1
                sim_cash = sim_cash - (acq + fees_paid) if side == 0 else sim_cash + (acq - fees_paid)
                position[c] = add_nb(position[c], final_size if side == 0 else -final_size)
            elif size > 0.0 and margin:  # a long that may borrow
                final_size = size
                fees_paid = size * p * fees + fixed_fees
                sim_cash = sim_cash - (size * p + fees_paid)
                position[c] = add_nb(position[c], final_size)
                side = 0
            elif size > 0.0:  # buy_nb, direction longonly
                if sim_cash == 0.0:
                    continue
                req_cash = size * p
                req_fees = req_cash * fees + fixed_fees
                total = req_cash + req_fees
                if is_close_nb(total, sim_cash) or total < sim_cash:
                    final_size = size
                    fees_paid = req_fees
                    final_req = total
                else:
                    max_req = add_nb(sim_cash, -fixed_fees) / (1.0 + fees)
                    if max_req <= 0.0:
                        continue
                    final_size = max_req / p
                    fees_paid = sim_cash - max_req
                    final_req = sim_cash
                if is_close_nb(size, 0.0):
                    continue
                sim_cash = add_nb(sim_cash, -final_req)
                position[c] = add_nb(position[c], final_size)
                side = 0
            else:  # sell_nb, direction longonly
                final_size = min(position[c], -size)
                if position[c] == 0.0 or is_close_nb(final_size, 0.0):
                    continue
                acq = final_size * p
                fees_paid = acq * fees + fixed_fees
                final_acq = add_nb(acq, -fees_paid)
                if final_acq < 0.0:
                    continue
                sim_cash = sim_cash + final_acq
                position[c] = add_nb(position[c], -final_size)
                side = 1
            o_idx[k] = i
            o_col[k] = c
            o_side[k] = side
            o_size[k] = final_size
            o_price[k] = p
            o_fees[k] = fees_paid
            k += 1
            signed = final_size if side == 0 else -final_size  # cash_flow_nb / assets_nb
            flow[c] = add_nb(flow[c], -signed * p - fees_paid)
            assets[c] = add_nb(assets[c], signed)
        # cash_grouped_nb; on bars without orders add_nb(cash, 0.0) == cash (cash is 0 or beyond abs_tol)
        total_flow = 0.0
        for c in range(m):
            total_flow += flow[c]
        cash_now = add_nb(cash_now, total_flow)
        total_asset = 0.0
        for c in range(m):
            total_asset += close[i, c] * assets[c]
        value_out[i] = cash_now + total_asset
        if full:
            cash_out[i] = cash_now
            asset_out[i] = total_asset
        done = i + 1
    _values_nb(done, n, close, assets, cash_now, cash_out, asset_out, value_out)

    # get_exit_trades_nb: only whole-position exits occur (a long's sells and a short's covers are "all")
    t_col = np.empty(k, dtype=np.int64)
    t_size = np.empty(k)
    t_entry_idx = np.empty(k, dtype=np.int64)
    t_entry_price = np.empty(k)
    t_entry_fees = np.empty(k)
    t_exit_idx = np.empty(k, dtype=np.int64)
    t_exit_price = np.empty(k)
    t_exit_fees = np.empty(k)
    t_pnl = np.empty(k)
    t_status = np.empty(k, dtype=np.int64)
    t_dir = np.empty(k, dtype=np.int64)
    t = 0
    for col in range(m):
        in_position = False
        entry_side = 0  # the side of the orders that open the position: 0 buy (long), 1 sell (short)
        entry_idx = 0
        size_sum = 0.0
        gross_sum = 0.0
        fees_sum = 0.0
        for r in range(k):
            if o_col[r] != col:
                continue
            if not in_position:
                in_position = True
                entry_side = o_side[r]
                entry_idx = o_idx[r]
                size_sum = 0.0
                gross_sum = 0.0
                fees_sum = 0.0
            if o_side[r] == entry_side:
                size_sum += o_size[r]
                gross_sum += o_size[r] * o_price[r]
                fees_sum += o_fees[r]
                continue
            order_size = o_size[r]
            exit_size = size_sum if is_close_nb(order_size, size_sum) else order_size
            entry_price = gross_sum / size_sum
            entry_fees = (exit_size / size_sum) * fees_sum
            t_col[t] = col
            t_size[t] = exit_size
            t_entry_idx[t] = entry_idx
            t_entry_price[t] = entry_price
            t_entry_fees[t] = entry_fees
            t_exit_idx[t] = o_idx[r]
            t_exit_price[t] = o_price[r]
            t_exit_fees[t] = o_fees[r]
            gross = add_nb(exit_size * o_price[r], -(exit_size * entry_price))
            t_pnl[t] = (gross if entry_side == 0 else -gross) - entry_fees - o_fees[r]
            t_status[t] = 1
            t_dir[t] = entry_side
            t += 1
            if is_close_nb(order_size, size_sum):
                in_position = False
            else:
                frac = (size_sum - order_size) / size_sum
                size_sum *= frac
                gross_sum *= frac
                fees_sum *= frac
        if in_position and (not is_close_nb(-size_sum, 0.0)) and -size_sum < 0.0:
            exit_price = close[n - 1, col]
            entry_price = gross_sum / size_sum
            entry_fees = (size_sum / size_sum) * fees_sum
            t_col[t] = col
            t_size[t] = size_sum
            t_entry_idx[t] = entry_idx
            t_entry_price[t] = entry_price
            t_entry_fees[t] = entry_fees
            t_exit_idx[t] = n - 1
            t_exit_price[t] = exit_price
            t_exit_fees[t] = 0.0
            gross = add_nb(size_sum * exit_price, -(size_sum * entry_price))
            t_pnl[t] = (gross if entry_side == 0 else -gross) - entry_fees
            t_status[t] = 0
            t_dir[t] = entry_side
            t += 1
    return (
        o_idx[:k], o_col[:k], o_side[:k], o_size[:k], o_price[:k], o_fees[:k],
        t_col[:t], t_size[:t], t_entry_idx[:t], t_entry_price[:t], t_entry_fees[:t],
        t_exit_idx[:t], t_exit_price[:t], t_exit_fees[:t], t_pnl[:t], t_status[:t], t_dir[:t],
    )


@njit(cache=True)
def trade_carry_nb(
    f_idx: np.ndarray, f_col: np.ndarray, f_qty: np.ndarray, f_price: np.ndarray, f_reason: np.ndarray,
    t_col: np.ndarray, t_entry_idx: np.ndarray, m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(funding, interest) of each exit trade of :func:`book_nb` (by column, then time): the sums, in the
    walk's order, of the carry rows (quantity 0, rule 16) of its column after its entry bar, up to the next
    trade's entry. Add them to the trades' P&L: the Trader's ledger books them so."""
    k = len(t_col)
    fund = np.zeros(k)
    interest = np.zeros(k)
    start = np.full(m + 1, k, dtype=np.int64)  # each column's first trade (trades come by column)
    for t in range(k - 1, -1, -1):
        start[t_col[t]] = t
    for c in range(m - 1, -1, -1):
        start[c] = min(start[c], start[c + 1])
    at = start[:m].copy()  # each column's current trade
    for r in range(len(f_idx)):
        if f_qty[r] != 0.0:
            continue
        c, i = f_col[r], f_idx[r]
        while at[c] + 1 < start[c + 1] and t_entry_idx[at[c] + 1] < i:
            at[c] += 1
        if at[c] >= start[c + 1]:
            continue
        if f_reason[r] == FUNDING_CODE:
            fund[at[c]] += f_price[r]
        else:
            interest[at[c]] += f_price[r]
    return fund, interest
