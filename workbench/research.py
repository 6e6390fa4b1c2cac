"""Helpers behind the analyst notebooks (notebooks/01-04): each notebook cell calls one of these,
or one function of the package, so the notebooks stay thin.

* :func:`notebook_days` / :func:`sample_config` / :func:`sample_bars_for`: a small config on the
  bundled sample data whose length comes from ``$WORKBENCH_NB_DAYS`` (tests keep it short).
* :func:`replay_feed` / :func:`wait_until`: a paper session replayed at a watchable pace in the
  kernel's own event loop, and an ``await``-able wait for it to reach some point.
* :func:`run_and_save` / :func:`compare_sessions` / :func:`equity_overlay`: several backtests saved
  to the store, then compared side by side from the store (metrics from
  :func:`workbench.metrics.compute_metrics`, the one definition).
* :func:`sensitivity_figure`: a one-parameter sensitivity table as a figure.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.config import SessionConfig, make_config

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.engine.feeds import ReplayFeed
    from workbench.store import Store

__all__ = [
    "notebook_days", "sample_config", "sample_bars_for", "replay_feed", "wait_until", "run_and_save",
    "compare_sessions", "equity_overlay", "sensitivity_figure",
]

SAMPLE_START = "2024-01-01"
DAYS_ENV = "WORKBENCH_NB_DAYS"


def notebook_days(default: float) -> float:
    """Days of sample data a notebook uses: ``$WORKBENCH_NB_DAYS`` when set (tests set it small),
    else ``default``."""
    raw = os.environ.get(DAYS_ENV, "").strip()
    if not raw:
        return float(default)
    try:
        days = float(raw)
    except ValueError:
        days = float("nan")
    if not days > 0:
        raise ValueError(f"{DAYS_ENV} must be a positive number of days, e.g. 3 (got {raw!r})")
    return days


def sample_config(days: float, *, strategy: str = "momentum", params: Mapping[str, Any] | None = None,
                  symbols: Sequence[str] = ("BTC/USDT",), start: str = SAMPLE_START, **fields: Any) -> SessionConfig:
    """A config on the bundled sample data covering ``days`` days from ``start``; ``fields`` go to
    :func:`workbench.make_config` (e.g. ``initial_balance``, ``risk={...}``, ``kind="paper"``)."""
    if not days > 0:
        raise ValueError(f"days must be positive (got {days!r})")
    begin = pd.Timestamp(start, tz="UTC")
    end = begin + pd.Timedelta(days=days) - pd.Timedelta(minutes=1)
    return make_config(strategy=strategy, params=dict(params or {}), symbols=list(symbols),
                       start=begin.isoformat(), end=end.isoformat(), data={"source": "sample"}, **fields)


def sample_bars_for(config: SessionConfig) -> dict[str, pd.DataFrame]:
    """Each of ``config.symbols``' bars over its start-end (as a backtest of it would load them)."""
    from workbench.backtest.runner import bars_for

    return bars_for(config, None)


def replay_feed(config: SessionConfig, bars_per_second: float = 50.0) -> ReplayFeed:
    """A paper-session feed replaying ``config``'s bars at ``bars_per_second`` (so a chart can be
    watched filling up); pass it as ``Session(config, store, feed=...)``."""
    from workbench.data import timeframe_delta
    from workbench.engine.feeds import ReplayFeed

    if not bars_per_second > 0:
        raise ValueError(f"bars_per_second must be positive, e.g. 50 (got {bars_per_second!r})")
    step = timeframe_delta(config.data.timeframe).total_seconds()
    return ReplayFeed(sample_bars_for(config), speed=step * bars_per_second, yield_every=1)


async def wait_until(session: Any, *, bars: int | None = None, state: str | None = None,
                     timeout: float = 60.0) -> Any:
    """Wait (``await`` it in a cell; the session keeps running meanwhile) until the session has
    seen ``bars`` bars, or is in ``state``, or has ended; returns the session. A failed session
    or a timeout raises with the reason."""
    if bars is None and state is None:
        raise ValueError("say what to wait for: bars=N and/or state='paused'")
    def goal() -> bool:
        return ((bars is not None and session.bars_seen >= bars)
                or (state is not None and session.state.value == state))
    deadline = time.monotonic() + timeout
    while not goal():
        if session.state.is_final:
            if session.state.value == "failed":
                raise RuntimeError(f"session {session.id} failed: {session.error}")
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"session {session.id} did not get there in {timeout:g} s "
                               f"(state {session.state.value}, {session.bars_seen} bars seen)")
        await asyncio.sleep(0.05)
    return session


def run_and_save(config: SessionConfig, variants: Sequence[Mapping[str, Any]], store: Store, *,
                 bars: Mapping[str, pd.DataFrame] | None = None) -> list[str]:
    """Backtest ``config`` with each of ``variants`` (param overrides, e.g. ``{"window": 30}``),
    save each to ``store`` as a completed backtest session named after its params; their ids."""
    from workbench.backtest.runner import run_backtest

    frames = bars if bars is not None else sample_bars_for(config)
    ids = []
    for v in variants:
        label = ", ".join(f"{k}={val}" for k, val in v.items()) or "defaults"
        cfg = config.replace(params={**config.params, **v}, name=f"{config.strategy} {label}")
        ids.append(store.save_backtest(cfg, run_backtest(cfg, frames)))
    return ids


def compare_sessions(store: Store, ids: Sequence[str],
                     metrics: Sequence[str] = ("total_return", "sharpe_ratio", "max_drawdown", "win_rate",
                                               "profit_factor", "trade_count", "exposure")) -> pd.DataFrame:
    """One row per session (index: name or id): kind, strategy, state and ``metrics`` computed
    from its stored equity curve and trades by ``compute_metrics`` (live and paper sessions too)."""
    from workbench.metrics import METRIC_LABELS, compute_metrics

    unknown = [m for m in metrics if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(METRIC_LABELS)}")
    rows = []
    for sid in ids:
        row = store.get_session(sid)
        eq = store.equity(sid)["equity"]
        trades = store.trades(sid)  # TRADE_COLUMNS, duration included
        values = (compute_metrics(eq, trades, float(row["initial_balance"])) if len(eq)
                  else dict.fromkeys(metrics, float("nan")))
        legs = ", ".join(f"{leg.name} {leg.allocation:.0%}" for leg in row["config"].legs) if row["config"] else ""
        rows.append({"session": row.get("name") or sid, "id": sid, "kind": row["kind"], "strategy": row["strategy"],
                     "legs": legs, "state": row["state"], **{m: values[m] for m in metrics}})
    return pd.DataFrame(rows).set_index("session")


def equity_overlay(store: Store, ids: Sequence[str], *, normalize: bool = True) -> go.Figure:
    """The sessions' equity curves on one chart (as growth of 1 when ``normalize``)."""
    import plotly.graph_objects as go

    from workbench.backtest.figures import downsample

    fig = go.Figure()
    for sid in ids:
        row = store.get_session(sid)
        eq = store.equity(sid)["equity"]
        if normalize:
            eq = eq / float(row["initial_balance"])
        eq = downsample(eq)
        fig.add_trace(go.Scatter(x=eq.index, y=eq.to_numpy(), mode="lines", name=row.get("name") or sid))
    fig.update_layout(title="Equity" + (" (growth of 1)" if normalize else ""), xaxis_title="time",
                      yaxis_title="equity / initial balance" if normalize else "equity", height=400,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def sensitivity_figure(table: pd.DataFrame, metrics: Sequence[str] = ("sharpe_ratio", "total_return")) -> go.Figure:
    """A :func:`workbench.backtest.sweep.sensitivity` table as lines, one panel per metric."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"metric(s) {', '.join(missing)} not in the table; columns: {', '.join(table.columns)}")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
    for j, m in enumerate(metrics, start=1):
        fig.add_trace(go.Scatter(x=table.index, y=table[m], mode="lines+markers", name=m), row=1, col=j)
        fig.update_xaxes(title_text=str(table.index.name), row=1, col=j)
    fig.update_layout(title=f"Sensitivity to {table.index.name}", showlegend=False, height=350)
    return fig
