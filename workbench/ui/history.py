"""Session history browser: the guide's table (date, strategy, kind, P&L, return, trades) with
filters, side-by-side comparison of selected sessions (metrics + overlaid equity), and templates:
save a session's config as a template, start the wizard from a template with an optional
built-in risk profile (:mod:`workbench.profiles`)."""
from __future__ import annotations

import html
from datetime import datetime, time, timezone
from typing import Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from workbench.metrics import METRIC_LABELS, format_metric
from workbench.metrics.regime import REGIMES
from workbench.profiles import PROFILES, apply_profile
from workbench.store import Store
from workbench.strategies import registry
from workbench.ui.charts import figure_widget
from workbench.ui.clone import LineagePanel, lineage_note
from workbench.ui.common import RISK_STATE_SHOWN, button, fmt_money, fmt_percent, message, open_store, state_badge
from workbench.ui.console import risk_checkpoint

COLUMNS = (("", "34px"), ("Date", "140px"), ("Strategy", "150px"), ("Type", "80px"), ("P&L", "90px"),
           ("Return", "80px"), ("Trades", "60px"), ("State", "150px"), ("ID", "120px"))
MAX_ROWS = 200
ANY = ""  # the value of "All" / "(none)" / "(default config)": a dropdown whose value is None shows blank


def _choice(value: str) -> str | None:
    """A dropdown's value as a filter/choice: None for :data:`ANY`."""
    return value or None


def _regime_note(regime: Any) -> str:
    """The market regime of a session's bars, a line under its id in the table (nothing until it is known)."""
    if not isinstance(regime, str) or not regime:
        return ""
    return f"<br><small class='wb-history-regime-label' style='color:#777'>{html.escape(regime)} market</small>"


def _cell(value: str, width: str) -> W.HTML:
    return W.HTML(value, layout={"width": width})


def _day(d: Any, end: bool = False) -> datetime | None:
    if d is None:
        return None
    t = datetime.combine(d, time(), tzinfo=timezone.utc)
    return t + pd.Timedelta(days=1) if end else t


class HistoryView:
    """History browser; display ``view.widget``. ``checks`` maps session id -> its compare checkbox."""

    def __init__(self, store: Store | str | None = None, *, run_in: str = "kernel"):
        self.store = open_store(store)
        self.run_in = run_in
        self.frame = pd.DataFrame()
        self.checks: dict[str, W.Checkbox] = {}
        self.wizard: Any = None
        self.kind = W.Dropdown(options=[("All", ANY), ("Backtest", "backtest"), ("Paper", "paper"), ("Live", "live")],
                               value=ANY, description="Type", layout={"width": "200px"})
        self.strategy = W.Dropdown(options=[("All", ANY), *[(n, n) for n in registry.names()]],
                                   value=ANY, description="Strategy", layout={"width": "260px"})
        self.since = W.DatePicker(description="From", layout={"width": "240px"})
        self.until = W.DatePicker(description="To", layout={"width": "240px"})
        self.regime = W.Dropdown(options=[("All", ANY), *[(r.title(), r) for r in REGIMES]], value=ANY,
                                 description="Market", layout={"width": "240px"})  # the regime of its bars
        for w, css in ((self.kind, "wb-history-kind"), (self.strategy, "wb-history-strategy"),
                       (self.since, "wb-history-since"), (self.until, "wb-history-until"),
                       (self.regime, "wb-history-regime")):
            w.add_class(css)
            w.observe(lambda _: self.refresh(), names="value")
        self.refresh_button = button("Refresh", "wb-btn-history-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.body = W.VBox()
        head = W.HBox([_cell(f"<b>{h}</b>", w) for h, w in COLUMNS], layout={"border_bottom": "2px solid #ccc"})
        head.add_class("wb-table-head")
        self.table = W.VBox([head, self.body], layout={"max_height": "420px", "overflow": "auto"})
        self.table.add_class("wb-history-table")
        self.table.add_class("wb-scroll-x")
        self.compare_button = button("Compare selected", "wb-history-compare", icon="columns")
        self.compare_button.on_click(lambda _: self.compare())
        self.compare_box = W.VBox()
        self.compare_box.add_class("wb-compare")
        self.clone_panel = LineagePanel(self.store, run_in=run_in, pick=lambda: next(iter(self.selected), None))
        self.message = W.HTML()
        self.message.add_class("wb-history-message")
        self._build_templates()
        sec = lambda t: W.HTML(f"<b style='display:block;margin-top:8px'>{t}</b>")  # noqa: E731
        self.widget = W.VBox([
            W.HTML("<h3 style='margin:4px 0'>Session History</h3>"),
            W.HBox([self.kind, self.strategy, self.regime, self.since, self.until, self.refresh_button],
                   layout={"flex_flow": "row wrap"}),
            self.table, W.HBox([self.compare_button]), self.clone_panel.widget, self.message, self.compare_box,
            sec("Templates"), self.template_box, self.wizard_box,
        ], layout={"border": "1px solid #ddd", "padding": "8px"})
        self.widget.add_class("wb-history")
        self.refresh()

    # ---- table ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the history with the current filters."""
        since, until = _day(self.since.value), _day(self.until.value, end=True)
        if since is not None and until is not None and until <= since:
            self._show("the 'To' date is before the 'From' date; swap them")
            return
        try:
            frame = self.store.history(kind=_choice(self.kind.value), strategy=_choice(self.strategy.value),
                                       since=since, until=until, regime=_choice(self.regime.value))
        except Exception as e:
            self._show(f"cannot read the history: {e}")
            return
        self.frame = frame.head(MAX_ROWS)
        old = {sid: c.value for sid, c in self.checks.items()}
        self.checks, rows = {}, []
        for r in self.frame.to_dict("records"):
            cb = W.Checkbox(value=old.get(r["id"], False), indent=False, layout={"width": "34px"})
            cb.add_class("wb-history-check")
            self.checks[r["id"]] = cb
            trades = "n/a" if pd.isna(r["trades"]) else str(int(r["trades"]))
            risk = (str(risk_checkpoint(self.store, r["id"]).get("state") or "")
                    if r["state"] in RISK_STATE_SHOWN else "")
            row = W.HBox([cb, *(_cell(v, w) for v, (_, w) in zip(
                [pd.Timestamp(r["date"]).strftime("%Y-%m-%d %H:%M"), html.escape(r["name"] or r["strategy"]),
                 r["kind"].title(), fmt_money(None if pd.isna(r["pnl"]) else float(r["pnl"])),
                 fmt_percent(None if pd.isna(r["return"]) else float(r["return"])), trades,
                 state_badge(r["state"], risk_state=risk),
                 f"<code>{html.escape(r['id'])}</code>" + lineage_note(r) + _regime_note(r.get("regime"))],
                COLUMNS[1:]))],
                     layout={"align_items": "center"})
            row.add_class("wb-history-row")
            rows.append(row)
        self.body.children = rows or [W.HTML("<i style='color:#777;padding:4px'>no sessions match these filters</i>")]
        self._show(f"{len(frame)} session(s)" + (f", showing the newest {MAX_ROWS}" if len(frame) > MAX_ROWS else ""),
                   "info")

    @property
    def selected(self) -> list[str]:
        """Ids of the ticked sessions, in table order."""
        return [sid for sid, c in self.checks.items() if c.value]

    # ---- compare ------------------------------------------------------------------------------
    def compare(self, ids: list[str] | None = None) -> None:
        """Metrics side by side and overlaid equity (as return from the initial balance) of ``ids``."""
        from workbench.backtest.figures import downsample  # here: workbench.backtest loads the backtest engine

        ids = list(ids if ids is not None else self.selected)
        if len(ids) < 2:
            self._show("tick two or more sessions to compare")
            return
        rows, fig = [], figure_widget()
        heads = []
        for sid in ids:
            s = self.store.get_session(sid)
            heads.append(f"{s['name'] or s['strategy']} ({s['kind']}{', ' + s['regime'] if s.get('regime') else ''})"
                         f" {sid}")
            rows.append(s["metrics"] or {})
            eq = self.store.equity(sid)["equity"]
            if len(eq):
                eq = downsample(eq / float(s["initial_balance"]) - 1.0, 2000) * 100.0
                fig.add_trace(go.Scatter(x=eq.index, y=eq.to_numpy(), name=f"{s['strategy']} {sid}"))
        fig.update_layout(title="Equity (return %, overlaid)", height=340, margin=dict(l=50, r=20, t=40, b=30),
                          legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"))  # the plot keeps the width
        fig.update_yaxes(ticksuffix="%")
        keys = [k for k in METRIC_LABELS if any(k in m for m in rows)]
        head = "".join(f"<th style='padding:2px 10px'>{html.escape(h)}</th>" for h in heads)
        body = "".join(
            f"<tr><td style='padding:1px 10px;color:#555'>{html.escape(METRIC_LABELS[k][0])}</td>" +
            "".join(f"<td style='padding:1px 10px;text-align:right'>{format_metric(k, m[k]) if k in m else 'n/a'}</td>"
                    for m in rows) + "</tr>" for k in keys)
        pending = [sid for sid, m in zip(ids, rows) if not m]
        note = (f"<div style='color:#777;font-style:italic;margin-top:4px'>n/a: {', '.join(pending)} "
                "has no stored metrics yet (they are stored when a session ends)</div>" if pending else "")
        from workbench.ui.ab import verdict_html  # A/B verdict when they ran on the same bars (loads scipy)

        note += verdict_html(self.store, dict(zip(ids, ids)), n_boot=1000) if keys else ""
        table = W.HTML(f"<table class='wb-compare-table' style='border-collapse:collapse;font-size:90%'>"
                       f"<tr><th></th>{head}</tr>{body}</table>{note}" if keys else
                       "<i>no metrics stored for these sessions yet (they appear when a session ends)</i>")
        self.compare_box.children = [table, fig]
        self.compare_figure, self.compare_metrics = fig, dict(zip(ids, rows))
        self._show(f"comparing {len(ids)} sessions", "info")

    # ---- templates ------------------------------------------------------------------------------
    def _build_templates(self) -> None:
        self.template_name = W.Text(description="Name", placeholder="template name", layout={"width": "260px"})
        self.template_name.add_class("wb-template-name")
        self.save_button = button("Save ticked session's config as template", "wb-btn-save-template",
                                  width="300px")
        self.save_button.on_click(lambda _: self.save_template())
        self.template = W.Dropdown(description="Template", layout={"width": "300px"})
        self.template.add_class("wb-template")
        self.profile = W.Dropdown(options=[("(none)", ANY), *[(p.title(), p) for p in PROFILES]],
                                  value=ANY, description="Risk profile", layout={"width": "260px"})
        self.profile.add_class("wb-profile")
        self.start_button = button("Start wizard", "wb-btn-start-template", icon="magic")
        self.start_button.on_click(lambda _: self.start_wizard())
        self.template_box = W.VBox([W.HBox([self.template_name, self.save_button]),
                                    W.HBox([self.template, self.profile, self.start_button])])
        self.wizard_box = W.VBox()
        self._load_templates()

    def _load_templates(self) -> None:
        names = list(self.store.list_templates()["name"])
        keep = self.template.value if self.template.value in names else ANY
        self.template.options = [("(default config)", ANY), *[(n, n) for n in names]]
        self.template.value = keep

    def save_template(self, name: str | None = None, session_id: str | None = None) -> bool:
        """Save the config of ``session_id`` (default: the first ticked) as template ``name``."""
        name = (name if name is not None else self.template_name.value).strip()
        sid = session_id or (self.selected[0] if self.selected else None)
        if not name:
            self._show("give the template a name")
            return False
        if sid is None:
            self._show("tick the session whose config to save")
            return False
        cfg = self.store.get_session(sid)["config"]
        if cfg is None:
            self._show(f"session {sid}'s config no longer validates; it cannot be a template")
            return False
        self.store.save_template(name, cfg, description=f"from session {sid}")
        self._load_templates()
        self.template.value = name
        self._show(f"template {name!r} saved from session {sid}", "ok")
        return True

    def start_wizard(self) -> Any:
        """Open the wizard prefilled from the chosen template (or the default config) and risk profile."""
        from workbench.config import make_config
        from workbench.ui.wizard import Wizard

        try:
            cfg = self.store.get_template(self.template.value) if self.template.value else make_config()
            if self.profile.value:
                cfg = apply_profile(cfg, self.profile.value)
        except Exception as e:
            self._show(f"cannot start from this template: {e}")
            return None
        if self.wizard is None:
            self.wizard = Wizard(cfg, store=self.store, run_in=self.run_in)
        else:
            self.wizard.load_config(cfg)
            self.wizard.goto(0)
        self.wizard_box.children = [self.wizard.widget]
        self._show("wizard prefilled" + (f" from template {self.template.value!r}" if self.template.value else "")
                   + (f" with the {self.profile.value} risk profile" if self.profile.value else ""), "ok")
        return self.wizard

    def _show(self, text: str, kind: str = "error") -> None:
        self.message.value = message(text, kind)

    def close(self) -> None:
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def history(store: Store | str | None = None, **kwargs: Any) -> HistoryView:
    """The session history browser (displays itself in Jupyter)."""
    return HistoryView(store, **kwargs)
