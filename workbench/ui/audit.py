"""The audit page: who did what to which session, when, with what result (:meth:`Store.audit`), newest
first, filtered by session and actor; the team and who this page acts as above it."""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from workbench.store import Store
from workbench.team import current_actor
from workbench.ui.common import button, fmt_time, frame_table, message, open_store

MAX_ROWS = 200
COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("time", "When", fmt_time), ("actor", "Who", str), ("session", "Session", str), ("session_id", "ID", str),
    ("action", "What", str), ("status", "Result", str), ("result", "Detail", str)]


class AuditView:
    """The audit trail; display ``view.widget``. Refresh re-reads the store."""

    def __init__(self, store: Store | str | None = None):
        self.store = open_store(store)
        self.session = W.Text(placeholder="session id", description="Session", layout={"width": "260px"})
        self.actor = W.Text(placeholder="user name", description="Who", layout={"width": "220px"})
        self.refresh_button = button("Refresh", "wb-audit-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.team = W.HTML()
        self.table = W.HTML()
        self.table.add_class("wb-audit")
        self.widget = W.VBox([self.team, W.HBox([self.session, self.actor, self.refresh_button]), self.table])
        self.refresh()

    def refresh(self) -> None:
        try:
            users = self.store.users()
            rows = self.store.audit(session_id=self.session.value.strip() or None,
                                    actor=self.actor.value.strip() or None, limit=MAX_ROWS)
        except Exception as e:
            self.table.value = message(f"could not read the audit trail: {type(e).__name__}: {e}", "error")
            return
        me = html.escape(current_actor("dashboard"))
        team = ", ".join(f"{html.escape(u.name)} ({u.role})" for u in users.itertuples())
        self.team.value = (f"<b>Team</b>: {team} · you act as <b>{me}</b>" if team
                           else f"Single-user mode (no team members) · you act as <b>{me}</b>")
        self.table.value = frame_table(rows.iloc[::-1], COLUMNS, "wb-audit-table", empty="nothing recorded yet")


def audit_page(store: Store | str | None = None) -> Any:
    """The audit page's widget."""
    return AuditView(store).widget
