"""BacktestResult: equity, cash, exposure, trade and order logs and metrics of a backtest, plus the
vectorbt portfolio (built on first access).

:func:`replay_nb` replays the kernel's fills exactly as ``vectorbt.Portfolio.from_orders`` does
(same order execution, tolerances and rounding: ``buy_nb``/``sell_nb``, ``cash_flow_nb``,
``cash_grouped_nb``, ``assets_nb``, ``get_exit_trades_nb``), so the result's series and logs equal
the portfolio's ``value()``, ``cash()``, ``asset_value()``, ``orders`` and ``exit_trades`` without
building it; ``BacktestResult.portfolio`` builds the portfolio itself only when asked for.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numba import njit

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


# ---- vectorbt's from_orders, replayed (longonly, cash shared, no slippage) -------------------------
_REL_TOL, _ABS_TOL = 1e-9, 1e-12  # vectorbt.utils.math_


@njit(cache=True)
def _is_close_nb(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return False
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


@njit(cache=True)
def _add_nb(a: float, b: float) -> float:
    """vectorbt's add_nb: a + b, snapped to 0 when they (nearly) cancel."""
    if np.sign(a) != np.sign(b):
        if _is_close_nb(abs(a), abs(b)):
            return 0.0
    elif _is_close_nb(a + b, 0.0):
        return 0.0
    return a + b


@njit(cache=True)
def replay_nb(
    qty: np.ndarray,  # (n, m) kernel quantities: NaN none, > 0 buy, -inf sell all
    price: np.ndarray,  # (n, m) fill prices
    call_seq: np.ndarray,  # (n, m) order of the columns within each bar
    close: np.ndarray,  # (n, m) valuation prices, no NaN
    init_cash: float,
    fees: float,
    fixed_fees: float,
):
    """The fills through vectorbt's ``from_orders`` logic: per-bar cash, asset value and value
    (all columns), the order records (idx, col, side 0 buy / 1 sell, size, price, fees) in
    simulation order and the exit-trade records (col, size, entry_idx, entry_price, entry_fees,
    exit_idx, exit_price, exit_fees, pnl, status 0 open / 1 closed) by column, then time."""
    n, m = qty.shape
    k_max = 0
    for i in range(n):
        for c in range(m):
            k_max += not np.isnan(qty[i, c])
    o_idx = np.empty(k_max, dtype=np.int64)
    o_col = np.empty(k_max, dtype=np.int64)
    o_side = np.empty(k_max, dtype=np.int64)
    o_size = np.empty(k_max)
    o_price = np.empty(k_max)
    o_fees = np.empty(k_max)
    cash_out = np.empty(n)
    asset_out = np.empty(n)
    value_out = np.empty(n)

    sim_cash = init_cash
    position = np.zeros(m)  # simulation state (buy_nb / sell_nb)
    assets = np.zeros(m)  # assets_nb
    flow = np.zeros(m)
    cash_now = init_cash  # cash_grouped_nb
    k = 0
    for i in range(n):
        traded = False
        for c in range(m):
            if not np.isnan(qty[i, c]):
                traded = True
        if traded:
            for c in range(m):
                flow[c] = 0.0
        for j in range(m if traded else 0):
            c = call_seq[i, j]
            size = qty[i, c]
            if np.isnan(size):
                continue
            p = price[i, c]
            if size > 0.0:  # buy_nb, direction longonly
                if sim_cash == 0.0:
                    continue
                req_cash = size * p
                req_fees = req_cash * fees + fixed_fees
                total = req_cash + req_fees
                if _is_close_nb(total, sim_cash) or total < sim_cash:
                    final_size = size
                    fees_paid = req_fees
                    final_req = total
                else:
                    max_req = _add_nb(sim_cash, -fixed_fees) / (1.0 + fees)
                    if max_req <= 0.0:
                        continue
                    final_size = max_req / p
                    fees_paid = sim_cash - max_req
                    final_req = sim_cash
                if _is_close_nb(size, 0.0):
                    continue
                sim_cash = _add_nb(sim_cash, -final_req)
                position[c] = _add_nb(position[c], final_size)
                side = 0
            else:  # sell_nb, direction longonly
                final_size = min(position[c], -size)
                if position[c] == 0.0 or _is_close_nb(final_size, 0.0):
                    continue
                acq = final_size * p
                fees_paid = acq * fees + fixed_fees
                final_acq = _add_nb(acq, -fees_paid)
                if final_acq < 0.0:
                    continue
                sim_cash = sim_cash + final_acq
                position[c] = _add_nb(position[c], -final_size)
                side = 1
            o_idx[k] = i
            o_col[k] = c
            o_side[k] = side
            o_size[k] = final_size
            o_price[k] = p
            o_fees[k] = fees_paid
            k += 1
            signed = final_size if side == 0 else -final_size  # cash_flow_nb / assets_nb
            flow[c] = _add_nb(flow[c], -signed * p - fees_paid)
            assets[c] = _add_nb(assets[c], signed)
        if traded:  # cash_grouped_nb; without orders add_nb(cash, 0.0) == cash (cash is 0 or beyond abs_tol)
            total_flow = 0.0
            for c in range(m):
                total_flow += flow[c]
            cash_now = _add_nb(cash_now, total_flow)
        total_asset = 0.0
        for c in range(m):
            total_asset += close[i, c] * assets[c]
        cash_out[i] = cash_now
        asset_out[i] = total_asset
        value_out[i] = cash_now + total_asset

    # get_exit_trades_nb: only whole-position buys/sells can occur (long only, sells are "all")
    t_col = np.empty(k, dtype=np.int64)
    t_size = np.empty(k)
    t_entry_idx = np.empty(k, dtype=np.int64)
    t_entry_price = np.empty(k)
    t_entry_fees = np.empty(k)
    t_exit_idx = np.empty(k, dtype=np.int64)
    t_exit_price = np.empty(k)
    t_exit_fees = np.empty(k)
    t_pnl = np.empty(k)
    t_status = np.empty(k, dtype=np.int64)
    t = 0
    for col in range(m):
        in_position = False
        entry_idx = 0
        size_sum = 0.0
        gross_sum = 0.0
        fees_sum = 0.0
        for r in range(k):
            if o_col[r] != col:
                continue
            if not in_position:
                in_position = True
                entry_idx = o_idx[r]
                size_sum = 0.0
                gross_sum = 0.0
                fees_sum = 0.0
            if o_side[r] == 0:
                size_sum += o_size[r]
                gross_sum += o_size[r] * o_price[r]
                fees_sum += o_fees[r]
                continue
            order_size = o_size[r]
            exit_size = size_sum if _is_close_nb(order_size, size_sum) else order_size
            entry_price = gross_sum / size_sum
            entry_fees = (exit_size / size_sum) * fees_sum
            t_col[t] = col
            t_size[t] = exit_size
            t_entry_idx[t] = entry_idx
            t_entry_price[t] = entry_price
            t_entry_fees[t] = entry_fees
            t_exit_idx[t] = o_idx[r]
            t_exit_price[t] = o_price[r]
            t_exit_fees[t] = o_fees[r]
            t_pnl[t] = _add_nb(exit_size * o_price[r], -(exit_size * entry_price)) - entry_fees - o_fees[r]
            t_status[t] = 1
            t += 1
            if _is_close_nb(order_size, size_sum):
                in_position = False
            else:
                frac = (size_sum - order_size) / size_sum
                size_sum *= frac
                gross_sum *= frac
                fees_sum *= frac
        if in_position and (not _is_close_nb(-size_sum, 0.0)) and -size_sum < 0.0:
            exit_price = close[n - 1, col]
            entry_price = gross_sum / size_sum
            entry_fees = (size_sum / size_sum) * fees_sum
            t_col[t] = col
            t_size[t] = size_sum
            t_entry_idx[t] = entry_idx
            t_entry_price[t] = entry_price
            t_entry_fees[t] = entry_fees
            t_exit_idx[t] = n - 1
            t_exit_price[t] = exit_price
            t_exit_fees[t] = 0.0
            t_pnl[t] = _add_nb(size_sum * exit_price, -(size_sum * entry_price)) - entry_fees
            t_status[t] = 0
            t += 1
    return (
        cash_out, asset_out, value_out,
        o_idx[:k], o_col[:k], o_side[:k], o_size[:k], o_price[:k], o_fees[:k],
        t_col[:t], t_size[:t], t_entry_idx[:t], t_entry_price[:t], t_entry_fees[:t],
        t_exit_idx[:t], t_exit_price[:t], t_exit_fees[:t], t_pnl[:t], t_status[:t],
    )


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
