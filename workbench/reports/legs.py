"""The report's "Legs" section of a multi-strategy backtest: per leg its allocation, trades and P&L
(:func:`workbench.backtest.legs.leg_table`, summing to the session's P&L) and each leg's P&L over time."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.backtest.legs import leg_equity, leg_metrics, leg_table
from workbench.backtest.result import BacktestResult

__all__ = ["legs_table", "legs_figure"]


def legs_table(result: BacktestResult) -> pd.DataFrame:
    """One row per leg (its P&L and trades, then its return, Sharpe ratio and max drawdown on its share of the
    capital), then a "session" row with the totals (indexed by leg)."""
    table = leg_table(result.config, result.trades).set_index("leg")
    table = table.join(leg_metrics(result)[["total_return", "sharpe_ratio", "max_drawdown"]])
    total = {"allocation": table["allocation"].sum(), "trades": table["trades"].sum(),
             "closed": table["closed"].sum(), "pnl": table["pnl"].sum(),
             "realized_pnl": table["realized_pnl"].sum(), "fees": table["fees"].sum()}
    return pd.concat([table, pd.DataFrame([total], index=pd.Index(["session"], name="leg"))])


def legs_figure(result: BacktestResult) -> go.Figure:
    """Each leg's P&L over time (its closed trades plus its open positions at the close, net of fees)."""
    curves = leg_equity(result)
    fig = go.Figure([go.Scatter(x=curves.index, y=curves[c].to_numpy(), name=str(c), mode="lines")
                     for c in curves.columns])
    fig.update_layout(title="P&L per leg", height=320, margin=dict(l=50, r=20, t=40, b=30),
                      yaxis_title="P&L", legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig
