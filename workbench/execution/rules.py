"""docs/execution-semantics.md for one order or one bar: thin Python wrappers over the numba rules.

The bar-by-bar engine (trader, risk engine, paper broker) calls these on plain floats and
datetimes; each wraps the kernel of :mod:`workbench.execution.nb` that the vectorized walk
(:mod:`workbench.execution.simulate`) calls, so both speeds share one definition of every rule.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from workbench.config import (
    CircuitBreaker,
    CommissionModel,
    PositionSizing,
    SessionConfig,
    SlippageModel,
    TimeRestrictions,
    VolumeRule,
)
from workbench.domain import Order, OrderStatus, OrderType, Side
from workbench.execution import codes, nb

# order reasons (the trade log's exit_reason for exits)
(ENTRY, SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, TIME_LIMIT, CLOSE_ALL, END, EVENT,
 LIQUIDATION) = codes.REASONS[1:11]

# entry-cap rule names, as returned by cap_entry and used in risk rejections
(MIN_VOLUME, MAX_POSITION, PORTFOLIO_LIMIT, CONCENTRATION, MAX_SHARE, CASH, TOO_SMALL) = codes.CAP_RULES[1:]


@dataclass(slots=True)
class Bar:
    """One closed OHLCV bar; ``time`` is its open time (timezone-aware, UTC)."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def slippage_fraction(slippage: SlippageModel, quantity: float, bar_volume: float) -> float:
    """Fixed ``bps``/1e4, plus for model 'volume' ``impact`` × min(quantity / bar volume, 1) (no volume = 1)."""
    return nb.slippage_nb(slippage.bps / 1e4, _impact(slippage), quantity, bar_volume)


def _impact(slippage: SlippageModel) -> float:
    return slippage.impact if slippage.model == "volume" else 0.0


def fill_price(side: Side, ref_price: float, quantity: float, bar_volume: float, slippage: SlippageModel) -> float:
    """Market fill price: buy ``ref × (1 + s)``, sell ``ref × (1 - s)`` with s capped at 99 % for sells."""
    fill = nb.buy_fill_nb if side is Side.BUY else nb.sell_fill_nb
    return fill(ref_price, quantity, bar_volume, slippage.bps / 1e4, _impact(slippage))


def fee(notional: float, commission: CommissionModel, maker: bool = False) -> float:
    """Fee of one order: maker or taker fraction of ``notional`` plus the fixed fee."""
    return nb.fee_nb(notional, commission.maker if maker else commission.taker, commission.fixed)


def slippage_cost(side: Side, quantity: float, price: float, ref_price: float) -> float:
    """Money lost to slippage on a fill of ``quantity`` at ``price`` against the decision price ``ref_price``:
    buy ``q × (price - ref)``, sell ``q × (ref - price)`` (negative: a better price than decided)."""
    return quantity * (price - ref_price if side is Side.BUY else ref_price - price)


def reserved_cash(orders: Iterable[Order], commission: CommissionModel) -> float:
    """Cash that open buy orders could still spend, so new entries do not spend it too: each open buy's
    remaining quantity × its limit price (a market order in flight: its decision price ``ref_price``)
    plus its fee (maker for limit, taker for market orders)."""
    total = 0.0
    for o in orders:
        if o.side is not Side.BUY or o.status not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            continue
        limit = o.type is OrderType.LIMIT
        price = o.limit_price if limit else o.ref_price
        if price is None or not o.remaining > 0.0:
            continue
        notional = o.remaining * price
        total += notional + fee(notional, commission, maker=limit)
    return total


def affordable_quantity(
    quantity: float,
    ref_price: float,
    bar_volume: float,
    cash: float,
    commission: CommissionModel,
    slippage: SlippageModel,
    maker: bool = False,
) -> float:
    """``quantity`` reduced so that quantity × fill price + fee <= cash; 0 if not even the fixed fee is covered.

    Market buys (``maker=False``) pay slippage and the taker fee; the fill price depends on the
    quantity under the volume model, so the cap solves ``a q² + b q = cash - fixed`` exactly.
    A limit fill (``maker=True``) is at ``ref_price`` exactly with the maker fee.
    """
    if not maker:
        return nb.buy_quantity_nb(
            quantity, ref_price, bar_volume, cash, commission.taker, commission.fixed,
            slippage.bps / 1e4, _impact(slippage),
        )
    if quantity * ref_price * (1.0 + commission.maker) + commission.fixed <= cash:
        return quantity
    budget = cash - commission.fixed
    return budget / (ref_price * (1.0 + commission.maker)) if budget > 0.0 else 0.0


def target_quantity(sizing: PositionSizing, equity: float, price: float, factor: float = 1.0) -> float:
    """Quantity the sizing mode asks for at ``price`` (before caps), times ``factor``."""
    q = nb.target_quantity_nb(codes.SIZING_MODES.index(sizing.mode), float(sizing.value), float(equity), float(price))
    return q if factor == 1.0 else q * factor


def cap_entry(
    quantity: float,
    price: float,
    bar_volume: float,
    cash: float,
    exposure: float,
    commission: CommissionModel,
    slippage: SlippageModel,
    volume: VolumeRule,
    *,
    max_position: float | None = None,
    portfolio_limit: float | None = None,
    concentration_limit: float | None = None,
    position_value: float = 0.0,
) -> tuple[float, str]:
    """Semantics rule 4's caps on a buy of ``quantity`` at reference ``price``: ``(quantity, rule)``
    (:func:`workbench.execution.nb.cap_entry_nb`; None = no limit). ``rule`` names the last cap that
    reduced the quantity ("" if none); a dropped order returns quantity 0 and the rule that dropped it.
    """
    inf = math.inf
    q, code = nb.cap_entry_nb(
        float(quantity), float(price), float(bar_volume), float(cash), float(exposure), float(position_value),
        inf if max_position is None else float(max_position),
        inf if portfolio_limit is None else float(portfolio_limit),
        inf if concentration_limit is None else float(concentration_limit),
        float(volume.min_bar_volume), float(volume.max_share), volume.on_excess == "skip",
        float(commission.taker), float(commission.fixed), slippage.bps / 1e4, _impact(slippage),
    )
    return q, codes.CAP_RULES[code]


def entry_quantity(
    sizing: PositionSizing,
    equity: float,
    price: float,
    cash: float,
    exposure: float,
    bar_volume: float,
    commission: CommissionModel,
    slippage: SlippageModel,
    volume: VolumeRule,
    *,
    max_position: float | None = None,
    portfolio_limit: float | None = None,
) -> tuple[float, str]:
    """Size a new entry at the fill bar's open (``price``) and apply the caps: ``(quantity, rule)``."""
    q = target_quantity(sizing, equity, price)
    return cap_entry(
        q, price, bar_volume, cash, exposure, commission, slippage, volume,
        max_position=max_position, portfolio_limit=portfolio_limit,
    )


def stop_exit(
    open_: float,
    high: float,
    low: float,
    entry: float,
    peak: float,
    stop_loss: float | None,
    take_profit: float | None,
    trailing_stop: float | None,
) -> tuple[str, float] | None:
    """``(reason, reference price)`` of a stop exit on this bar, or None (semantics rule 5).

    Levels: entry × (1 - stop_loss), peak × (1 - trailing_stop) (the higher of the two is the
    stop), entry × (1 + take_profit). An open beyond a level exits at the open; else low <= stop
    exits at the stop; else high >= take profit exits at it.
    """
    nan = math.nan
    code, price = nb.stop_exit_nb(
        open_, high, low, entry, peak,
        nan if stop_loss is None else stop_loss,
        nan if take_profit is None else take_profit,
        nan if trailing_stop is None else trailing_stop,
    )
    return None if code == codes.NONE else (codes.REASONS[code], price)


def position_exit(
    side: int, bar: Bar, entry: float, peak: float, stop_loss: float | None, take_profit: float | None,
    trailing_stop: float | None, liquidation: float | None = None,
) -> tuple[str, float] | None:
    """``(reason, reference price)`` of a stop or liquidation exit of a long (``side`` 1) or short (-1)
    position on ``bar``, or None (rules 5, 15, 16: :func:`workbench.execution.nb.position_exit_nb`; a long
    without a liquidation price is :func:`stop_exit`). ``peak``: the highest high of a long since entry,
    the lowest low of a short."""
    if side > 0 and liquidation is None:
        return stop_exit(bar.open, bar.high, bar.low, entry, peak, stop_loss, take_profit, trailing_stop)
    nan = math.nan
    liq = liquidation if liquidation is not None else (-math.inf if side > 0 else math.inf)
    code, price = nb.position_exit_nb(
        side, bar.open, bar.high, bar.low, entry, peak,
        nan if stop_loss is None else stop_loss,
        nan if take_profit is None else take_profit,
        nan if trailing_stop is None else trailing_stop, liq,
    )
    return None if code == codes.NONE else (codes.REASONS[code], price)


def stop_levels(
    entry: float, peak: float, stop_loss: float | None, take_profit: float | None, trailing_stop: float | None,
    side: int = 1,
) -> tuple[str, float, float]:
    """``(stop reason, stop level, take-profit level)`` of a position (semantics rule 5, the levels
    :func:`stop_exit` checks): the stop is the higher of entry × (1 - stop_loss) ("stop_loss") and
    peak × (1 - trailing_stop) ("trailing_stop"), ``("", -inf)`` if neither is set; take profit
    entry × (1 + take_profit), +inf if unset. Live sessions place these levels on the exchange. A short
    (``side`` -1, ``peak`` its lowest low) has them mirrored (rule 15): the stop is the lower of
    entry × (1 + stop_loss) and peak × (1 + trailing_stop) (+inf if neither), take profit entry × (1 -
    take_profit) (-inf if unset)."""
    nan = math.nan
    levels = nb.stop_levels_nb if side > 0 else nb.short_stop_levels_nb
    code, stop, tp = levels(
        float(entry), float(peak),
        nan if stop_loss is None else stop_loss,
        nan if take_profit is None else take_profit,
        nan if trailing_stop is None else trailing_stop,
    )
    return ("" if code == codes.NONE else codes.REASONS[code]), stop, tp


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _seconds(hhmm: str) -> float:
    h, m = hhmm.split(":")
    return int(h) * 3600.0 + int(m) * 60.0


def _time_rules(rules: TimeRestrictions) -> tuple[np.ndarray, np.ndarray]:
    """``rules`` as :func:`nb.time_block_nb` takes them: (weekdays (7,) bool, windows (k, 2) seconds)."""
    th = rules.trading_hours
    hours = None if th is None else (th.start, th.end)
    return _time_arrays(tuple(rules.weekdays), hours, tuple((w.start, w.end) for w in rules.blackouts))


@lru_cache(maxsize=64)
def _time_arrays(
    weekdays: tuple[int, ...], hours: tuple[str, str] | None, blackouts: tuple[tuple[str, str], ...]
) -> tuple[np.ndarray, np.ndarray]:
    days = np.zeros(7, dtype=np.bool_)
    days[list(weekdays)] = True
    rows = [(math.nan, math.nan) if hours is None else (_seconds(hours[0]), _seconds(hours[1]))]
    rows += [(_seconds(s), _seconds(e)) for s, e in blackouts]
    return days, np.array(rows, dtype=float)


def wall_clock_ns(index: pd.DatetimeIndex, zone: str) -> np.ndarray:
    """Each time of ``index`` (UTC) on the wall clock of ``timezone``, as ns since 1970-01-01 00:00 local."""
    utc = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    if zone == "UTC":
        return utc.as_unit("ns").asi8
    return utc.tz_convert(zone).tz_localize(None).as_unit("ns").asi8


def _wall_ns(timestamp: datetime, zone: str) -> int:
    """One time on the wall clock of ``timezone`` (see :func:`wall_clock_ns`)."""
    if isinstance(timestamp, pd.Timestamp):
        utc_ns = int(timestamp.value)
    else:
        utc_ns = (timestamp - _EPOCH) // timedelta(microseconds=1) * 1000
    offset = timestamp.astimezone(_zone(zone)).utcoffset() or timedelta(0)
    return utc_ns + offset // timedelta(microseconds=1) * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def time_block(timestamp: datetime, rules: TimeRestrictions) -> str:
    """The time rule that forbids a new entry at ``timestamp`` ("weekday", "trading_hours",
    "blackout"), or "" if entries are allowed (semantics rule 7, on ``rules.timezone``'s wall clock)."""
    if rules.unrestricted:
        return ""
    days, windows = _time_rules(rules)
    daily = codes.TIME_RULES[nb.time_block_nb(_wall_ns(timestamp, rules.timezone), days, windows)]
    if daily or not rules.events:
        return daily
    t = pd.Timestamp(timestamp)
    return codes.EVENT if _in_events(np.array([t.value], dtype=np.int64), rules)[0] else ""


def entry_allowed_at(timestamp: datetime, rules: TimeRestrictions) -> bool:
    """May a new entry fill at ``timestamp`` (the fill bar's open time)?"""
    return not time_block(timestamp, rules)


def entry_allowed(index: pd.DatetimeIndex, rules: TimeRestrictions) -> np.ndarray:
    """Per bar of ``index``: may a new entry fill at this bar's open time? (:func:`time_block`, vectorized.)"""
    if rules.unrestricted:
        return np.ones(len(index), dtype=bool)
    days, windows = _time_rules(rules)
    allowed = nb.time_blocks_nb(wall_clock_ns(index, rules.timezone), days, windows) == 0
    if rules.events:
        allowed &= ~_in_events(index.as_unit("ns").asi8, rules)
    return allowed


def _in_events(utc_ns: np.ndarray, rules: TimeRestrictions, flatten_only: bool = False) -> np.ndarray:
    """Per time (ns since the epoch, UTC): inside any of ``rules.events`` (start <= t < end)? With
    ``flatten_only``, only the windows that flatten."""
    inside = np.zeros(len(utc_ns), dtype=bool)
    for ev in rules.events:
        if ev.flatten or not flatten_only:
            inside |= (utc_ns >= pd.Timestamp(ev.start).value) & (utc_ns < pd.Timestamp(ev.end).value)
    return inside


def event_flatten(timestamp: datetime, rules: TimeRestrictions) -> bool:
    """Must held positions be sold at the bar opening at ``timestamp`` (inside a flattening event window)?"""
    return any(ev.flatten for ev in rules.events) and bool(
        _in_events(np.array([pd.Timestamp(timestamp).value], dtype=np.int64), rules, True)[0])


def flatten_at(index: pd.DatetimeIndex, rules: TimeRestrictions) -> np.ndarray:
    """Per bar of ``index``: :func:`event_flatten`, vectorized (the walk sells held positions there)."""
    if not any(ev.flatten for ev in rules.events):
        return np.zeros(len(index), dtype=bool)
    return _in_events(index.as_unit("ns").asi8, rules, True)


def day_bars(config: SessionConfig) -> float:
    """Bars in a day at the config's timeframe: the tail breakers' scale (square root of it) to a day."""
    return codes.DAY_NS / pd.Timedelta(config.data.timeframe).value


def breaker_breach(equity: float, day_start: float, peak: float, breaker: CircuitBreaker) -> str:
    """The circuit-breaker limit ``equity`` breaches ("daily_loss" before "drawdown"), or "" (rule 10)."""
    nan = math.nan
    code = nb.breaker_nb(
        float(equity), float(day_start), float(peak),
        nan if breaker.max_daily_loss is None else breaker.max_daily_loss,
        nan if breaker.max_drawdown is None else breaker.max_drawdown,
    )
    return codes.BREAKER_REASONS[code]


def warm_up() -> None:
    """Load the numba kernels the session engine calls (from numba's cache, else compile them) now, so
    that a session's first order does not pay for it (~0.5 s) mid-run."""
    slip, comm = SlippageModel(), CommissionModel()
    target_quantity(PositionSizing(), 1.0, 1.0)
    cap_entry(1.0, 1.0, 1.0, 10.0, 0.0, comm, slip, VolumeRule())
    affordable_quantity(1.0, 1.0, 1.0, 10.0, comm, slip)
    for side in Side:
        fill_price(side, 1.0, 1.0, 1.0, slip)
    fee(1.0, comm)
    stop_exit(1.0, 1.0, 1.0, 1.0, 1.0, None, None, None)
    time_block(datetime(2024, 1, 1, tzinfo=timezone.utc), TimeRestrictions(weekdays=[0]))
    breaker_breach(1.0, 1.0, 1.0, CircuitBreaker())
    nb.tail_nb(np.zeros(2), 0, 0.0, 1.0, math.nan, math.nan)  # the tail breakers' window
    nb.book_buy_nb(1.0, 0.0, 0.0, 1.0, 1.0, 0.0)  # the ledger's kernels
    nb.book_sell_nb(1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)
