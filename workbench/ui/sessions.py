"""The guide's "Active Trading Sessions" table, refreshed live from the store (so it shows the
sessions of every process sharing it), orphaned sessions flagged, a trading session's risk state
beside its state ("running · halted"); selecting a row shows that session's control panel (and,
with ``with_detail``, its detail view).
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.engine.exposure import Clock, active_sessions, utc_now
from workbench.engine.handle import SessionHandle, handle_for
from workbench.store import Store
from workbench.ui.common import (
    RISK_STATE_SHOWN,
    Ticker,
    button,
    fmt_duration,
    fmt_money,
    fmt_plain_money,
    message,
    open_store,
    state_badge,
)
from workbench.ui.console import risk_checkpoint
from workbench.ui.launch import LOCAL_SESSIONS

#: the state comes third, so a phone-sized screen shows it before the table scrolls sideways
COLUMNS = (("Type", "90px"), ("Strategy", "170px"), ("Status", "170px"), ("P&L", "100px"), ("Exposure", "100px"),
           ("Uptime", "80px"), ("ID", "120px"), ("", "80px"))


def _cell(value: str, width: str, css: str = "") -> W.HTML:
    w = W.HTML(value, layout={"width": width})
    if css:
        w.add_class(css)
    return w


class SessionRow:
    """One row: cells that update in place (no widget churn on refresh) and an Open button."""

    def __init__(self, session_id: str, on_open: Callable[[str], None]):
        self.session_id = session_id
        self.cells = [_cell("", w, css) for (_, w), css in
                      zip(COLUMNS[:-1], ("wb-kind", "wb-strategy", "wb-state", "wb-pnl", "wb-exposure", "wb-uptime",
                                         "wb-session-id"))]
        self.open = button("Open", "wb-session-open", icon="sliders")
        self.open.on_click(lambda _: on_open(session_id))
        self.widget = W.HBox([*self.cells, self.open], layout={"align_items": "center",
                                                              "border_bottom": "1px solid #eee"})
        self.widget.add_class("wb-session-row")
        self.widget.add_class(f"wb-session-{session_id}")

    def update(self, r: Any, selected: bool, risk_state: str = "") -> None:
        values = [r.kind.title(), html.escape(r.name or r.strategy), state_badge(r.state, bool(r.orphaned), risk_state),
                  fmt_money(r.pnl), fmt_plain_money(r.exposure), fmt_duration(r.uptime),
                  f"<code>{html.escape(r.id)}</code>"]
        for cell, v in zip(self.cells, values):
            if cell.value != v:
                cell.value = v
        self.widget.layout.background = "#e3f2fd" if selected else None


class SessionsView:
    """Active sessions table; display ``view.widget``. ``rows`` maps session id -> SessionRow.

    A running session whose heartbeat is older than ``stale_after`` seconds at ``clock()`` (default:
    the UTC wall clock; tests pass a fake one) is flagged orphaned."""

    def __init__(self, store: Store | str | None = None, *, refresh: float = 1.0, stale_after: float = 10.0,
                 with_detail: bool = False, detail_url: str | None = None, clock: Clock = utc_now):
        self.store = open_store(store)
        self.stale_after, self.with_detail, self.detail_url = stale_after, with_detail, detail_url
        self.clock = clock
        self.rows: dict[str, SessionRow] = {}
        self.frame = pd.DataFrame()
        self.selected: str | None = None
        self.panel: Any = None
        self.detail: Any = None
        self._listeners: list[Callable[[str], None]] = []
        header = W.HBox([_cell(f"<b>{h}</b>", w) for h, w in COLUMNS],
                        layout={"border_bottom": "2px solid #ccc"})
        header.add_class("wb-table-head")
        self.title = W.HTML("<h3 style='margin:4px 0'>Active Trading Sessions</h3>")
        self.empty = W.HTML("<i style='color:#777'>no active sessions: create one with the wizard</i>")
        self.empty.add_class("wb-sessions-empty")
        self.body = W.VBox()
        self.table = W.VBox([header, self.body, self.empty])
        self.table.add_class("wb-sessions-table")
        self.table.add_class("wb-scroll-x")  # a phone scrolls the table sideways, not the page
        self.message = W.HTML()
        self.message.add_class("wb-sessions-message")
        self.link = W.HTML()
        self.link.add_class("wb-detail-link")
        self.selection = W.VBox()
        self.selection.add_class("wb-selected-session")
        self.widget = W.VBox([self.title, self.table, self.message, self.link, self.selection])
        self.widget.add_class("wb-sessions")
        self.ticker = Ticker(self.refresh, refresh, on_error=lambda e: self._show(f"refresh failed: {e}"))
        self.refresh()
        self.ticker.start()

    def on_select(self, callback: Callable[[str], None]) -> Callable[[str], None]:
        """Call ``callback(session_id)`` when a row is opened."""
        self._listeners.append(callback)
        return callback

    def refresh(self) -> None:
        """Re-read the active sessions and update the table in place."""
        frame = active_sessions(self.store, clock=self.clock, stale_after=self.stale_after)
        self.frame = frame
        ids = list(frame["id"])
        if ids != list(self.rows):
            self.rows = {sid: self.rows.get(sid) or SessionRow(sid, self.select) for sid in ids}
            self.body.children = [r.widget for r in self.rows.values()]
        for r in frame.itertuples(index=False):
            risk = str(risk_checkpoint(self.store, r.id).get("state") or "") if r.state in RISK_STATE_SHOWN else ""
            self.rows[r.id].update(r, r.id == self.selected, risk)
        self.empty.layout.display = "none" if ids else None
        if self.panel is not None and self.selected is not None:
            try:
                self.panel.refresh()
            except Exception as e:
                self._show(f"control panel: {e}")

    def select(self, session_id: str) -> None:
        """Show the control panel (and detail) of ``session_id``."""
        from workbench.ui.controls import ControlPanel

        try:
            self._close_selection()
            handle = handle_for(session_id, self.store, LOCAL_SESSIONS, actor="dashboard")
            session = getattr(handle, "session", None)
            self.panel = ControlPanel(session_id, self.store, session, handle=handle,
                                      on_restart=lambda new, _s: self._restarted(new), on_resume=self._resumed)
            self.panel.ticker.stop()  # this view's ticker refreshes it
            parts = [self.panel.widget]
            if self.with_detail:
                from workbench.ui.detail import DetailView

                self.detail = DetailView(session_id, self.store, session, handle=handle)
                parts.append(self.detail.widget)
            self.selection.children = parts
            self.selected = session_id
            if self.detail_url:
                url = html.escape(self.detail_url.format(id=session_id))
                self.link.value = (f"<a class='wb-detail-anchor' href='{url}' target='_blank'>"
                                   f"Open the detail page of {html.escape(session_id)} ↗</a>")
            self._show("")
            for fn in self._listeners:
                fn(session_id)
        except Exception as e:
            self._show(f"cannot open session {session_id}: {e}")
        for sid, row in self.rows.items():
            row.widget.layout.background = "#e3f2fd" if sid == self.selected else None

    def _restarted(self, new_id: str) -> None:
        self.refresh()
        self._show(f"restarted as {new_id}", "ok")

    def _resumed(self, handle: SessionHandle) -> None:
        if self.detail is not None:
            self.detail.follow(handle)
        self.refresh()
        self._show(f"run of {handle.session_id} resumed", "ok")

    def _close_selection(self) -> None:
        for v in (self.panel, self.detail):
            if v is not None:
                v.close()
        self.panel = self.detail = None
        self.selection.children = []

    def _show(self, text: str, kind: str = "error") -> None:
        self.message.value = message(text, kind)

    def close(self) -> None:
        """Stop refreshing (also the selected session's views) and close the widgets."""
        self.ticker.stop()
        self._close_selection()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def sessions(store: Store | str | None = None, **kwargs: Any) -> SessionsView:
    """The active sessions table with controls of the selected session (displays itself in Jupyter)."""
    return SessionsView(store, **kwargs)
