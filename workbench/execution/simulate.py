"""The execution kernel: docs/execution-semantics.md, bar by bar, in one cached numba function.

:func:`fills_nb` walks the bars once and decides every fill (bar, symbol, quantity, price,
reason), jumping over runs of bars where no signal can act; :func:`simulate_nb` lays those fills
out per bar and symbol for run_backtest, whose booking (and vectorbt's ``Portfolio.from_orders``)
replays them for records and analytics; the parameter sweep books :func:`fills_nb`'s list
directly. Pure numba scalars/arrays, so the paper engine can call the same helpers
(:func:`buy_quantity_nb`, :func:`stop_exit_nb`, :func:`slippage_nb`) from Python.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# reason codes of an order (``REASONS[code]`` is the name used in trade logs)
NONE, ENTRY, EXIT_SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, TIME_LIMIT = range(7)
REASONS: tuple[str, ...] = ("", "entry", "signal", "stop_loss", "take_profit", "trailing_stop", "time_limit")
SIZING_MODES: tuple[str, ...] = ("fixed_amount", "percent_equity", "fixed_quantity")
MIN_QUANTITY = 1e-12  # vectorbt ignores smaller orders (its abs_tol)
MAX_SELL_SLIPPAGE = 0.99  # a sell never fills below 1 % of its reference price


@njit(cache=True)
def slippage_nb(slip: float, impact: float, quantity: float, volume: float) -> float:
    """Slippage fraction: fixed part plus ``impact`` × volume share (share capped at 1; no volume = 1)."""
    if impact == 0.0:
        return slip
    share = quantity / volume if volume > 0.0 else 1.0
    return slip + impact * min(share, 1.0)


@njit(cache=True)
def buy_quantity_nb(
    quantity: float, open_: float, volume: float, cash: float, taker: float, fixed_fee: float, slip: float, impact: float
) -> float:
    """``quantity`` reduced so that quantity × fill price × (1 + taker) + fixed fee <= cash.

    The fill price depends on the quantity under the volume model, so the cap solves
    ``a q² + b q = cash - fixed`` exactly (callers keep ``quantity <= volume``). Returns 0 when
    not even the fixed fee is covered.
    """
    fill = open_ * (1.0 + slippage_nb(slip, impact, quantity, volume))
    if quantity * fill * (1.0 + taker) + fixed_fee <= cash:
        return quantity
    budget = cash - fixed_fee
    if budget <= 0.0:
        return 0.0
    b = open_ * (1.0 + slip) * (1.0 + taker)
    a = open_ * (1.0 + taker) * impact / volume if volume > 0.0 else 0.0
    if a == 0.0:
        return budget / b
    return 2.0 * budget / (b + np.sqrt(b * b + 4.0 * a * budget))  # root of a q² + b q = budget


@njit(cache=True)
def stop_exit_nb(
    open_: float, high: float, low: float, entry: float, peak: float, sl: float, tp: float, trail: float
) -> tuple[int, float]:
    """(reason, reference price) of a stop exit on this bar, or (NONE, nan).

    Levels: entry × (1 - sl), peak × (1 - trail), entry × (1 + tp); NaN disables one. An open
    beyond a level exits at the open; else low <= the higher of stop/trailing exits at it; else
    high >= take profit exits at it.
    """
    stop_lvl = -np.inf
    stop_code = NONE
    if not np.isnan(sl):
        stop_lvl = entry * (1.0 - sl)
        stop_code = STOP_LOSS
    if not np.isnan(trail):
        lvl = peak * (1.0 - trail)
        if lvl > stop_lvl:
            stop_lvl = lvl
            stop_code = TRAILING_STOP
    tp_lvl = entry * (1.0 + tp) if not np.isnan(tp) else np.inf
    if open_ <= stop_lvl:
        return stop_code, open_
    if open_ >= tp_lvl:
        return TAKE_PROFIT, open_
    if low <= stop_lvl:
        return stop_code, stop_lvl
    if high >= tp_lvl:
        return TAKE_PROFIT, tp_lvl
    return NONE, np.nan


@njit(cache=True)
def _grow(a: np.ndarray) -> np.ndarray:
    """``a`` copied into an array twice as long (the rest uninitialised)."""
    out = np.empty(2 * len(a), dtype=a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True)
def next_event_nb(i: int, pos: np.ndarray, buy_sig: np.ndarray, sell_sig: np.ndarray, allowed: np.ndarray) -> int:
    """First bar >= ``i`` where a signal can act on positions ``pos``: an exit signal of a held
    symbol or an allowed entry signal of a flat one; ``len(buy_sig)`` if none. (The loops run from
    0 over views: numba then drops its negative-index checks, twice as fast.)"""
    n, m = buy_sig.shape
    buys, sells, ok = buy_sig[i:], sell_sig[i:], allowed[i:]
    if m == 1:  # the common case, one tight scan
        if pos[0] > 0.0:
            col = sells[:, 0]
            for j in range(len(col)):
                if col[j]:
                    return i + j
        else:
            col = buys[:, 0]
            for j in range(len(col)):
                if col[j] and ok[j]:
                    return i + j
        return n
    for j in range(len(ok)):
        for c in range(m):
            if pos[c] > 0.0:
                if sells[j, c]:
                    return i + j
            elif buys[j, c] and ok[j]:
                return i + j
    return n


@njit(cache=True)
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
    init_cash: float,
    sizing_mode: int,
    sizing_value: float,
    max_position: float,  # inf = none
    portfolio_limit: float,  # inf = none
    taker: float,
    fixed_fee: float,
    slip: float,
    impact: float,
    min_volume: float,
    max_share: float,
    skip_excess: bool,
    sl: float,  # NaN = none
    tp: float,
    trail: float,
    max_hold_ns: int,  # < 0 = none
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every fill of a backtest, in execution order: (bar, column, quantity, fill price, reference
    price, reason) arrays, quantity > 0 for a buy and -inf for a sell of the whole position; each
    bar's sells come before its buys (buys in symbol order).

    Bars where nothing can happen are skipped in one scan (:func:`next_event_nb`): no entry signal
    of a flat symbol, no exit signal of a held one, and no stop or holding limit to watch (or
    nothing held). They would only move the valuation marks, which are carried over the skipped
    run, so the fills are those of a walk over every bar.
    """
    n, m = open_.shape
    size = 64
    o_idx = np.empty(size, dtype=np.int64)
    o_col = np.empty(size, dtype=np.int64)
    o_qty = np.empty(size)
    o_price = np.empty(size)
    o_ref = np.empty(size)
    o_reason = np.empty(size, dtype=np.int8)
    k = 0

    cash = init_cash
    pos = np.zeros(m)
    entry_px = np.zeros(m)
    entry_t = np.zeros(m, dtype=np.int64)
    peak = np.zeros(m)
    mark = np.full(m, np.nan)  # valuation price: this bar's open, else the last close
    was_long = np.zeros(m, dtype=np.bool_)
    watch = not (np.isnan(sl) and np.isnan(tp) and np.isnan(trail)) or max_hold_ns >= 0
    held = 0  # symbols with a position

    i = 0
    while i < n:
        if held == 0 or not watch:
            j = next_event_nb(i, pos, buy_sig, sell_sig, allowed)
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
        while k + m > len(o_idx):  # room for this bar's orders (at most one per symbol)
            o_idx, o_col, o_qty = _grow(o_idx), _grow(o_col), _grow(o_qty)
            o_price, o_ref, o_reason = _grow(o_price), _grow(o_ref), _grow(o_reason)
        for c in range(m):
            was_long[c] = pos[c] > 0.0
            if not np.isnan(open_[i, c]):
                mark[c] = open_[i, c]
        # 1) exits: signal, holding time, stops
        for c in range(m):
            o = open_[i, c]
            if pos[c] <= 0.0 or np.isnan(o):
                continue
            code = NONE
            ref = o
            if sell_sig[i, c]:
                code = EXIT_SIGNAL
            elif max_hold_ns >= 0 and times[i] - entry_t[c] >= max_hold_ns:
                code = TIME_LIMIT
            else:
                code, ref = stop_exit_nb(o, high[i, c], low[i, c], entry_px[c], peak[c], sl, tp, trail)
            if code == NONE:
                continue
            s = min(slippage_nb(slip, impact, pos[c], volume[i, c]), MAX_SELL_SLIPPAGE)
            fill = ref * (1.0 - s)
            proceeds = pos[c] * fill
            fee = proceeds * taker + fixed_fee
            if proceeds - fee < 0.0:  # fees exceed proceeds: vectorbt rejects such a sell
                continue
            cash += proceeds - fee
            pos[c] = 0.0
            held -= 1
            o_idx[k], o_col[k], o_qty[k], o_price[k], o_ref[k], o_reason[k] = i, c, -np.inf, fill, ref, code
            k += 1
        # 2) entries, in symbol order
        for c in range(m):
            o = open_[i, c]
            if was_long[c] or not buy_sig[i, c] or not allowed[i] or np.isnan(o) or o <= 0.0:
                continue
            vol = volume[i, c]
            if vol < min_volume:
                continue
            exposure = 0.0
            for j in range(m):
                if pos[j] > 0.0:
                    exposure += pos[j] * mark[j]
            if sizing_mode == 0:
                q = sizing_value / o
            elif sizing_mode == 1:
                q = sizing_value * (cash + exposure) / o
            else:
                q = sizing_value
            if q * o > max_position:
                q = max_position / o
            if exposure + q * o > portfolio_limit:
                q = max(portfolio_limit - exposure, 0.0) / o
            cap = max_share * vol
            if q > cap:
                if skip_excess:
                    continue
                q = cap
            q = buy_quantity_nb(q, o, vol, cash, taker, fixed_fee, slip, impact)
            if q <= MIN_QUANTITY:
                continue
            fill = o * (1.0 + slippage_nb(slip, impact, q, vol))
            cost = q * fill
            cash = max(cash - (cost + cost * taker + fixed_fee), 0.0)
            pos[c] = q
            held += 1
            entry_px[c] = fill
            entry_t[c] = times[i]
            peak[c] = -np.inf
            o_idx[k], o_col[k], o_qty[k], o_price[k], o_ref[k], o_reason[k] = i, c, q, fill, o, ENTRY
            k += 1
        # 3) trailing peaks and marks see the whole bar
        for c in range(m):
            if pos[c] > 0.0 and high[i, c] > peak[c]:
                peak[c] = high[i, c]
            if not np.isnan(close[i, c]):
                mark[c] = close[i, c]
        i += 1
    return o_idx[:k], o_col[:k], o_qty[:k], o_price[:k], o_ref[:k], o_reason[:k]


@njit(cache=True)
def simulate_nb(
    times: np.ndarray,  # int64 ns, bar open times (n,)
    open_: np.ndarray,  # (n, m) float; NaN where a symbol has no bar
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    buy_sig: np.ndarray,  # (n, m) bool: entry signal of the previous bar, conflicts removed
    sell_sig: np.ndarray,  # (n, m) bool: exit signal of the previous bar, conflicts removed
    allowed: np.ndarray,  # (n,) bool: entries allowed at this bar's open (time restrictions)
    init_cash: float,
    sizing_mode: int,
    sizing_value: float,
    max_position: float,  # inf = none
    portfolio_limit: float,  # inf = none
    taker: float,
    fixed_fee: float,
    slip: float,
    impact: float,
    min_volume: float,
    max_share: float,
    skip_excess: bool,
    sl: float,  # NaN = none
    tp: float,
    trail: float,
    max_hold_ns: int,  # < 0 = none
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fills of a whole backtest: (quantity, fill price, reference price, reason, call_seq), each (n, m).

    :func:`fills_nb`'s orders laid out per bar and symbol: quantity is NaN where there is no
    order, > 0 for a buy and -inf for a sell of the whole position; call_seq orders each bar's
    sells before its buys (buys in symbol order), then the symbols without an order.
    """
    o_idx, o_col, o_qty, o_price, o_ref, o_reason = fills_nb(
        times, open_, high, low, close, volume, buy_sig, sell_sig, allowed, init_cash, sizing_mode, sizing_value,
        max_position, portfolio_limit, taker, fixed_fee, slip, impact, min_volume, max_share, skip_excess, sl, tp,
        trail, max_hold_ns,
    )
    n, m = open_.shape
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
