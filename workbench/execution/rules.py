"""The numbers of docs/execution-semantics.md as pure Python functions on plain floats.

One definition for the paper engine: fill prices, fees, entry sizing and its caps, stop exits,
time restrictions. Slippage, the cash cap of a market buy and stop exits call the numba helpers
of :mod:`workbench.backtest.kernel` (the vectorized backtest's kernel) directly, so both speeds
share one definition; tests/test_engine_execution.py checks the rest against it, which is what
makes paper/backtest parity hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from workbench.backtest import kernel
from workbench.backtest.kernel import MAX_SELL_SLIPPAGE, MIN_QUANTITY
from workbench.config import CommissionModel, PositionSizing, SlippageModel, TimeRestrictions, VolumeRule
from workbench.domain import Side

# order reasons (the trade log's exit_reason for exits)
ENTRY, SIGNAL = "entry", "signal"
STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, TIME_LIMIT = "stop_loss", "take_profit", "trailing_stop", "time_limit"
CLOSE_ALL, END = "close_all", "end"

# entry-cap rule names, as returned by cap_entry and used in risk rejections
MAX_POSITION, PORTFOLIO_LIMIT, CONCENTRATION = "max_position", "portfolio_limit", "concentration_limit"
MIN_VOLUME, MAX_SHARE, CASH, TOO_SMALL = "min_volume", "max_share", "cash", "min_quantity"


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
    return kernel.slippage_nb(slippage.bps / 1e4, _impact(slippage), quantity, bar_volume)


def _impact(slippage: SlippageModel) -> float:
    return slippage.impact if slippage.model == "volume" else 0.0


def fill_price(side: Side, ref_price: float, quantity: float, bar_volume: float, slippage: SlippageModel) -> float:
    """Market fill price: buy ``ref × (1 + s)``, sell ``ref × (1 - s)`` with s capped at 99 % for sells."""
    s = slippage_fraction(slippage, quantity, bar_volume)
    if side is Side.BUY:
        return ref_price * (1.0 + s)
    return ref_price * (1.0 - min(s, MAX_SELL_SLIPPAGE))


def fee(notional: float, commission: CommissionModel, maker: bool = False) -> float:
    """Fee of one order: maker or taker fraction of ``notional`` plus the fixed fee."""
    return notional * (commission.maker if maker else commission.taker) + commission.fixed


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
        return kernel.buy_quantity_nb(
            quantity, ref_price, bar_volume, cash, commission.taker, commission.fixed,
            slippage.bps / 1e4, _impact(slippage),
        )
    if quantity * ref_price * (1.0 + commission.maker) + commission.fixed <= cash:
        return quantity
    budget = cash - commission.fixed
    return budget / (ref_price * (1.0 + commission.maker)) if budget > 0.0 else 0.0


def target_quantity(sizing: PositionSizing, equity: float, price: float, factor: float = 1.0) -> float:
    """Quantity the sizing mode asks for at ``price`` (before caps), times ``factor``."""
    if sizing.mode == "fixed_amount":
        q = sizing.value / price
    elif sizing.mode == "percent_equity":
        q = sizing.value * equity / price
    else:
        q = sizing.value
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
    """Semantics rule 4's caps on a buy of ``quantity`` at reference ``price``: ``(quantity, rule)``.

    In order: bar volume >= ``min_bar_volume``; position value <= ``max_position``; total exposure
    <= ``portfolio_limit``; position value <= ``concentration_limit`` × equity (equity = cash +
    exposure; a paper-engine extra the backtest does not apply); quantity <= ``max_share`` × bar
    volume (cap, or drop for ``on_excess='skip'``); cost + fees <= cash. ``rule`` names the last
    cap that reduced the quantity ("" if none); a dropped order returns quantity 0 and the rule
    that dropped it.
    """
    if not quantity > MIN_QUANTITY:  # also NaN
        return 0.0, TOO_SMALL
    if bar_volume < volume.min_bar_volume:
        return 0.0, MIN_VOLUME
    q, rule = quantity, ""
    if max_position is not None and position_value + q * price > max_position:
        q, rule = max(max_position - position_value, 0.0) / price, MAX_POSITION
    if portfolio_limit is not None and exposure + q * price > portfolio_limit:
        q, rule = max(portfolio_limit - exposure, 0.0) / price, PORTFOLIO_LIMIT
    if concentration_limit is not None:
        room = concentration_limit * (cash + exposure) - position_value
        if q * price > room:
            q, rule = max(room, 0.0) / price, CONCENTRATION
    if q <= MIN_QUANTITY:
        return 0.0, rule or TOO_SMALL
    cap = volume.max_share * bar_volume
    if q > cap:
        if volume.on_excess == "skip":
            return 0.0, MAX_SHARE
        q, rule = cap, MAX_SHARE
    affordable = affordable_quantity(q, price, bar_volume, cash, commission, slippage)
    if affordable != q:
        q, rule = affordable, CASH
    if q <= MIN_QUANTITY:
        return 0.0, rule or TOO_SMALL
    return q, rule


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
    code, price = kernel.stop_exit_nb(
        open_, high, low, entry, peak,
        nan if stop_loss is None else stop_loss,
        nan if take_profit is None else take_profit,
        nan if trailing_stop is None else trailing_stop,
    )
    return None if code == kernel.NONE else (kernel.REASONS[code], price)


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def time_block(timestamp: datetime, rules: TimeRestrictions) -> str:
    """The time rule that forbids a new entry at ``timestamp`` ("weekday", "trading_hours",
    "blackout"), or "" if entries are allowed (semantics rule 7, in ``rules.timezone``)."""
    if rules.unrestricted:
        return ""
    local = timestamp.astimezone(_zone(rules.timezone))
    if local.weekday() not in rules.weekdays:
        return "weekday"
    t = local.time()
    if rules.trading_hours is not None and not rules.trading_hours.contains(t):
        return "trading_hours"
    if any(w.contains(t) for w in rules.blackouts):
        return "blackout"
    return ""


def entry_allowed_at(timestamp: datetime, rules: TimeRestrictions) -> bool:
    """May a new entry fill at ``timestamp`` (the fill bar's open time)?"""
    return not time_block(timestamp, rules)


def warm_up() -> None:
    """Load the numba kernels the paper engine calls (from numba's cache, else compile them) now, so that
    a session's first order does not pay for it (~0.5 s) mid-run."""
    kernel.slippage_nb(0.0, 0.0, 1.0, 1.0)
    kernel.buy_quantity_nb(1.0, 1.0, 1.0, 10.0, 0.0, 0.0, 0.0, 0.0)
    kernel.stop_exit_nb(1.0, 1.0, 1.0, 1.0, 1.0, math.nan, math.nan, math.nan)
