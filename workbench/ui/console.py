"""The operator's console header shown on every page: account equity, day P&L, open exposure, sessions
by state (and by the risk engine's trading state) and the active alerts, read from the store.

:func:`console_summary` reads the numbers (one definition for every page and for tests),
:func:`header_html` lays them out, :class:`ConsoleHeader` refreshes them on the kernel's loop.
:data:`PAGE_CSS` is the pages' stylesheet (colours, a phone-sized layout), shipped with the header.

An alert is an event of kind :data:`ALERT_KINDS` (an error, a circuit-breaker trip, an ``alert``
recorded by the ops rules) of an active session, at most ``recent`` old at ``clock()``; a trip stays
an alert while that session's breaker is still tripped (reducing/halted), however old.
"""
from __future__ import annotations

import asyncio
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.engine.exposure import Clock, active_sessions, stored_risk_state, utc_now
from workbench.secrets import redact
from workbench.store import Store
from workbench.ui.common import (
    RISK_STATE_SHOWN,
    Ticker,
    button,
    fmt_money,
    fmt_plain_money,
    has_loop,
    message,
    open_store,
    risk_badge,
    state_badge,
)
from workbench.ui.launch import LOCAL_SESSIONS

#: "alert" is workbench.ops.alerts.ALERT_KIND (not imported: a dashboard kernel loads no Apprise; a test checks it)
ALERT_KINDS = ("error", "circuit_breaker_tripped", "alert")
RECENT = timedelta(minutes=30)
TEST_RULE = "test"  # the rule of workbench.ops.alerts.send_test_alert's alert (a test checks it)

PAGE_CSS = """<style>
.wb-page { max-width: 100%; box-sizing: border-box; }
.wb-page .wb-state-badge, .wb-page .wb-risk-state { white-space: nowrap; }
.wb-console-header { display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: baseline; padding: 6px 10px;
  margin: 0 0 8px 0; background: #f5f7fa; border: 1px solid #dde3ea; border-radius: 4px; line-height: 1.5; }
.wb-console-header .wb-kpi b { font-size: 110%; }
.wb-console-header .wb-alerts { flex-basis: 100%; }
.wb-scroll-x { overflow-x: auto !important; max-width: 100%; }
.wb-scroll-x > .widget-vbox, .wb-scroll-x > .widget-hbox, .wb-scroll-x .wb-session-row,
.wb-scroll-x .wb-history-row { min-width: max-content; }
.wb-scroll-x .widget-hbox > * { flex-shrink: 0; }
.wb-page .wb-trades, .wb-page .wb-events, .wb-page .wb-pnl-limits, .wb-page .wb-compare .widget-html,
.wb-page .wb-risk .widget-html { overflow-x: auto; max-width: 100%; }
.wb-page .wb-trades th, .wb-page .wb-trades td, .wb-page .wb-events th, .wb-page .wb-pnl-limits th,
.wb-page .wb-pnl-limits td, .wb-page .wb-risk th, .wb-page .wb-risk td { white-space: nowrap; }
@media (max-width: 700px) {
  body, #rendered_cells, .jp-OutputArea-output, .jp-Cell, .jp-OutputArea-child { min-width: 0 !important;
    max-width: 100vw; }
  .wb-page .widget-hbox:not(.wb-session-row):not(.wb-history-row):not(.wb-table-head) { flex-wrap: wrap; }
  .wb-page .widget-box > .lm-Widget { max-width: calc(100% - 4px); }  /* 4px: a widget's margins */
  .wb-page .widget-inline-hbox input, .wb-page .widget-inline-hbox select { min-width: 0; flex: 1 1 60px; }
  .wb-page .widget-inline-hbox > .widget-label { max-width: 45%; min-width: 0; flex-shrink: 1; overflow: hidden;
    text-overflow: ellipsis; }
  .wb-page .widget-tab, .wb-page .widget-box, .wb-page .js-plotly-plot { max-width: 100%; }
  .wb-page .jp-OutputArea-output, .wb-page .widget-html-content { overflow-wrap: anywhere; }
  .wb-page .wb-detail, .wb-page .wb-controls, .wb-page .wb-risk, .wb-page .wb-history { padding: 4px !important; }
}
</style>"""


@dataclass
class ConsoleSummary:
    """The header's numbers. ``by_state``/``by_risk``: counts of active sessions (orphaned counted as such)."""

    equity: float = math.nan
    day_pnl: float = math.nan
    exposure: float = 0.0
    sessions: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_risk: dict[str, int] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # newest first: session_id, time, kind, message
    #: equity per base currency when the active sessions' currencies differ: then equity, day P&L and
    #: exposure are NaN, never one sum of two currencies
    mixed: dict[str, float] = field(default_factory=dict)


def risk_checkpoint(store: Store, session_id: str, session: Any = None) -> dict[str, Any]:
    """The risk engine's state of a session (``state``, ``peak``, ``day_start``, ``last_equity``, ...): of
    the Session itself when it runs in this kernel (``session``, or found in LOCAL_SESSIONS), else of
    its last checkpoint in the store ({} if none)."""
    local = session if session is not None else LOCAL_SESSIONS.get(session_id)
    if local is not None:
        return dict(local.risk.snapshot())
    return stored_risk_state(store, session_id)


def console_summary(store: Store, *, clock: Clock = utc_now, recent: timedelta = RECENT,
                    stale_after: float = 10.0) -> ConsoleSummary:
    """Equity, day P&L (equity now less the risk engine's start-of-UTC-day equity, the daily-loss
    breaker's reference), exposure, counts by state and active alerts over the active sessions."""
    now = pd.Timestamp(clock())
    frame = active_sessions(store, clock=clock, stale_after=stale_after)
    out = ConsoleSummary(sessions=len(frame))
    equity, day = [], []
    by_currency: dict[str, float] = {}
    for r in frame.itertuples(index=False):
        config = store.get_session(r.id)["config"]
        if config is not None and r.equity == r.equity:
            by_currency[config.currency] = by_currency.get(config.currency, 0.0) + float(r.equity)
        label = "orphaned" if r.orphaned else r.state
        out.by_state[label] = out.by_state.get(label, 0) + 1
        if r.equity == r.equity:
            equity.append(float(r.equity))
            out.exposure += 0.0 if r.exposure != r.exposure else float(r.exposure)
        risk = risk_checkpoint(store, r.id) if r.state in RISK_STATE_SHOWN else {}
        rs = str(risk.get("state") or "")
        if rs:
            out.by_risk[rs] = out.by_risk.get(rs, 0) + 1
        start = risk.get("day_start")
        if r.equity == r.equity and start is not None:
            day.append(float(r.equity) - float(start))
        out.alerts += _alerts(store, r.id, now, recent, tripped=rs in ("reducing", "halted"))
    out.alerts += [a for a in _alerts(store, None, now, recent, tripped=False) if a["session_id"] == "host"]
    out.equity = sum(equity) if equity else math.nan
    out.day_pnl = sum(day) if day else math.nan
    if len(by_currency) > 1:
        out.mixed, out.equity, out.day_pnl, out.exposure = by_currency, math.nan, math.nan, math.nan
    out.alerts.sort(key=lambda a: a["time"], reverse=True)
    return out


def _alerts(store: Store, session_id: str | None, now: pd.Timestamp, recent: timedelta, *,
            tripped: bool) -> list[dict[str, Any]]:
    """Alerts of ``session_id``; with None, of every session, those of none (the host's) named "host"."""
    events = store.events(session_id, limit=20, kinds=ALERT_KINDS)  # a halted session's rejections do not hide them
    out = []
    for e in events.itertuples(index=False):
        if e.kind == "alert" and isinstance(e.data, dict) and e.data.get("rule") == TEST_RULE:
            continue  # the test button's alert says alerts work, not that something is wrong
        sid = session_id or (e.session_id if isinstance(e.session_id, str) else "host")
        t = pd.Timestamp(e.time)
        t = t.tz_localize("UTC") if t.tzinfo is None else t
        age_ok = now - t <= recent
        if age_ok or (tripped and e.kind == "circuit_breaker_tripped"):
            out.append({"session_id": sid, "time": t, "kind": e.kind, "message": e.message})
    if tripped:  # a later reset ends what came before it; keep only the newest trip
        trips = [a for a in out if a["kind"] == "circuit_breaker_tripped"]
        out = [a for a in out if a["kind"] != "circuit_breaker_tripped"] + trips[-1:]
    return out


def _alert_text(alert: dict[str, Any]) -> str:
    """"kind: message", without saying the kind twice; at most 160 characters of the message."""
    kind, text = alert["kind"].replace("_", " "), str(alert["message"])[:160]
    return text if text.lower().startswith(kind) else f"{kind}: {text}"


def header_html(s: ConsoleSummary, max_alerts: int = 3) -> str:
    """The header as HTML (stable classes: ``wb-equity``, ``wb-day-pnl``, ``wb-open-exposure``,
    ``wb-state-counts``, ``wb-alerts`` with ``wb-alert`` items, ``wb-no-alerts``)."""
    states = " ".join(f"{n}&nbsp;{state_badge(k)}" for k, n in sorted(s.by_state.items())) or "none active"
    risks = " ".join(f"{n}&nbsp;{risk_badge(k)}" for k, n in sorted(s.by_risk.items()))
    pnl = fmt_money(None if s.day_pnl != s.day_pnl else s.day_pnl)
    color = "#2e7d32" if s.day_pnl > 0 else "#c62828" if s.day_pnl < 0 else "inherit"
    if s.alerts:
        items = "".join(
            f"<div class='wb-alert' style='color:#c62828'>⚠ <code>{html.escape(a['session_id'])}</code> "
            f"{html.escape(_alert_text(a))} <small style='color:#777'>{a['time']:%H:%M:%S}</small></div>"
            for a in s.alerts[:max_alerts])
        extra = len(s.alerts) - max_alerts
        more = f"<div style='color:#777'>and {extra} more</div>" if extra > 0 else ""
        alerts = f"<div class='wb-alerts'>{items}{more}</div>"
    else:
        alerts = "<span class='wb-no-alerts' style='color:#2e7d32'>✔ no alerts</span>"
    equity = (" · ".join(f"{v:,.6g} {html.escape(c)}" for c, v in sorted(s.mixed.items())) if s.mixed
              else fmt_plain_money(s.equity))  # sessions in different base currencies are not added up
    return (f"<div class='wb-console-header'>"
            f"<span class='wb-kpi'>Equity <b class='wb-equity'>{equity}</b></span>"
            f"<span class='wb-kpi'>Day P&amp;L <b class='wb-day-pnl' style='color:{color}'>{pnl}</b></span>"
            f"<span class='wb-kpi'>Exposure <b class='wb-open-exposure'>{fmt_plain_money(s.exposure)}</b></span>"
            f"<span class='wb-kpi wb-state-counts'>Sessions: {states}"
            f"{' · trading: ' + risks if risks else ''}</span>{alerts}</div>")


class AlertTest:
    """The "Test alert" button and what it got: a test alert through the alert URLs this process is
    configured with (``$WORKBENCH_ALERTS``, the variable ``workbench host`` reads when it has no
    ``--alert``; ``workbench up`` passes its environment to both), recorded as an ``alert`` event.
    The delivery runs in a worker thread when the kernel has a loop, so a slow URL never freezes a page."""

    def __init__(self, store: Store, environ: Mapping[str, str] | None = None):
        self.store, self.environ = store, environ
        self.button = button("Test alert", "wb-test-alert", icon="bell",
                             tooltip="send a test alert to the configured alert URLs ($WORKBENCH_ALERTS)")
        self.button.layout.width = "auto"
        self.status = W.HTML()
        self.status.add_class("wb-test-alert-status")
        self.button.on_click(lambda _b: self.send())
        self.widget = W.HBox([self.button, self.status], layout={"align_items": "center", "flex_flow": "row wrap"})
        self.result: bool | None = None

    def send(self) -> None:
        """Send one test alert and show delivered / not delivered beside the button."""
        self.button.disabled = True
        self.status.value = message("sending a test alert…")
        if not has_loop():
            self._show(*self._deliver())
            return
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self._deliver)
        done.add_done_callback(lambda f: self._show(*f.result()))

    def _deliver(self) -> tuple[bool | None, str]:
        from workbench.ops.alerts import ENV, redact, send_test_alert, urls_from

        urls = urls_from(None, dict(self.environ) if self.environ is not None else None)
        if not urls:
            return None, (f"no alert URL: set {ENV} (e.g. json://host:port/hook, mailto://..., slack://...) "
                          "for `workbench up`, whose host and dashboards both read it")
        where = ", ".join(redact(u) for u in urls)
        try:
            ok = send_test_alert(urls, self.store, actor="dashboard")
        except Exception as e:  # Apprise refuses a URL (the message names it, secrets redacted), or is missing
            return False, str(e) or type(e).__name__
        return ok, (f"test alert delivered to {where}" if ok else
                    f"test alert NOT delivered to {where} (the alert event says why)")

    def _show(self, ok: bool | None, text: str) -> None:
        self.result = ok
        self.status.value = message(text, "ok" if ok else "error")
        self.button.disabled = False


class ConsoleHeader:
    """The header widget (``widget``, with :data:`PAGE_CSS`), refreshed every ``refresh`` seconds; its
    :class:`AlertTest` (``alert_test``) sends a test alert."""

    def __init__(self, store: Store | str | None = None, *, refresh: float = 2.0, clock: Clock = utc_now,
                 environ: Mapping[str, str] | None = None):
        self.store = open_store(store)
        self.clock = clock
        self.summary = ConsoleSummary()
        self.html = W.HTML()
        self.alert_test = AlertTest(self.store, environ)
        self.widget = W.VBox([W.HTML(PAGE_CSS), self.html, self.alert_test.widget], layout={"width": "100%"})
        self.widget.add_class("wb-header")
        self.ticker = Ticker(self.refresh, refresh, on_error=self._failed)
        self.refresh()
        self.ticker.start()

    def refresh(self) -> None:
        self.summary = console_summary(self.store, clock=self.clock)
        value = header_html(self.summary)
        if self.html.value != value:
            self.html.value = value

    def _failed(self, e: Exception) -> None:
        text = html.escape(redact(str(e)))  # a store error's text may carry a URL with a key
        self.html.value = f"<div class='wb-console-header' style='color:#c62828'>⚠ header: {text}</div>"

    def close(self) -> None:
        self.ticker.stop()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def header(store: Store | str | None = None, **kwargs: Any) -> ConsoleHeader:
    """The console header (displays itself in Jupyter)."""
    return ConsoleHeader(store, **kwargs)
