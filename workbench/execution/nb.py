"""The execution rules of docs/execution-semantics.md as numba scalar kernels: one definition.

The vectorized backtest's walk (:mod:`workbench.execution.simulate`), the parameter sweeps and the
bar-by-bar engine (through the wrappers of :mod:`workbench.execution.rules`) all call these. Codes
are small ints (numba-friendly); their names are the tuples in :mod:`workbench.execution.codes`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from workbench.execution.codes import (
    BLACKOUT,
    BREAKER_DAILY_LOSS,
    BREAKER_DRAWDOWN,
    BREAKER_VAR,
    BREAKER_VOLATILITY,
    CAP_CASH,
    CAP_CONCENTRATION,
    CAP_MAX_POSITION,
    CAP_MAX_SHARE,
    CAP_MIN_VOLUME,
    CAP_NONE,
    CAP_PORTFOLIO_LIMIT,
    CAP_TOO_SMALL,
    DAY_NS,
    FUNDING_NS,
    LIQUIDATION_CODE,
    NONE,
    SIZE_FIXED_AMOUNT,
    SIZE_PERCENT_EQUITY,
    STOP_LOSS,
    TAKE_PROFIT,
    TRADING_HOURS,
    TRAILING_STOP,
    WEEKDAY,
    YEAR_NS,
)

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
def buy_fill_nb(ref: float, quantity: float, volume: float, slip: float, impact: float) -> float:
    """Fill price of a market buy at reference ``ref``."""
    return ref * (1.0 + slippage_nb(slip, impact, quantity, volume))


@njit(cache=True)
def sell_fill_nb(ref: float, quantity: float, volume: float, slip: float, impact: float) -> float:
    """Fill price of a market sell at reference ``ref`` (slippage capped at 99 %)."""
    return ref * (1.0 - min(slippage_nb(slip, impact, quantity, volume), MAX_SELL_SLIPPAGE))


@njit(cache=True)
def fee_nb(notional: float, rate: float, fixed_fee: float) -> float:
    """Fee of one order: ``rate`` (taker or maker) × notional plus the fixed fee."""
    return notional * rate + fixed_fee


@njit(cache=True)
def book_buy_nb(
    cash: float, held: float, avg_price: float, quantity: float, price: float, fee: float
) -> tuple[float, float, float]:
    """The ledger after a buy fill: (cash, position, average entry price). Cash pays notional + fee;
    the position's entry price is the quantity-weighted average."""
    notional = quantity * price
    total = held + quantity
    return cash - (notional + fee), total, (held * avg_price + notional) / total


@njit(cache=True)
def book_sell_nb(
    cash: float, held: float, avg_price: float, quantity: float, price: float, fee: float, entry_fees: float
) -> tuple[float, float, float]:
    """The ledger after a sell fill of ``quantity`` (<= ``held``): (cash, position left, the closed part's
    P&L net of ``entry_fees`` attributed to it and this fill's ``fee``)."""
    pnl = quantity * (price - avg_price) - entry_fees - fee
    return cash + (quantity * price - fee), held - quantity, pnl


@njit(cache=True)
def book_short_nb(
    cash: float, held: float, avg_price: float, quantity: float, price: float, fee: float
) -> tuple[float, float, float]:
    """The ledger after a sell of ``quantity`` that opens or adds to a short (``held`` <= 0): (cash,
    position, average entry price). Cash receives the proceeds less the fee; the position goes down."""
    notional = quantity * price
    total = quantity - held  # the short's size after the fill
    return cash + (notional - fee), held - quantity, (-held * avg_price + notional) / total


@njit(cache=True)
def book_cover_nb(
    cash: float, held: float, avg_price: float, quantity: float, price: float, fee: float, entry_fees: float
) -> tuple[float, float, float]:
    """The ledger after a buy of ``quantity`` (<= -``held``) that covers a short: (cash, position left,
    the closed part's P&L net of ``entry_fees`` attributed to it and this fill's ``fee``)."""
    pnl = quantity * (avg_price - price) - entry_fees - fee
    return cash - (quantity * price + fee), held + quantity, pnl


@njit(cache=True)
def target_quantity_nb(mode: int, value: float, equity: float, price: float) -> float:
    """Quantity a new entry asks for at ``price`` before caps (rule 4): SIZING_MODES[mode] with ``value``."""
    if mode == SIZE_FIXED_AMOUNT:
        return value / price
    if mode == SIZE_PERCENT_EQUITY:
        return value * equity / price
    return value


@njit(cache=True)
def buy_quantity_nb(
    quantity: float, open_: float, volume: float, cash: float, taker: float, fixed_fee: float, slip: float,
    impact: float,
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
def cap_entry_nb(
    quantity: float, price: float, volume: float, cash: float, exposure: float, position_value: float,
    max_position: float, portfolio_limit: float, concentration: float, min_volume: float, max_share: float,
    skip_excess: bool, taker: float, fixed_fee: float, slip: float, impact: float,
) -> tuple[float, int]:
    """Rule 4's caps on a buy of ``quantity`` at reference ``price``: (quantity, CAP_* code).

    In order: bar volume >= ``min_volume``; position value <= ``max_position``; exposure <=
    ``portfolio_limit``; position value <= ``concentration`` × equity (cash + exposure); quantity <=
    ``max_share`` × bar volume (cap, or drop when ``skip_excess``); cost + fees <= cash. Limits are
    inf when unset. The code names the last cap that reduced the quantity (CAP_NONE if none); a
    dropped order has quantity 0 and the code of the rule that dropped it.
    """
    if not quantity > MIN_QUANTITY:  # also NaN
        return 0.0, CAP_TOO_SMALL
    if volume < min_volume:
        return 0.0, CAP_MIN_VOLUME
    q, rule = quantity, CAP_NONE
    if position_value + q * price > max_position:
        q, rule = max(max_position - position_value, 0.0) / price, CAP_MAX_POSITION
    if exposure + q * price > portfolio_limit:
        q, rule = max(portfolio_limit - exposure, 0.0) / price, CAP_PORTFOLIO_LIMIT
    if concentration < np.inf:
        room = concentration * (cash + exposure) - position_value
        if q * price > room:
            q, rule = max(room, 0.0) / price, CAP_CONCENTRATION
    if q <= MIN_QUANTITY:
        return 0.0, rule if rule != CAP_NONE else CAP_TOO_SMALL
    cap = max_share * volume
    if q > cap:
        if skip_excess:
            return 0.0, CAP_MAX_SHARE
        q, rule = cap, CAP_MAX_SHARE
    affordable = buy_quantity_nb(q, price, volume, cash, taker, fixed_fee, slip, impact)
    if affordable != q:
        q, rule = affordable, CAP_CASH
    if q <= MIN_QUANTITY:
        return 0.0, rule if rule != CAP_NONE else CAP_TOO_SMALL
    return q, rule


@njit(cache=True)
def stop_levels_nb(entry: float, peak: float, sl: float, tp: float, trail: float) -> tuple[int, float, float]:
    """(stop reason, stop level, take-profit level): the stop is the higher of entry × (1 - sl) (STOP_LOSS)
    and peak × (1 - trail) (TRAILING_STOP), -inf (NONE) if neither; take profit entry × (1 + tp), else
    +inf. NaN disables a fraction."""
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
    return stop_code, stop_lvl, tp_lvl


@njit(cache=True)
def stop_exit_nb(
    open_: float, high: float, low: float, entry: float, peak: float, sl: float, tp: float, trail: float
) -> tuple[int, float]:
    """(reason, reference price) of a stop exit on this bar, or (NONE, nan).

    Levels: entry × (1 - sl), peak × (1 - trail), entry × (1 + tp); NaN disables one. An open
    beyond a level exits at the open; else low <= the higher of stop/trailing exits at it; else
    high >= take profit exits at it.
    """
    stop_code, stop_lvl, tp_lvl = stop_levels_nb(entry, peak, sl, tp, trail)
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
def short_stop_levels_nb(entry: float, trough: float, sl: float, tp: float, trail: float) -> tuple[int, float, float]:
    """:func:`stop_levels_nb` mirrored for a short (rule 15): (stop reason, stop level, take-profit level);
    the stop is the lower of entry × (1 + sl) and trough × (1 + trail) (``trough``: the lowest low since
    entry), +inf (NONE) if neither; take profit entry × (1 - tp), else -inf."""
    stop_lvl = np.inf
    stop_code = NONE
    if not np.isnan(sl):
        stop_lvl = entry * (1.0 + sl)
        stop_code = STOP_LOSS
    if not np.isnan(trail):
        lvl = trough * (1.0 + trail)
        if lvl < stop_lvl:
            stop_lvl = lvl
            stop_code = TRAILING_STOP
    tp_lvl = entry * (1.0 - tp) if not np.isnan(tp) else -np.inf
    return stop_code, stop_lvl, tp_lvl


@njit(cache=True)
def short_stop_exit_nb(
    open_: float, high: float, low: float, entry: float, trough: float, sl: float, tp: float, trail: float
) -> tuple[int, float]:
    """:func:`stop_exit_nb` mirrored for a short position at :func:`short_stop_levels_nb`'s levels. An open
    beyond a level exits at the open; else high >= stop exits at the stop; else low <= take profit at it."""
    stop_code, stop_lvl, tp_lvl = short_stop_levels_nb(entry, trough, sl, tp, trail)
    if open_ >= stop_lvl:
        return stop_code, open_
    if open_ <= tp_lvl:
        return TAKE_PROFIT, open_
    if high >= stop_lvl:
        return stop_code, stop_lvl
    if low <= tp_lvl:
        return TAKE_PROFIT, tp_lvl
    return NONE, np.nan


@njit(cache=True)
def liquidation_price_nb(side: int, entry: float, initial: float, maintenance: float) -> float:
    """The liquidation price of an isolated-margin position (rule 16): the price where its margin
    (entry notional × ``initial``) plus its unrealized P&L falls to ``maintenance`` × its notional:
    long entry × (1 - initial) / (1 - maintenance), short entry × (1 + initial) / (1 + maintenance).
    -inf (long) / +inf (short) when margin is off (``initial`` NaN)."""
    if np.isnan(initial):
        return -np.inf if side > 0 else np.inf
    if side > 0:
        return entry * (1.0 - initial) / (1.0 - maintenance)
    return entry * (1.0 + initial) / (1.0 + maintenance)


@njit(cache=True)
def position_exit_nb(
    side: int, open_: float, high: float, low: float, entry: float, peak: float, sl: float, tp: float,
    trail: float, liq: float,
) -> tuple[int, float]:
    """(reason, reference price) of a stop or liquidation exit of a long (``side`` 1) or short (-1)
    position on this bar, or (NONE, nan). ``peak``: the highest high (long) or lowest low (short) since
    entry; ``liq``: :func:`liquidation_price_nb`. An open beyond the liquidation price liquidates at the
    open; a stop exit at the open or a stop level reached before the liquidation price comes first;
    else a bar through the liquidation price liquidates at it (before take profit)."""
    if side > 0:
        if open_ <= liq:
            return LIQUIDATION_CODE, open_
        code, ref = stop_exit_nb(open_, high, low, entry, peak, sl, tp, trail)
        if code != NONE and (ref == open_ or (code != TAKE_PROFIT and ref >= liq)):
            return code, ref
        if low <= liq:
            return LIQUIDATION_CODE, liq
        return code, ref
    if open_ >= liq:
        return LIQUIDATION_CODE, open_
    code, ref = short_stop_exit_nb(open_, high, low, entry, peak, sl, tp, trail)
    if code != NONE and (ref == open_ or (code != TAKE_PROFIT and ref <= liq)):
        return code, ref
    if high >= liq:
        return LIQUIDATION_CODE, liq
    return code, ref


@njit(cache=True)
def carry_nb(quantity: float, price: float, funding: float, borrow: float, elapsed_ns: int) -> tuple[float, float]:
    """The carrying costs of a position of signed ``quantity`` at ``price`` for one bar (rule 16):
    (funding, interest), both cash flows (negative = paid). Funding: -quantity × price × ``funding``
    (the rate due at this bar; longs pay a positive rate, shorts receive it); interest: a short pays
    |quantity| × price × ``borrow`` (an annual rate) × the time since the previous bar, ``elapsed_ns``, as a
    share of a 365-day year."""
    fund = -quantity * price * funding
    interest = quantity * price * (borrow * (elapsed_ns / YEAR_NS)) if quantity < 0.0 else 0.0
    return fund, interest


@njit(cache=True)
def funding_due_nb(prev_ns: int, now_ns: int, rate: float) -> float:
    """The constant funding ``rate`` times the funding times (every 8 h from 00:00 UTC) in (prev, now]."""
    return rate * (now_ns // FUNDING_NS - prev_ns // FUNDING_NS)


@njit(cache=True)
def in_window_nb(second: float, start: float, end: float) -> bool:
    """Is wall-clock ``second`` of the day in [start, end)? A window with start > end wraps midnight."""
    if start < end:
        return start <= second < end
    return second >= start or second < end


@njit(cache=True)
def time_block_nb(wall_ns: int, weekdays: np.ndarray, windows: np.ndarray) -> int:
    """The time rule (WEEKDAY, TRADING_HOURS, BLACKOUT) that forbids an entry at local wall-clock time
    ``wall_ns`` (ns since 1970-01-01 00:00 on the zone's clock), or 0.

    ``weekdays`` (7,) bool, Monday first; ``windows`` (k, 2) seconds of the day: row 0 the trading
    hours (NaN = none), the other rows blackouts. The day and minute are the wall clock's, so a
    daylight-saving day has 23 or 25 hours and 09:30 is 09:30 on it.
    """
    day = wall_ns // DAY_NS
    if not weekdays[(day + 3) % 7]:  # 1970-01-01 was a Thursday
        return WEEKDAY
    second = (wall_ns - day * DAY_NS) / 1e9
    if not np.isnan(windows[0, 0]) and not in_window_nb(second, windows[0, 0], windows[0, 1]):
        return TRADING_HOURS
    for r in range(1, windows.shape[0]):
        if in_window_nb(second, windows[r, 0], windows[r, 1]):
            return BLACKOUT
    return 0


@njit(cache=True)
def time_blocks_nb(wall_ns: np.ndarray, weekdays: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """:func:`time_block_nb` of every time in ``wall_ns``, as int8 codes."""
    out = np.empty(len(wall_ns), dtype=np.int8)
    for i in range(len(wall_ns)):
        out[i] = time_block_nb(wall_ns[i], weekdays, windows)
    return out


@njit(cache=True)
def breaker_nb(equity: float, day_start: float, peak: float, max_daily_loss: float, max_drawdown: float) -> int:
    """The circuit-breaker limit ``equity`` breaches (BREAKER_DAILY_LOSS before BREAKER_DRAWDOWN), or 0.
    NaN disables a limit; ``day_start`` is the equity at the start of the UTC day, ``peak`` the highest."""
    if not np.isnan(max_daily_loss) and equity <= day_start * (1.0 - max_daily_loss):
        return BREAKER_DAILY_LOSS
    if not np.isnan(max_drawdown) and equity <= peak * (1.0 - max_drawdown):
        return BREAKER_DRAWDOWN
    return 0


@njit(cache=True)
def tail_nb(ring: np.ndarray, count: int, r: float, day_bars: float, max_vol: float,
            max_var: float) -> tuple[int, int, int, float]:
    """The tail-risk breakers (rule 10): push the bar's equity return ``r`` into ``ring`` (the last
    ``len(ring)`` returns, ``count`` pushed before) and, once the window is full, measure it over a day
    (``day_bars`` bars): realized volatility = sample standard deviation x sqrt(day_bars), and 95 %
    value at risk = minus the 5 % quantile (NumPy's linear) x sqrt(day_bars). Returns (count + 1,
    code, level, value): level 2 when a measure is past twice its limit, 1 past its limit, else 0,
    with its BREAKER_* code and value (volatility first). NaN disables a limit."""
    cap = len(ring)
    ring[count % cap] = r
    count += 1
    if count < cap:
        return count, 0, 0, 0.0
    scale = np.sqrt(day_bars)
    best_code, best_level, best_value = 0, 0, 0.0
    if not np.isnan(max_vol):
        vol = np.std(ring) * np.sqrt(cap / (cap - 1.0)) * scale
        level = 2 if vol > 2.0 * max_vol else (1 if vol > max_vol else 0)
        if level > best_level:
            best_code, best_level, best_value = BREAKER_VOLATILITY, level, vol
    if not np.isnan(max_var):
        var = 0.0 - np.quantile(ring, 0.05) * scale
        level = 2 if var > 2.0 * max_var else (1 if var > max_var else 0)
        if level > best_level:
            best_code, best_level, best_value = BREAKER_VAR, level, var
    return count, best_code, best_level, best_value


@njit(cache=True)
def gap_nb(prev_close: float, open_: float, max_gap: float, side: float = 1.0) -> tuple[int, float]:
    """The gap breaker (rule 10): (level, drop) of a position on ``side`` (> 0 long, < 0 short) opening at
    ``open_`` after ``prev_close``: drop = the gap against it, 1 - open / previous close for a long, open /
    previous close - 1 for a short; level 2 past twice ``max_gap``, 1 past it, else 0."""
    if not prev_close > 0.0:
        return 0, 0.0
    drop = 1.0 - open_ / prev_close
    if side < 0.0:
        drop = -drop
    return (2 if drop > 2.0 * max_gap else (1 if drop > max_gap else 0)), drop


@njit(cache=True)
def window_full_nb(times: np.ndarray, count: int, now: int, window_ns: int) -> bool:
    """Ring buffer ``times`` (capacity = limit) holding the last ``count`` event times: are there
    ``len(times)`` events after ``now - window_ns``? (The limit of a rate or burst rule is reached.)"""
    cap = len(times)
    if count < cap:
        return False
    return times[count % cap] > now - window_ns  # the oldest of the last ``cap`` events
