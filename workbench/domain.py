"""Plain data shared by every layer: kinds, states, orders, fills, positions, the trade schema, and
the one rule for times (UTC everywhere; a time without a zone means UTC)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd


# ---- times ----------------------------------------------------------------------------------
def utc_now() -> datetime:
    """The wall clock, in UTC (the default clock wherever one can be injected)."""
    return datetime.now(timezone.utc)


def as_utc(t: datetime) -> datetime:
    """``t`` as an aware UTC datetime; a naive ``t`` means UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def to_utc(value: Any, what: str = "time") -> pd.Timestamp:
    """``value`` (ISO 8601 string, datetime, date, numpy or pandas time) as a UTC Timestamp; naive
    means UTC. A value that is no time raises ValueError naming ``what``, the value and the format."""
    if not isinstance(value, (str, datetime, date, np.datetime64)):
        raise TypeError(f"{what}: expected a datetime or an ISO 8601 string, got {type(value).__name__} {value!r}")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: cannot read {value!r} as a time ({e}); use ISO 8601 such as '2024-01-31' "
                         "or '2024-01-31 13:45'") from None
    if ts is pd.NaT:
        raise ValueError(f"{what}: {value!r} is not a time; use ISO 8601 such as '2024-01-31'")
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def utc_index(values: Any, what: str = "times") -> pd.DatetimeIndex:
    """``values`` as a UTC DatetimeIndex (naive means UTC); unreadable or missing times raise ValueError."""
    try:
        index = values if isinstance(values, pd.DatetimeIndex) else pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: cannot read as times ({e})") from None
    if index.hasnans:
        raise ValueError(f"{what}: {int(index.isna().sum())} missing (NaT) time(s)")
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


class SessionKind(str, Enum):
    """What a session trades against."""

    BACKTEST = "backtest"
    PAPER = "paper"
    LIVE = "live"


class SessionState(str, Enum):
    """Lifecycle of a session (see docs/architecture.md, "Sessions")."""

    REQUESTED = "requested"  # created by a dashboard, waiting for `workbench host`
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    KILLED = "killed"
    FAILED = "failed"
    ORPHANED = "orphaned"  # runner stopped heartbeating; can be resumed from the store

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {SessionState.STOPPED, SessionState.COMPLETED, SessionState.KILLED, SessionState.FAILED}
)


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(str, Enum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"


@dataclass
class Order:
    """An order as the session sees it; `client_id` is unique per session and sequence."""

    client_id: str
    symbol: str
    side: Side
    quantity: float
    type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: float = 0.0
    created_at: datetime | None = None
    reason: str = ""  # "signal", "stop_loss", "take_profit", "close_all", ...
    exchange_id: str | None = None
    stop_price: float | None = None  # a triggered stop exit's reference price (the level, or the open if gapped)
    ref_price: float | None = None  # the decision price (live): the price the trader decided at; slippage is vs it

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled_quantity


@dataclass
class Fill:
    """One execution of (part of) an order."""

    client_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float
    slippage: float  # money lost to slippage on this fill (vs the decision price; live: < 0 is price improvement)
    time: datetime
    fill_id: str = ""
    reason: str = ""  # the order's reason, e.g. "entry", "signal", "stop_loss"


@dataclass
class Position:
    """A position in one symbol: ``quantity`` > 0 long, < 0 short (execution rule 15).
    ``peak_price``: the highest price since entry of a long, the lowest of a short."""

    symbol: str
    quantity: float = 0.0
    avg_price: float = 0.0
    opened_at: datetime | None = None
    realized_pnl: float = 0.0
    peak_price: float = 0.0  # highest (long) / lowest (short) price seen while open, for trailing stops
    extra: dict = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.quantity != 0


# ---- trades: one schema for backtests, sessions and the store ------------------------------------
TRADE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "entry_time",
    "exit_time",  # NaT while open
    "entry_price",
    "exit_price",
    "quantity",
    "pnl",  # money, net of fees
    "return_pct",  # net, as a fraction of entry value
    "entry_fees",
    "exit_fees",
    "commission",  # entry_fees + exit_fees
    "slippage",  # money lost to slippage on entry and exit, >= 0
    "duration",  # holding time (Timedelta); NaT while open
    "exit_reason",  # one of EXIT_REASONS
    "status",  # one of TRADE_STATUSES
    "side",  # "long" or "short" (execution rule 15)
    "funding",  # perpetual funding paid (< 0) or received over the trade, in pnl (execution rule 16)
    "interest",  # borrow interest paid (< 0) over the trade, in pnl
)
EXIT_REASONS: tuple[str, ...] = (
    "signal", "stop_loss", "take_profit", "trailing_stop", "time_limit", "close_all", "end", "event", "liquidation",
)
TRADE_STATUSES: tuple[str, ...] = ("open", "closed")
