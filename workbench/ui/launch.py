"""What the wizard's "Create" does with a valid config (the view part; the work is the engine's).

* backtest: loads bars (a progress bar per symbol), runs :func:`run_backtest`, saves it to the store
  and shows the metrics and figures;
* paper: starts a :class:`Session` on this kernel's loop (kept in :data:`LOCAL_SESSIONS` so the
  other views control it by method) or records it as "requested" for ``workbench host``;
* live: always requested from ``workbench host`` (the host owns exchange keys and arming).
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from workbench.config import SessionConfig
from workbench.store import Store
from workbench.ui.charts import figure_widget
from workbench.ui.common import has_loop, message, open_store

log = logging.getLogger(__name__)
#: sessions started in this kernel, by id (the sessions view and control panel use their methods)
LOCAL_SESSIONS: dict[str, Any] = {}


@dataclass
class Launched:
    """The outcome of a Create: the session id, where it runs, and the local Session or backtest result."""

    session_id: str
    where: str  # "kernel", "host" or "backtest"
    session: Any = None
    result: Any = None


def backtest_result_widget(result: Any, session_id: str) -> W.Widget:
    """Metrics table plus equity and price figures of a finished backtest."""
    summary = W.HTML(f"<pre class='wb-backtest-summary' style='font-size:90%'>{html.escape(result.summary())}</pre>")
    eq = figure_widget(result.equity_figure())
    price = figure_widget(result.price_figure())
    box = W.VBox([W.HTML(f"<b>Backtest <code>{html.escape(session_id)}</code> saved</b>"), summary,
                  W.VBox([eq], layout={"width": "100%"}), W.VBox([price], layout={"width": "100%"})])
    box.add_class("wb-backtest-result")
    return box


HEADLINE = ("total_return", "pnl", "sharpe_ratio", "max_drawdown", "win_rate", "trade_count")


def headline_html(metrics: dict[str, Any]) -> str:
    """A backtest's verdict in one line: return, P&L, Sharpe, max drawdown, win rate, trades."""
    from workbench.metrics import METRIC_LABELS, format_metric

    cells = [f"<span style='margin-right:14px;white-space:nowrap'><span style='color:#555'>"
             f"{html.escape(METRIC_LABELS[k][0])}</span> <b>{html.escape(format_metric(k, metrics[k]))}</b></span>"
             for k in HEADLINE if k in metrics]
    return f"<div class='wb-headline' style='margin:4px 0;font-size:105%'>{''.join(cells)}</div>" if cells else ""


def run_backtest_with_progress(config: SessionConfig, store: Store, progress: W.IntProgress | None = None) -> Launched:
    """Run and save a backtest, advancing ``progress`` (symbols loaded, run, saved)."""
    from workbench.backtest import run_backtest
    from workbench.data import load_bars

    steps = len(config.symbols) + 2
    if progress is not None:
        progress.max, progress.value, progress.bar_style = steps, 0, "info"
    frames = {}
    for sym in config.symbols:
        if progress is not None:
            progress.description = f"bars {sym}"
        frames[sym] = load_bars(config.data, sym, config.start, config.end)
        if progress is not None:
            progress.value += 1
    if progress is not None:
        progress.description = "backtest"
    result = run_backtest(config, frames)
    if progress is not None:
        progress.value += 1
        progress.description = "saving"
    sid = store.save_backtest(config, result)
    if progress is not None:
        progress.value, progress.description, progress.bar_style = steps, "done", "success"
    return Launched(sid, "backtest", result=result)


def start_session(config: SessionConfig, store: Store, run_in: str, *, arming: dict[str, Any] | None = None,
                  **session_kwargs: Any) -> Launched:
    """Start a paper session in this kernel or request it (paper or live) from ``workbench host``;
    a live request carries the user's ``arming`` (see :func:`workbench.engine.host.request_session`)."""
    if run_in not in ("kernel", "host"):
        raise ValueError(f"run_in must be 'kernel' or 'host', got {run_in!r}")
    if config.kind.value == "backtest":
        raise ValueError("a backtest is run, not started: use run_backtest_with_progress")
    if run_in == "host" or config.kind.value == "live":
        from workbench.engine.host import request_session

        return Launched(request_session(store, config, arming=arming), "host")
    if not has_loop():
        raise RuntimeError("no running event loop to start the session on; run it from Jupyter, "
                           "or choose 'Request from workbench host'")
    from workbench.engine.live import open_session  # paper on live data (data.live) gets the live feed

    session = open_session(config, store, **session_kwargs).start()
    LOCAL_SESSIONS[session.id] = session
    return Launched(session.id, "kernel", session=session)


class Launcher:
    """The wizard's Create callback: runs/starts the session and shows progress and outcome in ``box``."""

    def __init__(self, store: Store | str | None, box: W.Box, *, session_kwargs: dict[str, Any] | None = None):
        self._store, self.box = store, box
        self.session_kwargs = dict(session_kwargs or {})
        self.launched: list[Launched] = []
        self.listeners: list[Any] = []  # called with each Launched (e.g. the sessions view selects it)
        #: the detail page's URL with ``{id}`` (e.g. pages.DETAIL_URL): Create ends with a link to it
        self.detail_url: str | None = None

    @property
    def store(self) -> Store:
        """The store (opened on first use, so an unused wizard touches no database)."""
        if not isinstance(self._store, Store):
            self._store = open_store(self._store)
        return self._store

    def _link(self, session_id: str, watch: bool = False) -> str:
        if not self.detail_url:
            return ""
        url = html.escape(self.detail_url.format(id=session_id))
        what = "watch it live on its detail page" if watch else "open its detail page"
        return (f"<a class='wb-open-detail' href='{url}' target='_blank' style='font-weight:600'>"
                f"→ {what} ({html.escape(session_id)}) ↗</a>")

    def __call__(self, config: SessionConfig, options: dict[str, Any]) -> Launched:
        note = W.HTML()
        note.add_class("wb-create-result")
        if config.kind.value == "backtest":
            bar = W.IntProgress(value=0, min=0, max=1, description="starting")
            bar.add_class("wb-progress")
            self.box.children = [bar, note]
            try:
                out = run_backtest_with_progress(config, self.store, bar)
            except Exception as e:
                bar.bar_style = "danger"
                note.value = message(f"backtest failed: {e}", "error")
                raise
            self.box.children = [bar, note, backtest_result_widget(out.result, out.session_id)]
            note.value = (message(f"backtest {out.session_id} done", "ok") + self._link(out.session_id)
                          + headline_html(self.store.get_session(out.session_id)["metrics"] or {}))
        else:
            out = start_session(config, self.store, options.get("run_in", "kernel"), arming=options.get("arming"),
                                **self.session_kwargs)
            where = "started in this kernel" if out.where == "kernel" else "requested from workbench host"
            note.value = message(f"{config.kind.value} session {out.session_id} {where}", "ok") + self._link(
                out.session_id, watch=True)
            self.box.children = [note]
        self.launched.append(out)
        for fn in self.listeners:
            fn(out)
        return out
