"""The A/B comparison view: equity curves overlaid, metrics side by side and the verdict.

``ABView(result=...)`` shows a finished :class:`~workbench.ab.ABResult`; ``ABView(store, label=...)``
(or ``session_ids={variant: id}``) follows a paper A/B's sessions in the store, refreshing every
``interval`` seconds on the kernel's loop until they have all ended. Running sessions' metrics are
computed from their stored equity (the store keeps a session's metrics once it ends); beside a live
session, its arm ``live`` is shown over the A/B window only, running or ended
(:func:`workbench.ab.paper.arm_metrics`). Display ``view.widget`` in a notebook or a page;
:func:`verdict_html` is the verdict alone, for any sessions compared on one feed (the history's compare section).
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from workbench.ab import ABResult, ab_equity, ab_sessions, judge
from workbench.ab.paper import LIVE_ARM, arm_metrics
from workbench.ab.stats import Verdict
from workbench.domain import FINAL_STATES
from workbench.metrics import METRIC_LABELS, format_metric
from workbench.store import Store
from workbench.ui.charts import figure_widget
from workbench.ui.common import Ticker, message, open_store

__all__ = ["ABView", "same_bars", "verdict_html"]

MAX_POINTS = 2000
SHOWN = ("total_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "win_rate", "profit_factor", "trade_count")
STATS = (("psr", "PSR (P[Sharpe > 0])", "{:.2f}"), ("dsr", "Deflated Sharpe", "{:.2f}"),
         ("min_track_record", "Min. track record (periods)", "{:,.0f}"))


def verdict_block(v: Verdict, period: str) -> str:
    """The verdict as HTML: winner or no difference, how sure, and the leader's comparisons."""
    color = "#2e7d32" if v.winner else "#37474f"
    rows = "".join(
        f"<li>{html.escape(c.a)} - {html.escape(c.b)}: {c.mean_diff:+.3g} per {html.escape(period)}, interval "
        f"[{c.ci_low:+.3g}, {c.ci_high:+.3g}], p = {c.p_value:.3f}</li>" for c in v.comparisons)
    return (f"<div class='wb-ab-verdict' style='margin-top:6px'><b style='color:{color}'>{html.escape(v.text)}</b>"
            f"<div style='color:#555'>sure: {v.sure:.1%} · {v.periods} periods of {html.escape(period)} · "
            f"{v.method} block bootstrap (block {v.block}, {v.n_boot} resamples)</div><ul>{rows}</ul></div>")


def same_bars(equity: pd.DataFrame) -> bool:
    """Whether the curves (one column each, on their union of times) ran on the same bars: the same
    first time, and each one's times a prefix of the union (a running session may lag behind)."""
    present = equity.notna().to_numpy()
    return bool(len(present)) and bool(present[0].all()) and not (present[1:] & ~present[:-1]).any()


def verdict_html(store: Store, session_ids: Mapping[str, str], **judge_args: Any) -> str:
    """The verdict on stored sessions' equity (``name -> id``) when they ran on the same bars with the
    same initial balance, else a note saying why there is none."""
    ids = dict(session_ids)
    balances = {float(store.get_session(sid)["initial_balance"]) for sid in ids.values()}
    if len(ids) < 2 or len(balances) != 1:
        return message("a verdict needs two or more sessions with the same initial balance", "info")
    try:
        equity = ab_equity(store, ids)
        if not same_bars(equity):
            return message("no A/B verdict: these sessions did not run on the same bars", "info")
        v, period = judge(equity.dropna(), balances.pop(), **judge_args)
    except ValueError as e:
        return message(f"no verdict yet: {e}", "info")
    return verdict_block(v, period)


class ABView:
    """Equity overlaid, metrics side by side, verdict; see the module docstring."""

    def __init__(self, store: Store | str | None = None, *, label: str | None = None,
                 session_ids: Mapping[str, str] | None = None, result: ABResult | None = None,
                 interval: float = 2.0, n_boot: int = 1000):
        if result is None and session_ids is None and label is None:
            raise ValueError("ABView needs result=ABResult, or a store with label= or session_ids=")
        self.result, self.n_boot = result, n_boot
        self.store = None if result is not None else open_store(store)
        self.session_ids = dict(result.session_ids if result is not None else
                                session_ids if session_ids is not None else ab_sessions(self.store, str(label)))
        if result is None and len(self.session_ids) < 2:
            raise ValueError(f"found {len(self.session_ids)} session(s) of A/B {label!r}; an A/B has 2 or more")
        self.figure = figure_widget(go.Figure(layout={
            "title": "Equity (return %, overlaid)", "height": 340, "margin": {"l": 50, "r": 20, "t": 40, "b": 30},
            "legend": {"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"}, "yaxis": {"ticksuffix": "%"}}))
        self.status, self.table, self.verdict = W.HTML(), W.HTML(), W.HTML()
        self.status.add_class("wb-ab-status")
        self.table.add_class("wb-ab-metrics")
        self.widget = W.VBox([self.status, self.figure, self.table, self.verdict])
        self.widget.add_class("wb-ab")
        self.ticker = Ticker(self.refresh, interval, on_error=lambda e: self._say(f"refresh failed: {e}", "error"))
        self.done = False
        self.refresh()
        if not self.done:
            self.ticker.start()

    def _say(self, text: str, kind: str = "info") -> None:
        self.status.value = message(text, kind)

    def _read(self) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], float, dict[str, str]]:
        """(equity, metrics per variant, initial balance, state per variant) now."""
        if self.result is not None:
            r = self.result
            states = {v.name: "completed" for v in r.variants}
            return r.equity, {k: dict(m) for k, m in r.metrics.T.items()}, r.base.initial_balance, states
        assert self.store is not None
        rows = {name: self.store.get_session(sid) for name, sid in self.session_ids.items()}
        equity = ab_equity(self.store, self.session_ids)
        balance = float(next(row for name, row in rows.items() if name != LIVE_ARM)["initial_balance"])
        metrics = arm_metrics(self.store, self.session_ids, equity, balance)
        return equity, metrics, balance, {name: str(row["state"]) for name, row in rows.items()}

    def refresh(self) -> None:
        """Read the variants once and redraw (the ticker calls this)."""
        from workbench.backtest.figures import downsample

        equity, metrics, balance, states = self._read()
        with self.figure.batch_update():
            self.figure.data = ()
            for name in equity.columns:
                eq = equity[name].dropna()
                if len(eq):
                    eq = downsample(eq / balance - 1.0, MAX_POINTS) * 100.0
                    self.figure.add_scatter(x=eq.index, y=eq.to_numpy(), name=str(name), mode="lines")
        verdict: Verdict | None = self.result.verdict if self.result is not None else None
        period = self.result.period if self.result is not None else ""
        if verdict is None:
            try:
                verdict, period = judge(equity.dropna(), balance, n_boot=self.n_boot)
            except ValueError as e:
                self.verdict.value = message(f"no verdict yet: {e}", "info")
        if verdict is not None:
            self.verdict.value = verdict_block(verdict, period)
        self.table.value = self._table(metrics, verdict, states)
        running = [n for n, s in states.items() if s not in {f.value for f in FINAL_STATES}]
        variants = [n for n in running if n != LIVE_ARM]
        # beside a session (arm 'live'): done once the variants have ended and its equity reached their last bar
        self.done = not variants and (LIVE_ARM not in running or self._live_caught_up(equity))
        self._say(f"{len(states)} variants" + (f", {len(running)} running" if running else ", all ended"))
        if self.done:
            self.ticker.stop()

    @staticmethod
    def _live_caught_up(equity: pd.DataFrame) -> bool:
        live, ran = equity[LIVE_ARM].dropna(), equity.drop(columns=LIVE_ARM).dropna(how="all")
        return not len(ran) or (len(live) > 0 and live.index[-1] >= ran.index[-1])

    @staticmethod
    def _table(metrics: dict[str, dict[str, Any]], verdict: Verdict | None, states: dict[str, str]) -> str:
        names = list(metrics)
        head = "".join(f"<th style='padding:2px 10px'>{html.escape(n)}<br><small style='color:#777'>"
                       f"{html.escape(states.get(n, ''))}</small></th>" for n in names)
        body = []
        for key in SHOWN:
            cells = "".join(f"<td style='padding:1px 10px;text-align:right'>"
                            f"{format_metric(key, metrics[n][key]) if key in metrics[n] else 'n/a'}</td>"
                            for n in names)
            body.append(f"<tr><td style='color:#555;padding:1px 10px'>{html.escape(METRIC_LABELS[key][0])}</td>"
                        f"{cells}</tr>")
        for key, label, spec in STATS if verdict is not None else ():
            assert verdict is not None
            vals = [verdict.stats.get(n, {}).get(key, math.nan) for n in names]
            cells = "".join(f"<td style='padding:1px 10px;text-align:right'>"
                            f"{'∞' if v == math.inf else spec.format(v) if v == v else 'n/a'}</td>" for v in vals)
            body.append(f"<tr><td style='color:#555;padding:1px 10px'>{label}</td>{cells}</tr>")
        return (f"<table class='wb-ab-table' style='border-collapse:collapse;font-size:90%'><tr><th></th>{head}</tr>"
                f"{''.join(body)}</table>")
