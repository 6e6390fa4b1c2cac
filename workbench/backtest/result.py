"""BacktestResult: the vectorbt portfolio plus the workbench views of it (equity, trade log, metrics)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.backtest.kernel import REASONS
from workbench.backtest.metrics import METRIC_LABELS, TRADE_COLUMNS, compute_metrics, empty_trades, format_metric
from workbench.config import SessionConfig

if TYPE_CHECKING:
    import plotly.graph_objects as go

ORDER_COLUMNS: tuple[str, ...] = (
    "time", "symbol", "side", "quantity", "price", "reference_price", "fees", "slippage", "reason",
)


@dataclass
class BacktestResult:
    """One backtest: inputs, the vectorbt ``portfolio``, series indexed by bar time, the trade and
    order logs, and ``metrics`` (see ``workbench.backtest.metrics``)."""

    config: SessionConfig
    bars: dict[str, pd.DataFrame]
    portfolio: Any  # vectorbt.Portfolio
    equity: pd.Series  # cash + positions at close, all symbols
    cash: pd.Series
    exposure: pd.Series  # money in positions (quantity × close), all symbols
    trades: pd.DataFrame  # TRADE_COLUMNS
    orders: pd.DataFrame  # ORDER_COLUMNS
    metrics: dict[str, float] = field(default_factory=dict)

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
    portfolio: Any,
    index: pd.DatetimeIndex,
    reference: np.ndarray,
    reason: np.ndarray,
) -> BacktestResult:
    """Assemble a BacktestResult from the portfolio (indexed like ``index``, maybe without its time
    zone) and the kernel's per-fill reference prices and reasons."""
    symbols = list(config.symbols)
    equity = _series(portfolio.value(), "equity", index)
    trades = trades_frame(portfolio.exit_trades.records, index, symbols, reference, reason)
    return BacktestResult(
        config=config,
        bars=bars,
        portfolio=portfolio,
        equity=equity,
        cash=_series(portfolio.cash(), "cash", index),
        exposure=_series(portfolio.asset_value(), "exposure", index),
        trades=trades,
        orders=orders_frame(portfolio.orders.records, index, symbols, reference, reason),
        metrics=compute_metrics(equity, trades, config.initial_balance),
    )


def _series(obj: pd.Series | pd.DataFrame, name: str, index: pd.DatetimeIndex) -> pd.Series:
    s = obj.iloc[:, 0] if isinstance(obj, pd.DataFrame) else obj
    return pd.Series(s.to_numpy(), index=index.rename("time"), name=name)


def orders_frame(
    records: np.ndarray, index: pd.DatetimeIndex, symbols: list[str], reference: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """vectorbt order records as ORDER_COLUMNS; slippage is money lost against the reference price."""
    i, c = records["idx"], records["col"]
    ref = reference[i, c]
    return pd.DataFrame(
        {
            "time": index[i],
            "symbol": np.asarray(symbols, dtype=object)[c],
            "side": np.where(records["side"] == 0, "buy", "sell").astype(object),
            "quantity": records["size"],
            "price": records["price"],
            "reference_price": ref,
            "fees": records["fees"],
            "slippage": records["size"] * np.abs(records["price"] - ref),
            "reason": np.asarray(REASONS, dtype=object)[reason[i, c]],
        },
        columns=list(ORDER_COLUMNS),
    )


def trades_frame(
    records: np.ndarray, index: pd.DatetimeIndex, symbols: list[str], reference: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """vectorbt exit-trade records as TRADE_COLUMNS. Open trades: exit_time NaT, exit_price the last
    close (pnl unrealized), no exit fees or reason."""
    if len(records) == 0:
        return empty_trades()
    c, ei, xi = records["col"], records["entry_idx"], records["exit_idx"]
    closed = records["status"] == 1
    size, entry_px, exit_px = records["size"], records["entry_price"], records["exit_price"]
    entry_slip = size * (entry_px - reference[ei, c])
    exit_slip = np.where(closed, size * (reference[xi, c] - exit_px), 0.0)
    entry_time = pd.Series(index[ei])
    exit_time = pd.Series(index[xi]).where(closed)
    names = np.asarray(REASONS, dtype=object)[reason[xi, c]]
    out = pd.DataFrame(
        {
            "symbol": np.asarray(symbols, dtype=object)[c],
            "entry_time": entry_time,
            "exit_time": exit_time,
            "entry_price": entry_px,
            "exit_price": exit_px,
            "quantity": size,
            "pnl": records["pnl"],
            "return_pct": records["pnl"] / (size * entry_px),
            "entry_fees": records["entry_fees"],
            "exit_fees": records["exit_fees"],
            "commission": records["entry_fees"] + records["exit_fees"],
            "slippage": entry_slip + exit_slip,
            "duration": exit_time - entry_time,
            "exit_reason": np.where(closed, names, None),
            "status": np.where(closed, "closed", "open").astype(object),
        },
        columns=list(TRADE_COLUMNS),
    )
    return out.sort_values(["entry_time", "symbol"], kind="stable", ignore_index=True)
