"""Codes of the execution rules: small ints for the numba kernels, names for logs, events and the store.

``REASONS[code]`` names an order's reason (the trade log's exit reason), ``CAP_RULES[code]`` the
entry cap that reduced or dropped a buy, ``TIME_RULES[code]`` the time restriction that blocks an
entry, ``BREAKER_REASONS[code]`` why the circuit breaker tripped, ``TRADING_STATES[code]`` the
risk engine's trading state.
"""
from __future__ import annotations

# order reasons
(NONE, ENTRY, EXIT_SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, TIME_LIMIT, CLOSE_ALL_CODE, END_CODE,
 EVENT_CODE, LIQUIDATION_CODE, FUNDING_CODE, INTEREST_CODE) = range(13)
REASONS: tuple[str, ...] = (
    "", "entry", "signal", "stop_loss", "take_profit", "trailing_stop", "time_limit", "close_all", "end", "event",
    "liquidation", "funding", "interest",  # the last two: the walk's carry rows (cash flows, not orders)
)

# position sides and the config's direction (a bit mask of the sides a session may open)
LONG, SHORT = 1, -1
DIRECTIONS: dict[str, int] = {"long": 1, "short": 2, "both": 3}
SIDES: dict[int, str] = {LONG: "long", SHORT: "short"}

# sizing modes (semantics rule 4)
SIZE_FIXED_AMOUNT, SIZE_PERCENT_EQUITY, SIZE_FIXED_QUANTITY = range(3)
SIZING_MODES: tuple[str, ...] = ("fixed_amount", "percent_equity", "fixed_quantity")

# entry caps (semantics rule 4)
(CAP_NONE, CAP_MIN_VOLUME, CAP_MAX_POSITION, CAP_PORTFOLIO_LIMIT, CAP_CONCENTRATION, CAP_MAX_SHARE, CAP_CASH,
 CAP_TOO_SMALL) = range(8)
CAP_RULES: tuple[str, ...] = (
    "", "min_volume", "max_position", "portfolio_limit", "concentration_limit", "max_share", "cash", "min_quantity",
)

# time restrictions (semantics rule 7)
WEEKDAY, TRADING_HOURS, BLACKOUT = 1, 2, 3
TIME_RULES: tuple[str, ...] = ("", "weekday", "trading_hours", "blackout")
#: the time rule of a dated event window (TimeRestrictions.events), checked after the daily rules
EVENT = "event"

# circuit breaker (semantics rule 10)
BREAKER_DAILY_LOSS, BREAKER_DRAWDOWN, BREAKER_REJECTIONS = 1, 2, 3
BREAKER_VOLATILITY, BREAKER_VAR, BREAKER_GAP = 4, 5, 6  # the tail and gap breakers
BREAKER_REASONS: tuple[str, ...] = ("", "daily_loss", "drawdown", "rejections", "volatility", "value_at_risk",
                                    "gap")
RUNNING, REDUCING, HALTED = 0, 1, 2
TRADING_STATES: tuple[str, ...] = ("running", "reducing", "halted")

# rejections of a buy that are not caps (semantics rule 10)
REJECT_PRICE, REJECT_STATE, REJECT_RATE = "price", "state", "max_order_rate"

DAY_NS = 86_400 * 10**9
YEAR_NS = 365 * DAY_NS  # borrow interest accrues over a 365-day year
FUNDING_NS = 8 * 3600 * 10**9  # perpetual funding interval (a constant rate is due at 00, 08, 16 UTC)
MINUTE_NS = 60 * 10**9
