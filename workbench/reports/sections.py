"""Report sections: each builds one table (DataFrame) or Plotly figure from a BacktestResult.

Pure functions of the result, no display logic (see :mod:`workbench.reports.report` for that), so
notebooks, dashboards and tests can use them alike. Money is in the quote currency; fractions are
fractions (0.05 = 5 %).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench import review
from workbench.backtest.figures import downsample
from workbench.metrics import METRIC_LABELS, compute_metrics, format_metric, monthly_returns
from workbench.reports.provenance import provenance, scrub

if TYPE_CHECKING:
    from workbench.backtest.result import BacktestResult

BENCHMARK_KEYS: tuple[str, ...] = (
    "pnl", "final_equity", "total_return", "annualized_return", "volatility",
    "sharpe_ratio", "sortino_ratio", "max_drawdown", "calmar_ratio", "value_at_risk_1d", "value_at_risk",
)
#: the verdict's numbers, in order (buy-and-hold's total return follows them)
HEADLINE_KEYS: tuple[str, ...] = ("pnl", "total_return", "max_drawdown", "sharpe_ratio", "win_rate", "trade_count")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WIN, _LOSS = "#2ca02c", "#d62728"
_MARGIN = dict(l=40, r=20, t=50, b=40)


# ---- configuration and metrics ---------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "params":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_table(result: BacktestResult) -> pd.DataFrame:
    """Every config setting as ``setting -> value`` (dotted names, JSON values), secrets masked."""
    flat = _flatten(result.config.to_dict())
    values = [scrub(v if isinstance(v, str) else json.dumps(v)) for v in flat.values()]
    return pd.DataFrame({"value": values}, index=pd.Index(list(flat), name="setting"))


def metrics_table(result: BacktestResult) -> pd.DataFrame:
    """Every metric, labelled and formatted (``METRIC_LABELS``/``format_metric``), in label order."""
    rows = {label: format_metric(k, result.metrics.get(k, float("nan"))) for k, (label, _) in METRIC_LABELS.items()}
    return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="metric"))


def headline_table(result: BacktestResult) -> pd.DataFrame:
    """The verdict in a few numbers: ``HEADLINE_KEYS`` formatted, then buy-and-hold's total return to beat."""
    rows = {METRIC_LABELS[k][0]: format_metric(k, result.metrics.get(k, float("nan"))) for k in HEADLINE_KEYS}
    rows["Buy-and-hold Return"] = format_metric("total_return", benchmark_table(result).loc["total_return",
                                                                                             "buy_and_hold"])
    return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="metric"))


def equity_figure(result: BacktestResult) -> go.Figure:
    """Equity with drawdown below it (the backtest's own figure)."""
    return result.equity_figure()


def monthly_returns_figure(result: BacktestResult) -> go.Figure:
    """Heatmap of compounded monthly returns, years down, months across."""
    table = monthly_returns(result.equity, result.config.initial_balance)
    z = table.to_numpy(dtype=float) * 100.0
    text = [["" if np.isnan(v) else f"{v:.2f}%" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=list(_MONTHS), y=[str(y) for y in table.index], text=text, texttemplate="%{text}",
            colorscale="RdYlGn", zmid=0.0, hovertemplate="%{y} %{x}: %{text}<extra></extra>",
            colorbar=dict(title="%"),
        )
    )
    fig.update_layout(title="Monthly returns", yaxis=dict(type="category", autorange="reversed"),
                      height=max(220, 120 + 50 * len(table)), margin=_MARGIN)
    return fig


# ---- trade analysis ----------------------------------------------------------
def closed_trades(result: BacktestResult) -> pd.DataFrame:
    """The closed trades of the trade log."""
    return result.trades[result.trades["status"] == "closed"]


def _empty_figure(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250, margin=_MARGIN)
    return fig


def pnl_distribution_figure(result: BacktestResult) -> go.Figure:
    """Histogram of closed-trade P&L, winners and losers in their own colours."""
    title = "Trade P&L distribution"
    pnl = closed_trades(result)["pnl"].to_numpy(dtype=float)
    if not len(pnl):
        return _empty_figure(title, "no closed trades")
    fig = go.Figure()
    for name, vals, color in (("wins", pnl[pnl > 0], _WIN), ("losses", pnl[pnl <= 0], _LOSS)):
        fig.add_trace(go.Histogram(x=vals, name=f"{name} ({len(vals)})", marker_color=color, opacity=0.8))
    fig.update_layout(title=title, barmode="overlay", xaxis_title="P&L per trade (quote currency)",
                      yaxis_title="trades", margin=_MARGIN)
    return fig


def holding_period_figure(result: BacktestResult) -> go.Figure:
    """Histogram of closed-trade holding periods, in minutes or hours (whichever reads better)."""
    title = "Holding periods"
    dur = closed_trades(result)["duration"]
    if not len(dur):
        return _empty_figure(title, "no closed trades")
    minutes = (dur / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
    unit, scale = ("hours", 60.0) if np.median(minutes) >= 120 else ("minutes", 1.0)
    fig = go.Figure(go.Histogram(x=minutes / scale, marker_color="#1f77b4", name="trades"))
    fig.update_layout(title=title, xaxis_title=f"holding period ({unit})", yaxis_title="trades", margin=_MARGIN)
    return fig


def slippage_table(result: BacktestResult) -> pd.DataFrame:
    """Execution costs per symbol and in total: trades, entry notional, slippage and commission
    (total and per trade) and both as a fraction of notional. Open trades count their entry costs."""
    tr = result.trades
    notional = tr["quantity"].astype(float) * tr["entry_price"].astype(float)
    df = pd.DataFrame({"symbol": tr["symbol"], "notional": notional, "slippage": tr["slippage"].astype(float),
                       "commission": tr["commission"].astype(float)})
    rows = []
    for sym in [*result.config.symbols, "all"]:
        part = df if sym == "all" else df[df["symbol"] == sym]
        n, notion = len(part), float(part["notional"].sum())
        slip, comm = float(part["slippage"].sum()), float(part["commission"].sum())
        rows.append({
            "symbol": sym, "trades": n, "notional": notion,
            "total_slippage": slip, "avg_slippage": slip / n if n else np.nan,
            "total_commission": comm, "avg_commission": comm / n if n else np.nan,
            "slippage_pct": slip / notion if notion else np.nan,
            "cost_pct": (slip + comm) / notion if notion else np.nan,
        })
    return pd.DataFrame(rows).set_index("symbol")


# ---- trade review ------------------------------------------------------------------
def trade_review(result: BacktestResult) -> pd.DataFrame:
    """The trades with their excursions, timing, hour (in the config's time zone) and regime
    (:func:`workbench.review.review_trades`, whose docstring defines them)."""
    return review.review_trades(result.trades, result.bars, timezone=result.config.time.timezone)


def trade_review_tables(result: BacktestResult) -> dict[str, pd.DataFrame]:
    """Caption -> table: averages of the excursions and timing (winners, losers, all), then the closed
    trades' wins and losses by symbol, hour of day, exit reason and market regime."""
    rv = trade_review(result)
    by = {"symbol": "By symbol", "hour": f"By hour of day ({result.config.time.timezone})",
          "exit_reason": "By exit reason", "regime": "By market regime"}
    return {"Excursions and timing": review.excursion_summary(rv),
            **{caption: review.attribution(rv, key) for key, caption in by.items()}}


def trade_review_figures(result: BacktestResult) -> list[go.Figure]:
    """P&L against holding time, and P&L against the maximum adverse excursion."""
    rv = trade_review(result)
    return [review.pnl_vs_holding_figure(rv), review.excursion_figure(rv)]


# ---- benchmark -----------------------------------------------------------------
def benchmark_equity(result: BacktestResult) -> pd.Series:
    """Buy-and-hold of the same symbols: equal weight, same initial balance, bought at each symbol's
    first open paying the taker fee, valued at the close (forward-filled), on the backtest's time index."""
    cfg = result.config
    alloc = cfg.initial_balance / len(cfg.symbols)
    fee = cfg.commission.taker
    total = pd.Series(0.0, index=result.equity.index)
    for sym in cfg.symbols:
        bars = result.bars[sym]
        qty = alloc * (1.0 - fee) / float(bars["open"].iloc[0])
        value = (qty * bars["close"]).reindex(total.index).ffill()
        total += value.fillna(alloc)  # before the symbol's first bar the allocation is still cash
    return total.rename("buy_and_hold")


def benchmark_table(result: BacktestResult) -> pd.DataFrame:
    """Key metrics of the strategy and of buy-and-hold side by side (numbers, ``BENCHMARK_KEYS``)."""
    bench = compute_metrics(benchmark_equity(result), None, result.config.initial_balance)
    return pd.DataFrame(
        {"strategy": [result.metrics.get(k, np.nan) for k in BENCHMARK_KEYS],
         "buy_and_hold": [bench[k] for k in BENCHMARK_KEYS]},
        index=pd.Index(list(BENCHMARK_KEYS), name="metric"),
    )


def format_benchmark(table: pd.DataFrame) -> pd.DataFrame:
    """``benchmark_table`` with metric labels and formatted values."""
    out = table.apply(lambda col: [format_metric(k, v) for k, v in col.items()])
    out.index = [METRIC_LABELS[k][0] for k in table.index]
    out.index.name = "metric"
    return out


def benchmark_figure(result: BacktestResult) -> go.Figure:
    """Strategy equity against buy-and-hold."""
    fig = go.Figure()
    for s, name, color in ((result.equity, "strategy", "#1f77b4"), (benchmark_equity(result), "buy & hold", "#7f7f7f")):
        s = downsample(s)
        fig.add_trace(go.Scatter(x=s.index, y=s.to_numpy(), name=name, line=dict(color=color)))
    fig.update_layout(title="Strategy vs buy-and-hold (equal weight)", yaxis_title="equity", margin=_MARGIN)
    return fig


# ---- data and provenance -----------------------------------------------------------
def quality_table(result: BacktestResult) -> pd.DataFrame:
    """The data-quality report of each symbol's bars, one row per symbol."""
    from workbench.data import quality_report

    rows = []
    for sym, bars in result.bars.items():
        q = quality_report(bars, result.config.data.timeframe)
        row = {"symbol": sym, "bars": q.bars, "start": q.start, "end": q.end, "missing_bars": q.missing_bars}
        row.update({c: getattr(q, c) for c in q.CHECKS})
        row["ok"] = q.ok
        rows.append(row)
    return pd.DataFrame(rows).set_index("symbol")


def provenance_table(result: BacktestResult) -> pd.DataFrame:
    """Version, time, config JSON, data fingerprints (sha256 per symbol) and ``WORKBENCH_*`` settings."""
    p = provenance(result.config, result.bars)
    rows: dict[str, str] = {"generated at (UTC)": p["generated_at"]}
    rows.update({f"version: {k}": v for k, v in p["versions"].items()})
    rows["config (JSON)"] = p["config"]
    rows.update({f"data sha256: {k}": v for k, v in p["data_fingerprint"].items()})
    rows.update({f"env: {k}": v for k, v in p["environment"].items()})
    return pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="item"))


# ---- market regimes and the fidelity twin ----------------------------------------------
def regime_table(result: BacktestResult, period: str = "1D") -> pd.DataFrame:
    """Performance by market regime: each ``period`` labelled trending, ranging or high-volatility from
    its bars, and per label the periods, return, P&L, trades and win rate
    (:func:`workbench.metrics.regime.regime_split`)."""
    from workbench.metrics.regime import regime_split

    return regime_split(result.equity, result.trades, result.bars, period, initial=result.config.initial_balance)


def fidelity_table(session_id: str, store: Any = None) -> pd.DataFrame:
    """A paper or live session against its fidelity twin (:func:`workbench.twin.fidelity`): trades
    matched, missing and extra, mean fill price differences (bps) and the P&L gap, as ``item -> value``."""
    from workbench.twin import fidelity, fidelity_summary

    summary = fidelity_summary(fidelity(session_id, store))
    return pd.DataFrame({"value": list(summary.values())}, index=pd.Index(list(summary), name="item"))
