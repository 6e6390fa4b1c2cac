"""BacktestResult: equity, cash, exposure, trade and order logs and metrics of a backtest, plus the
vectorbt portfolio (built on first access).

:func:`workbench.backtest.booking.replay_nb` replays the kernel's fills exactly as
``vectorbt.Portfolio.from_orders`` books them, so the result's series and logs equal the portfolio's
``value()``, ``cash()``, ``asset_value()``, ``orders`` and ``exit_trades`` without building it;
``BacktestResult.portfolio`` builds the portfolio itself only when asked for.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from workbench.backtest.booking import replay_nb
from workbench.execution.codes import REASONS
from workbench.backtest.metrics import METRIC_LABELS, TRADE_COLUMNS, compute_metrics, empty_trades, format_metric
from workbench.config import SessionConfig

if TYPE_CHECKING:
    import plotly.graph_objects as go

ORDER_COLUMNS: tuple[str, ...] = (
    "time", "symbol", "side", "quantity", "price", "reference_price", "fees", "slippage", "reason",
)


@dataclass
class BacktestResult:
    """One backtest: inputs, series indexed by bar time, the trade and order logs, ``metrics`` (see
    ``workbench.backtest.metrics``) and the vectorbt ``portfolio`` (built on first access)."""

    config: SessionConfig
    bars: dict[str, pd.DataFrame]
    equity: pd.Series  # cash + positions at close, all symbols
    cash: pd.Series
    exposure: pd.Series  # money in positions (quantity × close), all symbols
    trades: pd.DataFrame  # TRADE_COLUMNS
    orders: pd.DataFrame  # ORDER_COLUMNS
    metrics: dict[str, float] = field(default_factory=dict)
    breaker: dict[str, Any] | None = None  # the circuit breaker's trip {time, reason, state}, if it tripped
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
    fills: tuple[np.ndarray, ...],
    close: np.ndarray,
    make_portfolio: Callable[[], Any] | None = None,
) -> BacktestResult:
    """Assemble a BacktestResult from the kernel's ``fills`` (quantity, price, reference, reason,
    call_seq) and ``close`` (n, m), forward- then back-filled, as vectorbt values the portfolio."""
    qty, price, reference, reason, call_seq = fills
    symbols = list(config.symbols)
    (cash, asset_value, value, orders, trades) = _replay(config, qty, price, call_seq, close)
    time_index = index.rename("time")
    equity = pd.Series(value, index=time_index, name="equity", copy=False)
    trades_df = trades_frame(trades, index, symbols, reference, reason)
    return BacktestResult(
        config=config,
        bars=bars,
        equity=equity,
        cash=pd.Series(cash, index=time_index, name="cash", copy=False),
        exposure=pd.Series(asset_value, index=time_index, name="exposure", copy=False),
        trades=trades_df,
        orders=orders_frame(orders, index, symbols, reference, reason),
        metrics=compute_metrics(equity, trades_df, config.initial_balance),
        make_portfolio=make_portfolio,
    )


_ORDER_FIELDS = ("idx", "col", "side", "size", "price", "fees")
_TRADE_FIELDS = (
    "col", "size", "entry_idx", "entry_price", "entry_fees", "exit_idx", "exit_price", "exit_fees", "pnl", "status",
)


def _replay(
    config: SessionConfig, qty: np.ndarray, price: np.ndarray, call_seq: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    out = replay_nb(
        qty, price, call_seq, np.ascontiguousarray(close, dtype=np.float64), float(config.initial_balance),
        float(config.commission.taker), float(config.commission.fixed),
    )
    cash, asset_value, value = out[:3]
    k = len(_ORDER_FIELDS)
    orders = dict(zip(_ORDER_FIELDS, out[3 : 3 + k]))
    trades = dict(zip(_TRADE_FIELDS, out[3 + k :]))
    return cash, asset_value, value, orders, trades


_SIDES = np.array(["buy", "sell"], dtype=object)
_STATUSES = np.array(["open", "closed"], dtype=object)
_REASON_NAMES = np.asarray(REASONS, dtype=object)


_STR_DTYPE = pd.Series(["x"]).dtype  # pandas' default string dtype ("str" in pandas 3, else object)


def _strings(names: Any, codes: np.ndarray) -> Any:
    """``names[codes]`` (code -1: missing) in pandas' default string dtype: the few distinct names
    are converted once, then taken, instead of converting every row's string."""
    base = pd.array(np.asarray(names, dtype=object), dtype=_STR_DTYPE)
    return base.take(np.asarray(codes, dtype=np.intp), allow_fill=True)


def orders_frame(
    records: Any, index: pd.DatetimeIndex, symbols: list[str], reference: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """Order records (fields idx, col, side 0 buy / 1 sell, size, price, fees; a vectorbt record
    array or a dict of arrays) as ORDER_COLUMNS; slippage is money lost against the reference price."""
    i, c = records["idx"], records["col"]
    ref = reference[i, c]
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
            "reason": _strings(_REASON_NAMES, reason[i, c]),
        },
        columns=list(ORDER_COLUMNS),
    )


def trades_frame(
    records: Any, index: pd.DatetimeIndex, symbols: list[str], reference: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """Exit-trade records (a vectorbt record array or a dict of arrays with the fields of
    ``exit_trades.records``) as TRADE_COLUMNS. Open trades: exit_time NaT, exit_price the last
    close (pnl unrealized), no exit fees or reason."""
    if len(records["col"]) == 0:
        return empty_trades()
    c, ei, xi = records["col"], records["entry_idx"], records["exit_idx"]
    closed = records["status"] == 1
    # sorted by entry time, then symbol name (records come by column, then time)
    rank = np.argsort(np.argsort(np.asarray(symbols, dtype=object)))
    order = np.lexsort((rank[c], ei))
    if not (order[1:] > order[:-1]).all():
        records = {k: np.asarray(records[k])[order] for k in _TRADE_FIELDS}
        c, ei, xi = records["col"], records["entry_idx"], records["exit_idx"]
        closed = records["status"] == 1
    size, entry_px, exit_px = records["size"], records["entry_price"], records["exit_price"]
    entry_fees, exit_fees, pnl = records["entry_fees"], records["exit_fees"], records["pnl"]
    entry_slip = size * (entry_px - reference[ei, c])
    exit_slip = np.where(closed, size * (reference[xi, c] - exit_px), 0.0)
    entry_time = index[ei]
    exit_time = index[xi].where(closed)
    names = np.where(closed, reason[xi, c], -1)  # no exit reason while open
    return pd.DataFrame(
        {
            "symbol": _strings(symbols, c),
            "entry_time": entry_time,
            "exit_time": exit_time,
            "entry_price": entry_px,
            "exit_price": exit_px,
            "quantity": size,
            "pnl": pnl,
            "return_pct": pnl / (size * entry_px),
            "entry_fees": entry_fees,
            "exit_fees": exit_fees,
            "commission": entry_fees + exit_fees,
            "slippage": entry_slip + exit_slip,
            "duration": exit_time - entry_time,
            "exit_reason": _strings(_REASON_NAMES, names),
            "status": _strings(_STATUSES, closed),
        },
        columns=list(TRADE_COLUMNS),
    )
