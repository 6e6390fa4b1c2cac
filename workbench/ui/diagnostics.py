"""The Diagnostics tab of the detail view (and the diagnostics page): five sub-tabs over
:mod:`workbench.diagnostics`, each built the first time it is shown (nothing is read before the tab is
opened, so the detail view stays fast) and redrawn by its Refresh button.

Stable CSS classes for browser tests: ``wb-diagnostics`` (the widget), ``wb-diag-tabs``; the log
``wb-diag-log`` (filters ``wb-diag-log-kind``, ``wb-diag-log-level``, ``wb-diag-log-text``,
``wb-diag-log-since``, ``wb-diag-log-until``, ``wb-diag-log-apply``; table ``wb-diag-log-table``,
exports ``wb-diag-log-export`` with links ``a.wb-diag-log-csv`` / ``a.wb-diag-log-json``); order flow
``wb-diag-orders`` (``wb-diag-orders-table``, ``wb-diag-latency-table``); profiler ``wb-diag-profile``;
market data ``wb-diag-data``; why no trades ``wb-diag-why`` (``wb-diag-why-summary``,
``wb-diag-why-blocked``, ``wb-diag-why-table``); each sub-tab's ``wb-diag-refresh``.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.diagnostics import log as dlog
from workbench.diagnostics import orderflow, profiler, why
from workbench.store import Store
from workbench.ui.common import button, fmt_num, fmt_time, frame_table, lazy_tab, message, open_store

TABS = ("Log", "Order flow", "Profiler", "Market data", "Why no trades")
LOG_ROWS = 300  # newest log lines shown (the export has them all)
Cols = list[tuple[str, str, Callable[[Any], str]]]  # frame_table's columns: (key, header, formatter)


def _secs(v: Any) -> str:
    if isinstance(v, pd.Timedelta):
        v = v.total_seconds()
    return f"{float(v):.3f} s"


def _download(text: str, name: str, mime: str, css: str, label: str) -> str:
    data = base64.b64encode(text.encode()).decode()
    return (f"<a class='{css}' download='{html.escape(name)}' href='data:{mime};base64,{data}' "
            f"style='margin-right:12px'>{html.escape(label)}</a>")


class DiagnosticsView:
    """The five diagnostics of one session; display ``view.widget``. ``lazy``: build a sub-tab when first
    shown (:meth:`show`, or :meth:`show_when` a parent tab selects this one); else the first one now."""

    def __init__(self, session_id: str, store: Store | str | None = None, *, lazy: bool = True):
        self.store = open_store(store)
        self.session_id = session_id
        self.tabs = W.Tab([W.VBox() for _ in TABS])
        for i, title in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.tabs.add_class("wb-diag-tabs")
        self.tabs.observe(lambda ch: self.show(), names="selected_index")
        self.widget = W.VBox([self.tabs])
        self.widget.add_class("wb-diagnostics")
        self.built: dict[int, Callable[[], None]] = {}  # sub-tab -> its redraw
        self.log: pd.DataFrame | None = None
        if not lazy:
            self.show()

    # ---- building ------------------------------------------------------------------------------
    def show_when(self, parent: W.Tab, index: int) -> None:
        """Build the selected sub-tab when ``parent`` selects its tab ``index`` (this view)."""
        parent.observe(lambda ch: self.show() if ch["new"] == index else None, names="selected_index")

    def show(self) -> None:
        """Build the selected sub-tab if it is not built yet."""
        i = self.tabs.selected_index or 0
        if i in self.built:
            return
        builder = (self._log_tab, self._orders_tab, self._profile_tab, self._data_tab, self._why_tab)[i]
        body = W.HTML()
        box = self.tabs.children[i]

        def redraw() -> None:
            try:
                body.value = builder()
            except Exception as e:  # a diagnostic that fails says so, the others still work
                body.value = message(f"{TABS[i]} failed: {type(e).__name__}: {e}", "error")

        refresh = button("Refresh", "wb-diag-refresh", icon="refresh", width="110px")
        refresh.on_click(lambda _b: redraw())
        head: list[W.Widget] = [self._log_filters(redraw)] if i == 0 else []
        box.children = [*head, refresh, body]
        box.add_class(("wb-diag-log", "wb-diag-orders", "wb-diag-profile", "wb-diag-data", "wb-diag-why")[i])
        self.built[i] = redraw
        redraw()

    def refresh(self) -> None:
        """Redraw every sub-tab built so far."""
        for redraw in self.built.values():
            redraw()

    # ---- log -----------------------------------------------------------------------------------
    def _log_filters(self, redraw: Callable[[], None]) -> W.Widget:
        kinds = sorted(set(self.store.events(self.session_id)["kind"]))
        self.f_kind = W.Dropdown(options=["(all)", *kinds], value="(all)", description="Kind",
                                 layout={"width": "240px"})
        self.f_level = W.Dropdown(options=["(all)", *dlog.LEVELS], value="(all)", description="Level",
                                  layout={"width": "190px"})
        self.f_text = W.Text(placeholder="text", layout={"width": "160px"})
        self.f_since = W.Text(placeholder="since (ISO time)", layout={"width": "170px"})
        self.f_until = W.Text(placeholder="until (ISO time)", layout={"width": "170px"})
        apply = button("Apply", "wb-diag-log-apply", width="80px")
        apply.on_click(lambda _b: redraw())
        for w, css in ((self.f_kind, "wb-diag-log-kind"), (self.f_level, "wb-diag-log-level"),
                       (self.f_text, "wb-diag-log-text"), (self.f_since, "wb-diag-log-since"),
                       (self.f_until, "wb-diag-log-until")):
            w.add_class(css)
        return W.HBox([self.f_kind, self.f_level, self.f_text, self.f_since, self.f_until, apply],
                      layout={"flex_flow": "row wrap"})

    def _log_tab(self) -> str:
        def opt(v: str) -> str | None:
            return None if v in ("", "(all)") else v.strip()

        events = self.store.events(self.session_id)
        log = dlog.filter_log(events, kind=opt(self.f_kind.value), level=opt(self.f_level.value),
                              text=opt(self.f_text.value), since=opt(self.f_since.value), until=opt(self.f_until.value))
        self.log = log
        kinds = ["(all)", *sorted(set(events["kind"]))]
        if list(self.f_kind.options) != kinds:  # kinds that came since: keep the choice
            chosen = self.f_kind.value
            self.f_kind.options = kinds
            self.f_kind.value = chosen if chosen in kinds else "(all)"
        exports = ("<div class='wb-diag-log-export' style='margin:4px 0'>"
                   f"{len(log)} events · export: "
                   + _download(dlog.export(log, "csv"), f"{self.session_id}-log.csv", "text/csv", "wb-diag-log-csv",
                               "CSV")
                   + _download(dlog.export(log, "json"), f"{self.session_id}-log.json", "application/json",
                               "wb-diag-log-json", "JSON") + "</div>")
        cols: Cols = [("time", "time", fmt_time), ("level", "level", str), ("kind", "kind", str),
                      ("actor", "actor", str), ("message", "message", str)]
        return exports + frame_table(log.iloc[::-1].head(LOG_ROWS), cols, "wb-diag-log-table", empty="no events match")

    # ---- order flow ------------------------------------------------------------------------------
    def _orders_tab(self) -> str:
        flow = orderflow.session_order_flow(self.store, self.session_id)
        cols: Cols = [("client_id", "order", str), ("side", "side", str), ("quantity", "qty", fmt_num),
                ("status", "status", str), ("rule", "blocked by", str),
                *[(s, s.replace("_", " "), fmt_time) for s in orderflow.STEPS],
                *[(k, k.replace("_", " "), _secs) for k in orderflow.LATENCIES]]
        summary = orderflow.latency_summary(flow)
        lat: Cols = [("latency", "latency", str), ("count", "orders", str), ("median_s", "median s", fmt_num),
               ("p95_s", "p95 s", fmt_num), ("max_s", "max s", fmt_num)]
        return ("<b>Latencies</b>" + frame_table(summary, lat, "wb-diag-latency-table")
                + f"<b>Orders</b> ({len(flow)}, newest first)"
                + frame_table(flow.iloc[::-1].head(200), cols, "wb-diag-orders-table", empty="no orders yet"))

    # ---- profiler ----------------------------------------------------------------------------------
    def _profile_tab(self) -> str:
        prof = profiler.session_profile(self.store, self.session_id)
        if prof is None:
            return message("no profile: the runner records one in its runner state (paper and live sessions, "
                           "from their first checkpoint); backtests have none")
        measures: Cols = [("measure", "measure", str), ("count", "count", str), ("mean_s", "mean s", fmt_num),
                          ("max_s", "max s", fmt_num)]
        buckets: Cols = [("le", "≤ s", fmt_num), ("count", "count", str)]
        summary = frame_table(prof.summary(), measures, "wb-diag-profile-summary")
        hists = "".join(
            f"<div style='display:inline-block;vertical-align:top;margin-right:18px'><b>{html.escape(k)}</b>"
            + frame_table(h.frame(), buckets, f"wb-diag-hist-{k}")
            + "</div>" for k, h in prof.hist.items())
        samples = prof.samples_frame().iloc[::-1].head(30)
        scols: Cols = [("time", "time", fmt_time), ("process_cpu_pct", "host process CPU %", lambda v: f"{v:.1f}"),
                 ("rss_mb", "host RSS MB", lambda v: f"{v:.0f}"), ("session_cpu_pct", "session CPU %",
                                                                    lambda v: f"{v:.1f}"),
                 ("lag_s", "loop lag s", lambda v: f"{v:.4f}")]
        return ("<b>Summary</b>" + summary + "<b>Histograms</b><br>" + hists
                + "<br><b>CPU and memory</b> (newest first)"
                + frame_table(samples, scols, "wb-diag-samples-table", empty="no samples yet (every 5 s)"))

    # ---- market data -------------------------------------------------------------------------------
    def _data_tab(self) -> str:
        from workbench.data import load_bars
        from workbench.diagnostics.validator import validate

        row = self.store.get_session(self.session_id)
        config = row["config"]
        if config is None:
            return message(f"the session's config is invalid: {row.get('config_error')}", "error")
        parts = []
        for symbol in config.symbols:
            bars = load_bars(config.data, symbol, config.start, config.end)
            rep = validate(bars, config.data.timeframe)
            verdict = "clean" if rep.clean else ", ".join(f"{k.replace('_', ' ')} {v}"
                                                          for k, v in rep.summary.items() if v)
            parts.append(f"<div class='wb-diag-data-symbol'><b>{html.escape(symbol)}</b>: {rep.bars} bars "
                         f"({html.escape(config.data.source)}, {html.escape(config.data.timeframe)}): "
                         f"{html.escape(verdict)}</div>")
            for name, frame in (("gaps", rep.gaps), ("duplicates", rep.duplicates), ("outliers", rep.outliers),
                                ("stale periods", rep.stale)):
                if len(frame):
                    cols: Cols = [(c, c, fmt_time if c in ("time", "after", "before", "start", "end") else str)
                                  for c in frame.columns]
                    parts.append(f"<i>{name}</i>" + frame_table(frame.head(50), cols, "wb-diag-data-table"))
        if str(getattr(config.kind, "value", config.kind)) == "live" or config.data.source == "ccxt":
            parts.append(message("live feeds: the REST vs websocket cross-check runs where the feed runs "
                                 "(LiveFeed.cross_check; see docs/diagnostics.md)"))
        return "".join(parts)

    # ---- why no trades ---------------------------------------------------------------------------------
    def _why_tab(self) -> str:
        counts = why.session_counts(self.store, self.session_id)
        if counts is None:
            return message("no signal counters: the runner keeps them in its runner state (paper and live "
                           "sessions); backtests have none")
        summary = why.why_summary(counts)
        blocked = [{"rule": k, "count": v} for k, v in summary["blocked"].items()]
        rule_cols: Cols = [("rule", "rule", str), ("count", "signals blocked", str)]
        frame = why.why_frame(counts).iloc[::-1].head(72).reset_index()
        cols: Cols = [("time", "hour", fmt_time), *[(c, c.removeprefix(why.BLOCKED), str) for c in frame.columns[1:]]]
        return (f"<div class='wb-diag-why-summary' style='margin:4px 0'><b>{summary['signals']}</b> signals · "
                f"<b>{summary['orders']}</b> orders placed · <b>{summary['fills']}</b> fills<br>"
                f"{html.escape(why.explain(summary))}</div>"
                + "<b>Blocked signals by rule</b>"
                + frame_table(blocked, rule_cols, "wb-diag-why-blocked", empty="none blocked")
                + "<b>Per hour</b> (newest first)" + frame_table(frame, cols, "wb-diag-why-table"))

    def close(self) -> None:
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def attach_diagnostics(tabs: W.Tab, view: Any) -> W.VBox:
    """Add the "Diagnostics" tab to a detail view's ``tabs``; the :class:`DiagnosticsView` (``view.diagnostics``)
    is made when the tab is first selected."""
    def make() -> W.Widget:
        view.diagnostics = DiagnosticsView(view.session_id, view.store, lazy=False)
        return view.diagnostics.widget

    view.diagnostics = None
    return lazy_tab(tabs, "Diagnostics", "wb-diagnostics-tab", make, "diagnostics")


def diagnostics(session_id: str, store: Store | str | None = None) -> DiagnosticsView:
    """The diagnostics of ``session_id`` (displays itself in Jupyter; the first sub-tab is built now)."""
    return DiagnosticsView(session_id, store, lazy=False)


__all__ = ["DiagnosticsView", "TABS", "attach_diagnostics", "diagnostics"]
