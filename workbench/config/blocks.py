"""The blocks of a session config: sizing, costs, fill model and latency, time rules, risk, data, live,
legs, scaling and margin."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from workbench.config.base import HHMM_RE, TIMEFRAMES, _Model, _Strategic
from workbench.domain import as_utc


class PositionSizing(_Model):
    """How big each entry is.

    - ``fixed_amount``: ``value`` in quote currency per entry (e.g. 1000 USDT)
    - ``percent_equity``: ``value`` as a fraction of current equity (0.1 = 10 %)
    - ``fixed_quantity``: ``value`` in base units (e.g. 0.01 BTC)
    """

    mode: Literal["fixed_amount", "percent_equity", "fixed_quantity"] = "percent_equity"
    value: float = Field(0.1, gt=0, description="amount, fraction of equity, or base quantity")

    @model_validator(mode="after")
    def _check(self) -> PositionSizing:
        if self.mode == "percent_equity" and self.value > 1:
            raise ValueError("percent_equity sizing takes a fraction in (0, 1], e.g. 0.1 for 10 %")
        return self


class CommissionModel(_Model):
    """Fees: a fraction of notional (maker for resting limit orders, taker otherwise) plus a fixed fee per order."""

    taker: float = Field(0.001, ge=0, lt=0.1, description="fraction of notional for market orders")
    maker: float = Field(0.001, ge=0, lt=0.1, description="fraction of notional for limit orders")
    fixed: float = Field(0.0, ge=0, description="fixed fee per order, quote currency")


class SlippageModel(_Model):
    """Price impact: a fixed part in basis points, plus ``impact`` × (order quantity / bar volume) for ``volume``."""

    model: Literal["fixed", "volume"] = "fixed"
    bps: float = Field(5.0, ge=0, le=1000, description="fixed slippage in basis points")
    impact: float = Field(0.1, ge=0, le=10, description="volume model: extra fraction per unit of volume share")


class VolumeRule(_Model):
    """Liquidity: skip bars below ``min_bar_volume``; cap or skip fills above ``max_share`` of bar volume."""

    min_bar_volume: float = Field(0.0, ge=0, description="bars with less base volume get no fills")
    max_share: float = Field(1.0, gt=0, le=1, description="largest fraction of a bar's volume one fill may take")
    on_excess: Literal["cap", "skip"] = "cap"


class Latency(_Model):
    """Order latency (execution rule 13): a signal's order reaches the market ``ms`` milliseconds or ``bars``
    bars after its decision; give one. :mod:`workbench.execution.latency` turns it into a fill delay."""

    ms: float | None = Field(None, ge=0, le=7 * 86_400_000, description="milliseconds from decision to market")
    bars: int | None = Field(None, ge=0, le=10_000, description="whole bars from decision to market")

    @model_validator(mode="after")
    def _one(self) -> Latency:
        if (self.ms is None) == (self.bars is None):
            raise ValueError("give either ms (e.g. 250) or bars (e.g. 1), not both or neither")
        return self


class Depth(_Model):
    """Order-book depth (execution rule 14): ``book`` walks recorded or live L2 books; ``volume`` keeps the
    slippage model. :mod:`workbench.execution.depth` holds the rules."""

    model: Literal["volume", "book"] = "book"
    levels: int = Field(20, ge=5, le=5000, description="book levels fetched per side (paper on live data)")
    max_age_s: float = Field(5.0, gt=0, le=3600, description="a live book older than this is not walked")


class Window(_Model):
    """A daily window ``HH:MM``–``HH:MM`` on the restrictions' time zone's wall clock (may wrap midnight);
    :func:`workbench.execution.time_block` applies it."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not isinstance(v, str) or not HHMM_RE.match(v):
            raise ValueError("use HH:MM between 00:00 and 24:00, e.g. '09:30'")
        return v

    @model_validator(mode="after")
    def _nonempty(self) -> Window:
        if self.start == self.end:
            raise ValueError("window start and end are equal; give a non-empty window")
        return self


class EventWindow(_Model):
    """A dated event (a rate decision, a listing, an exchange's maintenance) during which no new entry
    fills: ``start`` <= fill time < ``end``, in UTC (a naive time means UTC). Imported from an event
    calendar (:func:`workbench.data.calendar.load_events`) or written by hand."""

    name: str = Field("event", max_length=200)
    start: datetime
    end: datetime
    flatten: bool = Field(False, description="also sell every held position at the first bar inside the window "
                          "(exit reason 'event'): set the start ahead of the event to be flat when it comes")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return as_utc(v)

    @model_validator(mode="after")
    def _ordered(self) -> EventWindow:
        if not self.end > self.start:
            raise ValueError(f"event {self.name!r} ends ({self.end.isoformat()}) before it starts "
                             f"({self.start.isoformat()}); give an end after the start")
        return self


class TimeRestrictions(_Model):
    """When new entries are allowed. Exits are always allowed."""

    timezone: str = "UTC"
    trading_hours: Window | None = None
    blackouts: list[Window] = Field(default_factory=list)
    weekdays: list[int] = Field(default_factory=lambda: list(range(7)), description="0=Monday … 6=Sunday")
    events: list[EventWindow] = Field(default_factory=list, description="dated blackouts from an event calendar")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError("unknown time zone; use an IANA name such as 'UTC' or 'America/New_York'") from None
        return v

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays must be a non-empty list of 0 (Monday) … 6 (Sunday)")
        return sorted(set(v))

    @property
    def unrestricted(self) -> bool:
        return self.trading_hours is None and not self.blackouts and len(self.weekdays) == 7 and not self.events


class CircuitBreaker(_Model):
    """Trips the session to ``action`` on a daily loss, a drawdown from peak, or a burst of rejections."""

    max_daily_loss: float | None = Field(None, gt=0, lt=1, description="fraction of start-of-day equity")
    max_drawdown: float | None = Field(None, gt=0, lt=1, description="fraction below peak equity")
    max_rejections: int | None = Field(None, ge=1, description="rejected orders within rejection_window_s")
    rejection_window_s: float = Field(60.0, gt=0)
    action: Literal["reducing", "halted"] = "halted"
    max_volatility: float | None = Field(None, gt=0, description="tail breaker: realized volatility of the last "
                                         "tail_window bars' equity returns, over a day (0.05 = 5 %); past it: "
                                         "action, past twice it: halted")
    max_var: float | None = Field(None, gt=0, description="tail breaker: 95 % value at risk of the last "
                                  "tail_window bars' equity returns, over a day; past it: action, twice: halted")
    tail_window: int = Field(120, ge=10, le=100_000, description="bars the tail breakers measure")
    max_gap: float | None = Field(None, gt=0, lt=0.5, description="gap breaker: a held symbol opening this "
                                  "fraction below its previous close; past it: action, past twice it: halted")
    cooling_off_minutes: float = Field(60.0, ge=0, le=7 * 24 * 60, description="after a trip, this long no one "
                                       "may raise risk (size up, lift or loosen a limit or a stop) without a "
                                       "recorded waiver; 0: no cooling-off")


class RiskConfig(_Model):
    """Position and portfolio limits and automatic exits."""

    max_position: float | None = Field(None, gt=0, description="largest position per symbol, quote currency")
    portfolio_limit: float | None = Field(None, gt=0, description="largest total exposure, quote currency")
    concentration_limit: float | None = Field(None, gt=0, le=1, description="largest share of equity in one symbol")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="fraction below entry, e.g. 0.05")
    take_profit: float | None = Field(None, gt=0, description="fraction above entry, e.g. 0.1")
    trailing_stop: float | None = Field(None, gt=0, lt=1, description="fraction below the highest price since entry")
    max_holding_minutes: float | None = Field(None, gt=0, description="close a position after this long")
    max_orders_per_minute: int | None = Field(None, ge=1)
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)


class Beside(_Model):
    """A paper variant of an A/B beside a session (workbench.ab.live): its bars are the closed bars session
    ``session`` stored (table ``session_bars``) after ``after``, at most ``bars`` of them; whoever runs or
    resumes it feeds it those, never the exchange."""

    session: str = Field(..., min_length=1, max_length=64, description="the id of the session it runs beside")
    after: datetime | None = Field(None, description="that session's last stored bar when the A/B began")
    bars: int | None = Field(None, ge=2, description="end after this many bars (None: when that session ends)")

    @field_validator("after")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else as_utc(v)


class DataConfig(_Model):
    """Where bars come from: bundled ``sample`` data, a ``csv`` file, or an exchange through ``ccxt``.

    ``live=True`` (with ``source='ccxt'``) makes a paper session trade on live closed candles from
    ``exchange`` (workbench.engine.live_feed) with the simulated broker; live sessions always do.
    """

    source: Literal["sample", "csv", "ccxt"] = "sample"
    exchange: str = "binance"
    timeframe: str = "1m"
    csv_path: str | None = None
    live: bool = Field(False, description="paper on live data: poll the exchange's closed candles")
    beside: Beside | None = Field(None, description="paper on the bars another session stored (an A/B beside it)")

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe; use one of {', '.join(TIMEFRAMES)}")
        return v

    @model_validator(mode="after")
    def _csv(self) -> DataConfig:
        if self.source == "csv" and not self.csv_path:
            raise ValueError("source 'csv' needs csv_path, the file to read bars from")
        if self.live and self.source != "ccxt":
            raise ValueError("live data comes from an exchange: set source='ccxt' (and exchange) with live=True")
        return self


class LiveConfig(_Model):
    """Live trading and live data: which exchange account, testnet/sandbox, feed polling and staleness.

    Keys are never part of a config: they come from the environment or the OS keyring
    (workbench.secrets). Arming (``allow_live`` plus the ``exchange:account`` confirmation) is given
    when a live session is created, not stored here. ``waive_*`` are the pre-flight waivers
    (workbench.engine.preflight): a non-empty reason waives that check.
    """

    account: str = Field("main", pattern=r"^[A-Za-z0-9_.\-]{1,32}$", description="account name, e.g. 'main'")
    sandbox: bool = Field(False, description="use the exchange's testnet/sandbox (ccxt set_sandbox_mode)")
    poll_seconds: float | None = Field(None, gt=0, description="REST poll interval; default a quarter bar, at most 5 s")
    stale_bars: int = Field(3, ge=1, le=1000, description="no new bar for this many intervals: feed is stale")
    time_sync_every: float = Field(300.0, gt=0, le=86_400, description="seconds between exchange clock syncs")
    reconcile_every: float = Field(30.0, gt=0, le=86_400,
                                   description="seconds between reconciliations of orders and balances")
    mismatch_trip: float | None = Field(0.01, gt=0, le=1, description="a reconciliation difference worth more "
                                        "than this fraction of the initial balance trips the breaker; None: never")
    protective: Literal["auto", "exchange", "monitor", "off"] = Field(
        "auto", description="where a position's stop loss / take profit live: 'exchange' (stop orders resting on "
        "the exchange), 'monitor' (this runner watches the ticker and sells when a level is crossed), 'auto' "
        "(exchange where the market has stop order types, else monitor), 'off' (checked on closed bars only)")
    waive_stops: str = Field("", max_length=300, description="why this live session may run without a stop "
                             "(pre-flight: empty means stops are required); recorded as an event at start")
    waive_rehearsal: str = Field("", max_length=300, description="why no backtest and paper run of this strategy "
                                 "and symbols within 30 days is needed; recorded as an event at start")


class Leg(_Strategic):
    """One strategy of a multi-strategy session: its own signals on its own symbols, sized against its
    ``allocation`` (a fraction of the session's capital), sharing the session's cash and risk limits.
    Each (leg, symbol) holds its own position (docs/execution-semantics.md "Multi-strategy sessions")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$", description="unique in the session, e.g. 'trend'")
    strategy: str = "momentum"
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"])
    allocation: float = Field(gt=0, le=1, description="fraction of the session's capital, e.g. 0.5")


class Scaling(_Model):
    """Automated scaling (docs/execution-semantics.md rule 11): entries start at ``start`` × the configured
    size and step up after ``after_trades`` closed trades and/or ``after_days`` days when the window's
    (since the last step) Sharpe, max drawdown and win rate meet the thresholds set; a drawdown of
    ``down_drawdown`` from the window's peak steps down (or halts new entries). Never above 1.0."""

    start: float = Field(0.25, gt=0, le=1, description="the first scale, a fraction of the configured size")
    step: float = Field(0.25, gt=0, description="'increment': added on a step up and taken off on a step down; "
                        "'factor' (> 1): multiplies on a step up, divides on a step down")
    step_mode: Literal["increment", "factor"] = "increment"
    after_trades: int | None = Field(10, ge=1, description="closed trades since the last step before a step up")
    after_days: float | None = Field(None, gt=0, description="days since the last step before a step up")
    min_sharpe: float | None = Field(None, description="step up only if the window's trade Sharpe (mean / std "
                                     "of closed trades' returns, >= 2 trades) is at least this")
    max_drawdown: float | None = Field(None, gt=0, lt=1, description="step up only if the window's max drawdown "
                                       "of equity is at most this fraction")
    min_win_rate: float | None = Field(None, ge=0, le=1, description="step up only if this share of the "
                                       "window's closed trades won")
    down_drawdown: float | None = Field(None, gt=0, lt=1, description="a drawdown from the window's peak equity "
                                        "of this fraction steps down (or halts); None: never")
    on_drawdown: Literal["step_down", "halt"] = Field("step_down", description="'halt': scale 0, no new "
                                                      "entries until an operator sets a scale")
    floor: float | None = Field(None, gt=0, le=1, description="the lowest a step down goes (default: start)")

    @model_validator(mode="after")
    def _check(self) -> Scaling:
        if self.after_trades is None and self.after_days is None:
            raise ValueError("scaling needs after_trades and/or after_days (when a step up is considered), "
                             "e.g. after_trades=10")
        if self.step_mode == "factor" and not self.step > 1:
            raise ValueError("step_mode 'factor' multiplies the scale: give step > 1, e.g. 2")
        if self.step_mode == "increment" and self.step > 1:
            raise ValueError("an increment step is a fraction of the configured size: give step <= 1, e.g. 0.25, "
                             "or step_mode='factor'")
        if self.floor is not None and self.floor > self.start:
            raise ValueError(f"floor ({self.floor}) is above start ({self.start}); give floor <= start")
        return self


class Margin(_Model):
    """Leverage and its costs (execution rule 16): buying power = equity × leverage, isolated margin per
    position with a liquidation price, borrow interest on shorts and perpetual funding."""

    leverage: float = Field(1.0, le=125, description="buying power as a multiple of equity (1 = no borrowing)")
    initial: float | None = Field(None, gt=0, le=1, description="initial margin fraction of a position's "
                                  "notional (default 1 / leverage)")
    maintenance: float = Field(0.005, gt=0, lt=1, description="maintenance margin fraction: below it a position "
                               "is liquidated")
    borrow_rate: float = Field(0.0, ge=0, le=10, description="annual interest a short pays on its value, "
                               "accrued at each bar for the time since the previous one (margin shorts)")
    funding_rate: float = Field(0.0, ge=-0.1, le=0.1, description="perpetuals: constant funding rate per 8 h "
                                "interval (longs pay a positive rate to shorts); or a series: "
                                "run_backtest(funding=...)")

    @field_validator("leverage")
    @classmethod
    def _leverage(cls, v: float) -> float:
        if not v >= 1:
            raise ValueError(f"leverage {v:g} is below 1; give 1 (no borrowing) or more, e.g. 3")
        return v

    @property
    def initial_fraction(self) -> float:
        """The initial margin fraction: ``initial``, else 1 / leverage."""
        return self.initial if self.initial is not None else 1.0 / self.leverage

    @model_validator(mode="after")
    def _fractions(self) -> Margin:
        if self.maintenance >= self.initial_fraction:
            raise ValueError(f"maintenance margin {self.maintenance:g} must be below the initial margin "
                             f"{self.initial_fraction:g} (1 / leverage unless initial is given); lower maintenance "
                             "or the leverage")
        if self.initial is not None and self.initial * self.leverage < 1 - 1e-9:
            raise ValueError(f"initial margin {self.initial:g} lends more than leverage {self.leverage:g} allows; "
                             "give initial >= 1 / leverage or leave it unset")
        return self
