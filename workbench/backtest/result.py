"""BacktestResult: equity, cash, exposure, trade and order logs and metrics of a backtest, plus the
vectorbt portfolio (built on first access).

:func:`workbench.backtest.booking.book_nb` books the walk's fills exactly as
``vectorbt.Portfolio.from_orders`` books them, so the result's series and logs equal the portfolio's
``value()``, ``cash()``, ``asset_value()``, ``orders`` and ``exit_trades`` without building it;
``BacktestResult.portfolio`` builds the portfolio itself only when asked for. The equity curve and
the metrics (from the booking's arrays) are made with the result; cash, exposure and the trade
and order logs are pandas objects made when first read.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import pandas as pd

from workbench.backtest.booking import book_nb, trade_carry_nb
from workbench.config import SessionConfig
from workbench.execution.codes import REASONS
from workbench.execution.legs import columns
from workbench.execution.scaling import walk_steps
from workbench.execution.simulate import Fills
from workbench.metrics import (
    METRIC_LABELS,
    TRADE_COLUMNS,
    empty_trades,
    format_metric,
    infer_periods_per_year,
    metrics_from_arrays,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

ORDER_COLUMNS: tuple[str, ...] = (
    "time", "symbol", "side", "quantity", "price", "reference_price", "fees", "slippage", "reason",
)
T = TypeVar("T")


class _Lazy(Generic[T]):
    """A dataclass field given either as its value or as a function that makes it, called on first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_lazy_" + name

    def __get__(self, obj: object, owner: type | None = None) -> T:
        if obj is None:
            raise AttributeError(self.slot)  # no class-level default: a required field
        value = obj.__dict__[self.slot]
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj: object, value: T | Callable[[], T]) -> None:
        obj.__dict__[self.slot] = value


@dataclass
class BacktestResult:
    """One backtest: inputs, series indexed by bar time, the trade and order logs, ``metrics`` (see
    ``workbench.metrics``) and the vectorbt ``portfolio`` (built on first access)."""

    config: SessionConfig
    bars: dict[str, pd.DataFrame]
    equity: pd.Series  # cash + positions at close, all symbols
    cash: _Lazy[pd.Series] = _Lazy()  # this and the next three: made on first read if given as functions
    exposure: _Lazy[pd.Series] = _Lazy()  # money in positions (quantity × close), all symbols
    trades: _Lazy[pd.DataFrame] = _Lazy()  # TRADE_COLUMNS
    orders: _Lazy[pd.DataFrame] = _Lazy()  # ORDER_COLUMNS
    metrics: dict[str, float] = field(default_factory=dict)
    breaker: dict[str, Any] | None = None  # the circuit breaker's trip {time, reason, state}, if it tripped
    scaling: list[dict[str, Any]] = field(default_factory=list)  # automated scaling's steps (rule 11), in order
    make_portfolio: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def portfolio(self) -> Any:
        """The vectorbt ``Portfolio`` of these fills (``from_orders``), built on first access (~0.1 s
        per 500k bars); its ``value()``, ``cash()``, orders and trades agree with this result's."""
        if self.make_portfolio is None:
            raise AttributeError("this BacktestResult has no vectorbt portfolio (no make_portfolio given)")
        return self.make_portfolio()

    def stats(self) -> pd.Series:
        """Period and metrics as one labelled Series (like backtesting.py's stats)."""
        idx = self.equity.index
        head = {"Start": idx[0], "End": idx[-1], "Duration": idx[-1] - idx[0]}
        body = {METRIC_LABELS[k][0] if k in METRIC_LABELS else k: v for k, v in self.metrics.items()}
        return pd.Series({**head, **body}, dtype=object, name=self.config.strategy)

    def summary(self) -> str:
        """The stats as aligned, human-formatted text (money, percentages, ratios)."""
        idx = self.equity.index
        rows = [("Strategy", self.config.strategy), ("Symbols", ", ".join(self.bars)),
                ("Start", str(idx[0])), ("End", str(idx[-1]))]
        rows += [(METRIC_LABELS[k][0], format_metric(k, v)) for k, v in self.metrics.items() if k in METRIC_LABELS]
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)

    def equity_figure(self) -> go.Figure:
        from workbench.backtest.figures import equity_figure

        return equity_figure(self.equity, self.config.initial_balance)

    def price_figure(self, symbol: str | None = None) -> go.Figure:
        from workbench.backtest.figures import price_figure

        symbol = symbol or self.config.symbols[0]
        if symbol not in self.bars:
            raise ValueError(f"no bars for {symbol!r} in this backtest; symbols: {', '.join(self.bars)}")
        return price_figure(self.bars[symbol], self.trades, symbol)

    def __repr__(self) -> str:
        return f"BacktestResult({self.config.strategy}, {', '.join(self.bars)}, {len(self.trades)} trades)"


def build_result(
    config: SessionConfig,
    bars: dict[str, pd.DataFrame],
    index: pd.DatetimeIndex,
    fills: Fills,
    close: np.ndarray,
    make_portfolio: Callable[[], Any] | None = None,
) -> BacktestResult:
    """Assemble a BacktestResult from the walk's ``fills`` and ``close`` (n, m), forward- then
    back-filled, as vectorbt values the portfolio. Equity and metrics are computed now; cash and
    exposure (a second, full booking), the trade and the order log when first read."""
    symbols = [c.key for c in columns(config)]  # the walk's columns: the symbols, or (leg, symbol) keys
    close = np.ascontiguousarray(close, dtype=np.float64)
    _, _, value, orders, records = _replay(config, fills, close, full=False)
    fund, interest = trade_carry_nb(fills.idx, fills.col, fills.qty, fills.price, fills.reason, records["col"],
                                    records["entry_idx"], len(symbols))  # carrying costs (rule 16) are P&L
    records = {**records, "pnl": records["pnl"] + (fund + interest), "funding": fund, "interest": interest}
    trades = _trade_order(records, symbols)
    time_index = index.rename("time")
    lookup = FillLookup(fills, len(symbols))

    @cache
    def ledger() -> tuple[np.ndarray, np.ndarray]:
        cash, asset_value = _replay(config, fills, close, full=True)[:2]
        return cash, asset_value

    return BacktestResult(
        config=config,
        bars=bars,
        equity=pd.Series(value, index=time_index, name="equity", copy=False),
        cash=lambda: pd.Series(ledger()[0], index=time_index, name="cash", copy=False),
        exposure=lambda: pd.Series(ledger()[1], index=time_index, name="exposure", copy=False),
        trades=lambda: trades_frame(trades, index, symbols, lookup),
        orders=lambda: orders_frame(orders, index, symbols, lookup),
        metrics=_metrics(config, index, value, trades),
        make_portfolio=make_portfolio,
        scaling=walk_steps(index, fills.steps),
    )


def _metrics(config: SessionConfig, index: pd.DatetimeIndex, value: np.ndarray,
             trades: dict[str, np.ndarray]) -> dict[str, float]:
    """``compute_metrics(equity, trades_frame(...), ...)`` from the arrays behind them: bar rows
    instead of times, no frame built."""
    closed = trades["status"] == 1
    ei, xi = trades["entry_idx"], trades["exit_idx"]
    ns = index.as_unit("ns").asi8
    held = np.where(closed, (ns[xi] - ns[ei]).astype(np.float64), np.nan)
    return metrics_from_arrays(
        value, float(config.initial_balance), infer_periods_per_year(index), ei, np.where(closed, xi, len(value)),
        trades["pnl"], _return_pct(trades), held, closed,
    )


_CARRY_FIELDS = ("funding", "interest")  # carry rows' sums per trade (rule 16), in the trades' P&L
_ORDER_FIELDS = ("idx", "col", "side", "size", "price", "fees")
_TRADE_FIELDS = (
    "col", "size", "entry_idx", "entry_price", "entry_fees", "exit_idx", "exit_price", "exit_fees", "pnl", "status",
    "direction",
)


def _replay(
    config: SessionConfig, fills: Fills, close: np.ndarray, full: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """book_nb: (cash, asset value, value, order records, exit-trade records); cash and asset
    value are empty unless ``full``."""
    n = close.shape[0]
    cash, asset_value, value = np.empty(n if full else 0), np.empty(n if full else 0), np.empty(n)
    out = book_nb(
        fills.idx, fills.col, fills.qty, fills.price, close, float(config.initial_balance),
        float(config.commission.taker), float(config.commission.fixed), cash, asset_value, value,
        config.margin is not None and config.margin.leverage != 1.0,
    )
    k = len(_ORDER_FIELDS)
    orders = dict(zip(_ORDER_FIELDS, out[:k], strict=True))
    trades = dict(zip(_TRADE_FIELDS, out[k:], strict=True))
    return cash, asset_value, value, orders, trades


class FillLookup:
    """The reference price and reason of the walk's order at (bar, column): one sort of the fills."""

    def __init__(self, fills: Fills, m: int):
        self.fills, self.m = fills, m
        keep = np.flatnonzero(fills.qty != 0.0)  # carry rows (rule 16) are cash flows, not orders
        key = fills.idx[keep] * m + fills.col[keep]
        order = np.argsort(key, kind="stable")
        self.order, self.keys = keep[order], key[order]

    def _at(self, i: np.ndarray, c: np.ndarray, last: Any = False) -> np.ndarray:
        """The row of the order at (bar, column): its first (an exit), or with ``last`` its last (a
        reversal's entry comes after the exit on its bar)."""
        key = np.asarray(i) * self.m + np.asarray(c)
        first = np.searchsorted(self.keys, key)
        return self.order[np.where(last, np.searchsorted(self.keys, key, side="right") - 1, first)]

    def reference(self, i: np.ndarray, c: np.ndarray, last: Any = False) -> np.ndarray:
        return self.fills.ref[self._at(i, c, last)]

    def reason(self, i: np.ndarray, c: np.ndarray, last: Any = False) -> np.ndarray:
        return self.fills.reason[self._at(i, c, last)].astype(np.intp)



_SIDES = np.array(["buy", "sell"], dtype=object)
_DIRECTIONS = np.array(["long", "short"], dtype=object)
_STATUSES = np.array(["open", "closed"], dtype=object)
_REASON_NAMES = np.asarray(REASONS, dtype=object)


_STR_DTYPE = pd.Series(["x"]).dtype  # pandas' default string dtype ("str" in pandas 3, else object)


def _strings(names: Any, codes: np.ndarray) -> Any:
    """``names[codes]`` (code -1: missing) in pandas' default string dtype: the few distinct names
    are converted once, then taken, instead of converting every row's string."""
    base = pd.array(np.asarray(names, dtype=object), dtype=_STR_DTYPE)
    return base.take(np.asarray(codes, dtype=np.intp), allow_fill=True)


def orders_frame(records: Any, index: pd.DatetimeIndex, symbols: list[str], fills: FillLookup) -> pd.DataFrame:
    """Order records (fields idx, col, side 0 buy / 1 sell, size, price, fees; a vectorbt record
    array or a dict of arrays) as ORDER_COLUMNS; slippage is money lost against the reference price."""
    i, c = np.asarray(records["idx"]), np.asarray(records["col"])
    again = np.zeros(len(i), dtype=bool)  # a reversal's entry: the second order at its (bar, column)
    again[1:] = (i[1:] == i[:-1]) & (c[1:] == c[:-1])
    ref = fills.reference(i, c, again)
    size, price = records["size"], records["price"]
    return pd.DataFrame(
        {
            "time": index[i],
            "symbol": _strings(symbols, c),
            "side": _strings(_SIDES, records["side"]),
            "quantity": size,
            "price": price,
            "reference_price": ref,
            "fees": records["fees"],
            "slippage": size * np.abs(price - ref),
            "reason": _strings(_REASON_NAMES, fills.reason(i, c, again)),
        },
        columns=list(ORDER_COLUMNS),
    )


def _trade_order(records: Any, symbols: list[str]) -> dict[str, np.ndarray]:
    """Exit-trade records (a vectorbt record array or a dict of arrays) as a dict of arrays sorted
    by entry bar, then symbol name (they come by column, then time)."""
    recs = {k: np.asarray(records[k]) for k in _TRADE_FIELDS + _CARRY_FIELDS
            if k in _TRADE_FIELDS or (isinstance(records, dict) and k in records)}
    c, ei = recs["col"], recs["entry_idx"]
    if len(c) < 2 or len(symbols) == 1:  # one column: in time order already
        return recs
    rank = np.argsort(np.argsort(np.asarray(symbols, dtype=object)))
    order = np.lexsort((rank[c], ei))
    if (order[1:] > order[:-1]).all():
        return recs
    return {k: v[order] for k, v in recs.items()}


def _return_pct(trades: dict[str, np.ndarray]) -> np.ndarray:
    """Net P&L as a fraction of the entry value."""
    return trades["pnl"] / (trades["size"] * trades["entry_price"])


_NAT = np.iinfo(np.int64).min


def trades_frame(records: Any, index: pd.DatetimeIndex, symbols: list[str], fills: FillLookup) -> pd.DataFrame:
    """Exit-trade records (a vectorbt record array or a dict of arrays with the fields of
    ``exit_trades.records``) as TRADE_COLUMNS, sorted by entry time, then symbol. Open trades:
    exit_time and duration NaT, exit_price the last close (pnl unrealized), no exit fees or reason."""
    if len(records["col"]) == 0:
        return empty_trades()
    t = _trade_order(records, symbols)
    c, ei, xi = t["col"], t["entry_idx"], t["exit_idx"]
    closed = t["status"] == 1
    size, entry_px, exit_px = t["size"], t["entry_price"], t["exit_price"]
    entry_fees, exit_fees = t["entry_fees"], t["exit_fees"]
    short = t["direction"] == 1 if "direction" in t else np.zeros(len(c), dtype=bool)
    sign = np.where(short, -1.0, 1.0)  # slippage is money lost: a short's entry sells, its exit buys
    entry_slip = sign * size * (entry_px - fills.reference(ei, c, True))
    exit_ref = fills.reference(np.where(closed, xi, ei), c)  # open trades: any order, masked below
    exit_slip = np.where(closed, sign * size * (exit_ref - exit_px), 0.0)
    funding, interest = (t["funding"], t["interest"]) if "funding" in t else (np.zeros(len(c)), np.zeros(len(c)))
    # times from the index's integers: NaT while open, no Index.where / datetime subtraction
    i8 = index.asi8
    exit_time = pd.DatetimeIndex(np.where(closed, i8[xi], _NAT).view(f"M8[{index.unit}]"))
    if index.tz is not None:
        exit_time = exit_time.tz_localize("UTC").tz_convert(index.tz)
    duration = np.where(closed, i8[xi] - i8[ei], _NAT).view(f"m8[{index.unit}]")
    names = np.where(closed, fills.reason(np.where(closed, xi, ei), c), -1)  # no exit reason while open
    return pd.DataFrame(
        {
            "symbol": _strings(symbols, c),
            "entry_time": index[ei],
            "exit_time": exit_time,
            "entry_price": entry_px,
            "exit_price": exit_px,
            "quantity": size,
            "pnl": t["pnl"],
            "return_pct": _return_pct(t),
            "entry_fees": entry_fees,
            "exit_fees": exit_fees,
            "commission": entry_fees + exit_fees,
            "slippage": entry_slip + exit_slip,
            "duration": duration,
            "exit_reason": _strings(_REASON_NAMES, names),
            "status": _strings(_STATUSES, closed),
            "side": _strings(_DIRECTIONS, short),
            "funding": funding,
            "interest": interest,
        },
        columns=list(TRADE_COLUMNS),
    )
