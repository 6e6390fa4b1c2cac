"""The execution kernel: docs/execution-semantics.md, bar by bar, in one cached numba function.

:func:`simulate_nb` walks the bars once and decides every fill (bar, symbol, quantity, price,
reason); vectorbt then replays those fills (``Portfolio.from_orders``) for its records and
analytics. Pure numba scalars/arrays, so the paper engine can call the same helpers
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

    quantity is NaN where there is no order, > 0 for a buy and -inf for a sell of the whole
    position; call_seq orders each bar's sells before its buys (buys in symbol order).
    """
    n, m = open_.shape
    qty_out = np.full((n, m), np.nan)
    price_out = np.full((n, m), np.nan)
    ref_out = np.full((n, m), np.nan)
    reason_out = np.zeros((n, m), dtype=np.int8)
    call_seq = np.empty((n, m), dtype=np.int64)

    cash = init_cash
    pos = np.zeros(m)
    entry_px = np.zeros(m)
    entry_t = np.zeros(m, dtype=np.int64)
    peak = np.zeros(m)
    mark = np.full(m, np.nan)  # valuation price: this bar's open, else the last close
    was_long = np.zeros(m, dtype=np.bool_)

    for i in range(n):
        k = 0
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
            qty_out[i, c] = -np.inf
            price_out[i, c] = fill
            ref_out[i, c] = ref
            reason_out[i, c] = code
            call_seq[i, k] = c
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
            entry_px[c] = fill
            entry_t[c] = times[i]
            peak[c] = -np.inf
            qty_out[i, c] = q
            price_out[i, c] = fill
            ref_out[i, c] = o
            reason_out[i, c] = ENTRY
            call_seq[i, k] = c
            k += 1
        # 3) the rest of the call sequence; trailing peaks and marks see the whole bar
        for c in range(m):
            if np.isnan(qty_out[i, c]):
                call_seq[i, k] = c
                k += 1
            if pos[c] > 0.0 and high[i, c] > peak[c]:
                peak[c] = high[i, c]
            if not np.isnan(close[i, c]):
                mark[c] = close[i, c]
    return qty_out, price_out, ref_out, reason_out, call_seq
