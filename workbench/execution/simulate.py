"""The vectorized walk of docs/execution-semantics.md: every fill of a backtest in one cached numba pass.

:func:`fills_nb` walks the bars once with the cash/position ledger and decides every fill (bar,
symbol, quantity, price, reason) by the rules of :mod:`workbench.execution.nb` (the same kernels
the bar-by-bar engine calls), jumping over runs of bars where nothing can act;
:func:`layout_nb` lays them out per bar and symbol for vectorbt's ``Portfolio.from_orders``;
run_backtest and the parameter sweep book :func:`fills_nb`'s list (:class:`Fills`) directly.
:func:`~workbench.execution.params.kernel_params` turns a SessionConfig into the walk's
:class:`KernelParams`; :mod:`~workbench.execution.skips` says where the walk may jump to.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from workbench.execution.codes import (
    BREAKER_GAP,
    BREAKER_REJECTIONS,
    ENTRY,
    EVENT_CODE,
    EXIT_SIGNAL,
    FUNDING_CODE,
    HALTED,
    INTEREST_CODE,
    MINUTE_NS,
    NONE,
    REASONS,
    RUNNING,
    SIZING_MODES,
    TIME_LIMIT,
)
from workbench.execution.nb import (
    MIN_QUANTITY,
    book_buy_nb,
    book_cover_nb,
    book_sell_nb,
    book_short_nb,
    breaker_nb,
    buy_fill_nb,
    cap_entry_nb,
    carry_nb,
    fee_nb,
    funding_due_nb,
    gap_nb,
    liquidation_price_nb,
    position_exit_nb,
    sell_fill_nb,
    stop_exit_nb,
    tail_nb,
    target_quantity_nb,
    window_full_nb,
)
from workbench.execution.params import KernelParams, kernel_params
from workbench.execution.scaling import (
    P_ON,
    P_START,
    SCALE,
    STEP_FIELDS,
    STEP_NONE,
    scaling_bar_nb,
    scaling_init_nb,
    scaling_trade_nb,
    short_return_nb,
)
from workbench.execution.skips import next_event_nb, next_event_sides_nb, next_stop_event_nb, sides_at_nb

__all__ = ["KernelParams", "kernel_params", "fills_nb", "Fills", "layout", "layout_nb", "next_event_nb", "REASONS",
           "SIZING_MODES"]

DAY = 86_400 * 10**9


@njit(cache=True)
def _grow(a: np.ndarray) -> np.ndarray:
    """``a`` copied into an array twice as long (the rest uninitialised)."""
    out = np.empty(2 * len(a), dtype=a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)  # the A/B walks its variants in parallel threads
def fills_nb(
    times: np.ndarray,  # int64 ns, bar open times (n,)
    open_: np.ndarray,  # (n, m) float; NaN where a symbol has no bar
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    buy_sig: np.ndarray,  # (n, m) bool: entry signal of the previous bar, conflicts removed
    sell_sig: np.ndarray,  # (n, m) bool: exit signal of the previous bar, conflicts removed
    allowed: np.ndarray,  # (n,) bool: entries allowed at this bar's open (time restrictions)
    flatten: np.ndarray,  # (n,) bool: held positions are sold at this bar's open (a flattening event window)
    p: KernelParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every fill of a backtest, in execution order: (bar, column, quantity, fill price, reference
    price, reason, trip, scaling steps) arrays. Quantity: > 0 a buy opening a long, -inf a sell of the
    whole long; a short (rule 15) opens with a sell of -quantity (finite < 0) and is covered by a buy
    of the whole position (+inf). Carrying costs (rule 16) are rows of quantity 0 with reason FUNDING or
    INTEREST whose price is the cash flow (negative = paid), before the bar's exits. Each bar's exits
    come before its entries (entries in symbol order). ``trip`` is (bar, BREAKER_* code,
    trading state) of the circuit breaker's trip, bar -1 if it never tripped; each row of ``steps`` is
    (bar, the step's numbers in ``execution.scaling.STEP_FIELDS`` order), none when scaling is off.

    Bars where nothing can happen are skipped in one scan (:func:`next_event_nb`): no entry signal
    of a flat symbol, no exit signal of a held one, and no stop, holding limit or breaker to watch
    (or nothing held). They would only move the valuation marks, which are carried over the skipped
    run, so the fills are those of a walk over every bar. Rejected entries (rule 10: time, rate,
    caps) count towards the breaker's rejection burst; when that is armed, entry signals at blocked
    times are visited too.
    """
    n, m = open_.shape
    size = 64
    o_idx = np.empty(size, dtype=np.int64)
    o_col = np.empty(size, dtype=np.int64)
    o_qty = np.empty(size)
    o_price = np.empty(size)
    o_ref = np.empty(size)
    o_reason = np.empty(size, dtype=np.int8)
    trip = np.full(6, -1, dtype=np.int64)  # the first trip, then an escalation to HALTED: (bar, code, state)
    k = 0

    cash = p.init_cash
    pos = np.zeros(m)
    entry_px = np.zeros(m)
    entry_t = np.zeros(m, dtype=np.int64)
    peak = np.zeros(m)  # long: the highest high since entry; short: the lowest low
    liq = np.zeros(m)  # each position's liquidation price (rule 16)
    mark = np.full(m, np.nan)  # valuation price: this bar's open, else the last close
    was_side = np.zeros(m, dtype=np.int8)  # the position's side at the bar's open: 1, -1, 0 flat
    reversed_ = np.zeros(m, dtype=np.bool_)  # closed at this bar's open by a signal (an entry may reverse it)
    sides = p.direction != 1 or p.short_sig.shape[0] > 0  # rule 15's general path; long-only keeps its own
    margin = not np.isnan(p.initial)
    carrying = p.borrow != 0.0 or p.funding_rate != 0.0 or len(p.funding) > 0
    levered = p.leverage != 1.0
    tail = not (np.isnan(p.max_vol) and np.isnan(p.max_var))
    tail_ring = np.zeros(p.tail_window)
    n_tail = 0
    gap = not np.isnan(p.max_gap)
    breaker = not (np.isnan(p.max_daily_loss) and np.isnan(p.max_drawdown)) or tail or gap
    watch = (not (np.isnan(p.sl) and np.isnan(p.tp) and np.isnan(p.trail)) or p.max_hold_ns >= 0 or breaker
             or flatten.any() or margin or carrying)
    # held longs that watch only their stops: skip to the first bar one can act (next_stop_event_nb)
    stops_only = not (breaker or p.max_hold_ns >= 0 or flatten.any() or margin or carrying or sides)
    held = 0  # symbols with a position
    n_short = 0  # of them short
    state = RUNNING
    order_times = np.zeros(max(p.max_orders_per_minute, 1), dtype=np.int64)  # ring of the last orders
    n_orders = 0
    reject_times = np.zeros(max(p.max_rejections, 1), dtype=np.int64)  # ring of the last rejections
    n_rejects = 0
    scan_ok = allowed if p.max_rejections == 0 else np.ones(n, dtype=np.bool_)  # blocked entries count
    day = -1
    day_start = last_equity = equity_peak = p.init_cash
    sp = p.scaling  # automated scaling (rule 11): its state, each position's entry cost, the steps taken
    scaling = sp[P_ON] != 0.0
    scale_st = scaling_init_nb(sp[P_START])
    entry_cost = np.zeros(m)
    entry_net = np.zeros(m)  # a short's entry proceeds - fees (its scaling return)
    steps = np.empty((0, 1 + len(STEP_FIELDS)))
    n_steps = 0

    i = 0
    while i < n:
        if (held == 0 or not watch or stops_only) and not tail and not scaling:  # tail breakers, scaling: every bar
            if held > 0 and watch:
                j = next_stop_event_nb(i, pos, open_, high, low, buy_sig, sell_sig, entry_px, peak, p.sl, p.tp,
                                       p.trail)
            elif sides:
                j = next_event_sides_nb(i, pos, buy_sig, sell_sig, p.short_sig, p.cover_sig, scan_ok,
                                        state == RUNNING, p.direction)
            else:
                j = next_event_nb(i, pos, buy_sig, sell_sig, scan_ok, state == RUNNING)
            if j > i:  # bars i..j-1 only move the marks: after a bar, its close, else its open
                for c in range(m):
                    for r in range(j - 1, i - 1, -1):
                        if not np.isnan(close[r, c]):
                            mark[c] = close[r, c]
                            break
                        if not np.isnan(open_[r, c]):
                            mark[c] = open_[r, c]
                            break
                i = j
                if i == n:
                    break
        while k + 4 * m > len(o_idx):  # room for this bar's rows (carry, exit, entry per symbol)
            o_idx, o_col, o_qty = _grow(o_idx), _grow(o_col), _grow(o_qty)
            o_price, o_ref, o_reason = _grow(o_price), _grow(o_ref), _grow(o_reason)
        now = times[i]
        fund_rate = 0.0
        elapsed = now - times[i - 1] if i > 0 else 0
        if carrying and held > 0:
            if len(p.funding) > 0:
                fund_rate = p.funding[i]
            elif i > 0:
                fund_rate = funding_due_nb(times[i - 1], now, p.funding_rate)
        for c in range(m):
            was_side[c] = 1 if pos[c] > 0.0 else (-1 if pos[c] < 0.0 else 0)
            reversed_[c] = False
            if not np.isnan(open_[i, c]):
                if gap and pos[c] != 0.0 and state != HALTED:  # the gap breaker sees the gap against it
                    level, _drop = gap_nb(mark[c], open_[i, c], p.max_gap, pos[c])
                    if level == 2 or (level == 1 and state == RUNNING):
                        state = HALTED if level == 2 else p.breaker_action
                        at = 0 if trip[0] < 0 else 3
                        trip[at], trip[at + 1], trip[at + 2] = i, BREAKER_GAP, state
                mark[c] = open_[i, c]
                if carrying and pos[c] != 0.0:  # 0) carrying costs at the open (rule 16)
                    fund, interest = carry_nb(pos[c], open_[i, c], fund_rate, p.borrow, elapsed)
                    if fund != 0.0:
                        cash += fund
                        o_idx[k], o_col[k], o_qty[k], o_price[k], o_ref[k] = i, c, 0.0, fund, open_[i, c]
                        o_reason[k] = FUNDING_CODE
                        k += 1
                    if interest != 0.0:
                        cash += interest
                        o_idx[k], o_col[k], o_qty[k], o_price[k], o_ref[k] = i, c, 0.0, interest, open_[i, c]
                        o_reason[k] = INTEREST_CODE
                        k += 1
        # 1) exits: signal (held while HALTED), holding time, stops, liquidation
        for c in range(m):
            o = open_[i, c]
            if pos[c] == 0.0 or np.isnan(o):
                continue
            side = 1 if pos[c] > 0.0 else -1
            code = NONE
            ref = o
            if sides:
                le, lx, se, sx = sides_at_nb(i, c, buy_sig, sell_sig, p.short_sig, p.cover_sig, p.direction)
                signal = lx if side > 0 else sx
            else:
                signal = sell_sig[i, c]
            if signal and state != HALTED:
                code = EXIT_SIGNAL
                reversed_[c] = True
            elif flatten[i]:
                code = EVENT_CODE
            elif p.max_hold_ns >= 0 and now - entry_t[c] >= p.max_hold_ns:
                code = TIME_LIMIT
            elif side > 0 and not margin:
                code, ref = stop_exit_nb(o, high[i, c], low[i, c], entry_px[c], peak[c], p.sl, p.tp, p.trail)
            else:
                code, ref = position_exit_nb(side, o, high[i, c], low[i, c], entry_px[c], peak[c], p.sl, p.tp,
                                             p.trail, liq[c])
            if code == NONE:
                continue
            if side > 0:
                fill = sell_fill_nb(ref, pos[c], volume[i, c], p.slip, p.impact)
                proceeds = pos[c] * fill
                fee = fee_nb(proceeds, p.taker, p.fixed_fee)
                if proceeds - fee < 0.0:  # fees exceed proceeds: vectorbt rejects such a sell
                    continue
                cash, pos[c], _pnl = book_sell_nb(cash, pos[c], entry_px[c], pos[c], fill, fee, 0.0)
                if scaling:  # the closed trade's return: net proceeds over entry cost with its fees
                    scaling_trade_nb(scale_st, (proceeds - fee) / entry_cost[c] - 1.0)
                o_qty[k] = -np.inf
            else:  # cover the short: a buy of the whole position at buy-side slippage
                q = -pos[c]
                fill = buy_fill_nb(ref, q, volume[i, c], p.slip, p.impact)
                fee = fee_nb(q * fill, p.taker, p.fixed_fee)
                cash, pos[c], _pnl = book_cover_nb(cash, pos[c], entry_px[c], q, fill, fee, 0.0)
                pos[c] = 0.0
                n_short -= 1
                if scaling:
                    scaling_trade_nb(scale_st, short_return_nb(entry_net[c], entry_cost[c], q * fill + fee))
                o_qty[k] = np.inf
            held -= 1
            if p.max_orders_per_minute > 0:
                order_times[n_orders % len(order_times)] = now
                n_orders += 1
            o_idx[k], o_col[k], o_price[k], o_ref[k], o_reason[k] = i, c, fill, ref, code
            k += 1
        # 2) entries, in symbol order, while RUNNING: time, order rate, caps (rejections count)
        for c in range(m):
            o = open_[i, c]
            if np.isnan(o) or state != RUNNING or scale_st[SCALE] <= 0.0:
                continue
            if sides:
                le, lx, se, sx = sides_at_nb(i, c, buy_sig, sell_sig, p.short_sig, p.cover_sig, p.direction)
                if le == se:  # neither, or both sides at once (a conflict: both ignored)
                    continue
                side = 1 if le else -1
                if pos[c] != 0.0 or (was_side[c] != 0 and not (reversed_[c] and was_side[c] == -side)):
                    continue  # held, or closed on this bar by anything but a reversing signal
            else:
                if was_side[c] != 0 or not buy_sig[i, c]:
                    continue
                side = 1
            q = 0.0
            if o > 0.0 and allowed[i] and not (
                p.max_orders_per_minute > 0 and window_full_nb(order_times, n_orders, now, MINUTE_NS)
            ):
                exposure = 0.0
                value = 0.0
                for jj in range(m):
                    if pos[jj] > 0.0:
                        exposure += pos[jj] * mark[jj]
                    elif pos[jj] < 0.0:
                        exposure -= pos[jj] * mark[jj]
                        value += pos[jj] * mark[jj]
                equity = cash + exposure + 2.0 * value
                budget = cash  # rule 16: buying power = equity x leverage - gross exposure
                if levered or n_short > 0:
                    budget = equity * p.leverage - exposure
                if levered:  # percent_equity sizes on buying power
                    equity *= p.leverage
                q = target_quantity_nb(p.sizing_mode, p.sizing_value, equity, o)
                q *= p.col_scale[c]
                if scaling:
                    q *= scale_st[SCALE]
                q, _rule = cap_entry_nb(
                    q, o, volume[i, c], budget, exposure, 0.0, p.max_position, p.portfolio_limit, p.concentration,
                    p.min_volume, p.max_share, p.skip_excess, p.taker, p.fixed_fee, p.slip, p.impact,
                )
            if q <= MIN_QUANTITY:  # rejected
                if p.max_rejections > 0:
                    reject_times[n_rejects % len(reject_times)] = now
                    n_rejects += 1
                    if window_full_nb(reject_times, n_rejects, now, p.rejection_window_ns):
                        state = p.breaker_action
                        trip[0], trip[1], trip[2] = i, BREAKER_REJECTIONS, state
                continue
            if side > 0:
                fill = buy_fill_nb(o, q, volume[i, c], p.slip, p.impact)
                fee = fee_nb(q * fill, p.taker, p.fixed_fee)
                cash, pos[c], entry_px[c] = book_buy_nb(cash, 0.0, 0.0, q, fill, fee)
                if not levered:
                    cash = max(cash, 0.0)  # vectorbt's booking never lets rounding take cash below 0
                peak[c] = -np.inf
                o_qty[k] = q
            else:  # open a short: a sell of q at sell-side slippage
                fill = sell_fill_nb(o, q, volume[i, c], p.slip, p.impact)
                fee = fee_nb(q * fill, p.taker, p.fixed_fee)
                cash, pos[c], entry_px[c] = book_short_nb(cash, 0.0, 0.0, q, fill, fee)
                n_short += 1
                peak[c] = np.inf
                o_qty[k] = -q
            if scaling:
                entry_cost[c] = q * fill + fee
                entry_net[c] = q * fill - fee
            liq[c] = liquidation_price_nb(side, fill, p.initial, p.maintenance)
            held += 1
            entry_t[c] = now
            if p.max_orders_per_minute > 0:
                order_times[n_orders % len(order_times)] = now
                n_orders += 1
            o_idx[k], o_col[k], o_price[k], o_ref[k], o_reason[k] = i, c, fill, o, ENTRY
            k += 1
        # 3) trailing peaks (troughs of shorts) and marks see the whole bar
        for c in range(m):
            if pos[c] > 0.0:
                if high[i, c] > peak[c]:
                    peak[c] = high[i, c]
            elif pos[c] < 0.0 and low[i, c] < peak[c]:
                peak[c] = low[i, c]
            if not np.isnan(close[i, c]):
                mark[c] = close[i, c]
        # 4) the breaker sees the equity after the bar (rule 10)
        if breaker:
            equity = cash
            for c in range(m):
                if pos[c] != 0.0:
                    equity += pos[c] * mark[c]
            if now // DAY != day:
                day = now // DAY
                day_start = last_equity
            ret = equity / last_equity - 1.0 if last_equity != 0.0 else 0.0
            last_equity = equity
            if equity > equity_peak:
                equity_peak = equity
            if state == RUNNING:
                why = breaker_nb(equity, day_start, equity_peak, p.max_daily_loss, p.max_drawdown)
                if why != 0:
                    state = p.breaker_action
                    trip[0], trip[1], trip[2] = i, why, state
            if tail:
                n_tail, why, level, _value = tail_nb(tail_ring, n_tail, ret, p.day_bars, p.max_vol, p.max_var)
                if level == 2 and state != HALTED:
                    state = HALTED
                    at = 0 if trip[0] < 0 else 3
                    trip[at], trip[at + 1], trip[at + 2] = i, why, state
                elif level == 1 and state == RUNNING:
                    state = p.breaker_action
                    trip[0], trip[1], trip[2] = i, why, state
        # 5) automated scaling (rule 11) sees the equity after the bar
        if scaling:
            equity = cash
            for c in range(m):
                if pos[c] != 0.0:
                    equity += pos[c] * mark[c]
            step, row = scaling_bar_nb(scale_st, now, equity, sp)
            if step != STEP_NONE:
                if n_steps == len(steps):
                    more = np.empty((2 * len(steps) + 4, steps.shape[1]))
                    more[:n_steps] = steps
                    steps = more
                steps[n_steps, 0] = i
                steps[n_steps, 1:] = row
                n_steps += 1
        i += 1
    return o_idx[:k], o_col[:k], o_qty[:k], o_price[:k], o_ref[:k], o_reason[:k], trip, steps[:n_steps]


class Fills(NamedTuple):
    """:func:`fills_nb`'s orders in execution order: bar, column, quantity (> 0 buy, -inf sell all; a
    short: < 0 sell, +inf cover; 0: a carry row whose price is its cash flow), fill price, reference price
    and reason code (``REASONS``) of each."""

    idx: np.ndarray
    col: np.ndarray
    qty: np.ndarray
    price: np.ndarray
    ref: np.ndarray
    reason: np.ndarray
    steps: np.ndarray = np.empty((0, 1 + len(STEP_FIELDS)))  # automated scaling's steps (fills_nb's last array)


@njit(cache=True)
def layout_nb(
    n: int, m: int, o_idx: np.ndarray, o_col: np.ndarray, o_qty: np.ndarray, o_price: np.ndarray,
    o_ref: np.ndarray, o_reason: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fills_nb`'s orders laid out per bar and symbol, as vectorbt's ``from_orders`` takes
    them: (quantity, fill price, reference price, reason, call_seq), each (n, m). Quantity is NaN
    where there is no order; call_seq orders each bar's sells before its buys (buys in symbol
    order), then the symbols without an order."""
    qty_out = np.full((n, m), np.nan)
    price_out = np.full((n, m), np.nan)
    ref_out = np.full((n, m), np.nan)
    reason_out = np.zeros((n, m), dtype=np.int8)
    call_seq = np.empty((n, m), dtype=np.int64)
    for i in range(n):
        for c in range(m):
            call_seq[i, c] = c
    r = 0
    while r < len(o_idx):
        i = o_idx[r]
        k = 0
        while r < len(o_idx) and o_idx[r] == i:
            c = o_col[r]
            if o_qty[r] == 0.0:  # a carry row (rule 16) is a cash flow, not an order: vectorbt leaves it out
                r += 1
                continue
            qty_out[i, c], price_out[i, c] = o_qty[r], o_price[r]
            ref_out[i, c], reason_out[i, c] = o_ref[r], o_reason[r]
            call_seq[i, k] = c
            k += 1
            r += 1
        for c in range(m):
            if np.isnan(qty_out[i, c]):
                call_seq[i, k] = c
                k += 1
    return qty_out, price_out, ref_out, reason_out, call_seq


def layout(n: int, m: int, fills: Fills) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`layout_nb` of ``fills``."""
    return layout_nb(n, m, fills.idx, fills.col, fills.qty, fills.price, fills.ref, fills.reason)
