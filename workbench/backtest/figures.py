"""Plotly figures of a backtest: equity with drawdown, price with entry/exit markers (no widgets)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.metrics import drawdown_series

MAX_POINTS = 5_000
CANDLE_LIMIT = 2_000  # up to this many bars the price chart shows candles, beyond it a close line


def downsample(series: pd.Series, max_points: int = MAX_POINTS) -> pd.Series:
    """At most ``max_points`` points: each bucket keeps its first, lowest, highest and last point."""
    n = len(series)
    if n <= max_points:
        return series
    edges = np.linspace(0, n, max(max_points // 4, 1) + 1).astype(int)
    v = series.to_numpy(dtype=float)
    lo = [s + int(np.argmin(v[s:e])) for s, e in zip(edges[:-1], edges[1:])]
    hi = [s + int(np.argmax(v[s:e])) for s, e in zip(edges[:-1], edges[1:])]
    keep = np.unique(np.concatenate([edges[:-1], edges[1:] - 1, lo, hi]))
    return series.iloc[keep]


def equity_figure(equity: pd.Series, initial_balance: float) -> go.Figure:
    """Equity (top) and drawdown below its running peak in % (bottom), sharing the time axis."""
    dd = -100.0 * drawdown_series(equity, initial_balance)
    eq, dd = downsample(equity), downsample(dd)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.03)
    fig.add_trace(go.Scatter(x=eq.index, y=eq.to_numpy(), name="equity", line=dict(color="#1f77b4")), row=1, col=1)
    fig.add_hline(y=initial_balance, line=dict(color="grey", dash="dot", width=1), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=dd.index, y=dd.to_numpy(), name="drawdown", fill="tozeroy", line=dict(color="#d62728")),
        row=2, col=1,
    )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    fig.update_layout(title="Equity and drawdown", showlegend=False, margin=dict(l=40, r=20, t=40, b=30))
    return fig


def price_figure(bars: pd.DataFrame, trades: pd.DataFrame, symbol: str) -> go.Figure:
    """Candles (short series) or a close line, with entries (green ▲) and exits (red ▼) of ``symbol``."""
    fig = go.Figure()
    if len(bars) <= CANDLE_LIMIT:
        fig.add_trace(
            go.Candlestick(
                x=bars.index, open=bars["open"], high=bars["high"], low=bars["low"], close=bars["close"], name=symbol
            )
        )
    else:
        close = downsample(bars["close"])
        fig.add_trace(go.Scatter(x=close.index, y=close.to_numpy(), name=symbol, line=dict(color="#444", width=1)))
    own = trades[trades["symbol"] == symbol]
    fig.add_trace(
        go.Scatter(
            x=own["entry_time"], y=own["entry_price"], mode="markers", name="entry",
            marker=dict(symbol="triangle-up", color="green", size=10),
        )
    )
    done = own[own["status"] == "closed"]
    fig.add_trace(
        go.Scatter(
            x=done["exit_time"], y=done["exit_price"], mode="markers", name="exit",
            marker=dict(symbol="triangle-down", color="red", size=10),
            text=done["exit_reason"], hovertemplate="%{text}: %{y}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{symbol}: price and trades", xaxis_rangeslider_visible=False, margin=dict(l=40, r=20, t=40, b=30)
    )
    return fig
