"""Clone and Promote buttons and a session's lineage, for the detail and history views.

"Clone" opens the wizard pre-filled with the session's config; "Promote" opens it with the next kind
(backtest -> paper -> live, :data:`workbench.lineage.NEXT_KIND`) on its review step, where a live
session's pre-flight and arming are (the wizard refuses a live Create while a check fails). Whatever the
wizard then creates records the session as its parent and what changed (``Store.set_lineage``); the
CLI and API (:mod:`workbench.lineage`) start a clone directly instead.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from workbench.store import Store
from workbench.ui.common import button, message


def lineage_html(row: dict[str, Any]) -> str:
    """``made from <parent> (run N): field a -> b, ...`` for a session with a parent, else ''."""
    if not row.get("parent_id"):
        return ""
    changes = row.get("changes") or {}
    changed = ", ".join(f"<code>{html.escape(k)}</code> {html.escape(repr(a))} → {html.escape(repr(b))}"
                        for k, (a, b) in changes.items()) or "same config"
    return (f"<div class='wb-lineage' style='color:#555;margin:2px 0'>made from "
            f"<code>{html.escape(str(row['parent_id']))}</code> (run {row.get('run_no', '?')}): {changed}</div>")


def lineage_note(row: dict[str, Any]) -> str:
    """A history row's ``↳ from <parent>`` (what changed on hover), else ''."""
    parent = row.get("parent_id")
    if not isinstance(parent, str) or not parent:
        return ""
    changes = row.get("changes") or {}
    title = "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items()) or "same config"
    return (f"<div class='wb-history-parent' title='{html.escape(title, quote=True)}' style='font-size:85%;"
            f"color:#666'>↳ from <code>{html.escape(parent)}</code></div>")


class LineagePanel:
    """Clone/Promote for one session and its lineage line; display ``panel.widget``. ``pick`` (the history
    view's ticked row) gives the session at each click instead of ``session_id``. ``wizard`` is the one
    wizard it opens (made on first use)."""

    def __init__(self, store: Store, session_id: str | None = None, *, run_in: str = "kernel",
                 pick: Callable[[], str | None] | None = None, wizard_kwargs: dict[str, Any] | None = None):
        self.store, self.session_id, self.run_in, self.pick = store, session_id, run_in, pick
        self.wizard_kwargs = dict(wizard_kwargs or {})
        self.wizard: Any = None
        self.parent_id: str | None = None  # the session the open wizard was filled from
        self.clone_button = button("Clone", "wb-btn-clone", icon="clone", tooltip="open the wizard with this "
                                   "session's config, to change it and create a new session")
        self.promote_button = button("Promote", "wb-btn-promote", icon="level-up", tooltip="the next kind with the "
                                     "same config: backtest → paper, paper → live (after the pre-flight)")
        self.clone_button.on_click(lambda _: self.clone())
        self.promote_button.on_click(lambda _: self.promote())
        self.lineage = W.HTML()
        self.lineage.add_class("wb-lineage-line")
        self.note = W.HTML()
        self.note.add_class("wb-clone-message")
        self.wizard_box = W.VBox()
        self.widget = W.VBox([W.HBox([self.clone_button, self.promote_button, self.lineage],
                                     layout={"align_items": "center"}), self.note, self.wizard_box])
        self.widget.add_class("wb-clone")
        if session_id is not None:
            self.show(session_id)

    def show(self, session_id: str | None, row: dict[str, Any] | None = None) -> None:
        """Act on ``session_id`` from now on; its lineage line and whether it can be promoted."""
        from workbench.lineage import promote_problem

        self.session_id = session_id
        if session_id is None:
            self.lineage.value = ""
            self.promote_button.disabled = True
            return
        row = row or self.store.get_session(session_id)
        self.lineage.value = lineage_html(row)
        problem = promote_problem(row)
        self.promote_button.disabled = problem is not None
        self.promote_button.tooltip = problem or "the next kind with the same config (opens the wizard's review)"

    def _selected(self) -> dict[str, Any] | None:
        """The store row of the session to act on (the picked one first); None, with why, if none is."""
        if self.pick is not None:
            self.show(self.pick())
        if self.session_id is None:
            self.note.value = message("tick the session to clone or promote")
            return None
        return self.store.get_session(self.session_id)

    def _open(self, row: dict[str, Any], kind: str | None) -> Any:
        """The wizard filled from ``row``'s config (with ``kind`` if given); None, with why, if it cannot."""
        from workbench.ui.wizard import REVIEW, TYPE, Wizard

        config = row["config"]
        if config is None:
            self.note.value = message(f"session {self.session_id}'s config no longer validates: "
                                      f"{row.get('config_error')}")
            return None
        if kind is not None:
            config = config.replace(kind=kind)
        if self.wizard is None:
            self.wizard = Wizard(config, store=self.store, run_in=self.run_in, **self.wizard_kwargs)
            if self.wizard.launcher is not None:
                self.wizard.launcher.listeners.append(self._record)
        else:
            self.wizard.load_config(config)
        self.parent_id = str(row["id"])
        self.wizard.goto(TYPE if kind is None else REVIEW)
        what = "Clone of" if kind is None else f"Promote to {kind}:"
        self.wizard.title.value = (f"<h3 style='margin:4px 0'>{what} session "
                                   f"<code>{html.escape(self.parent_id)}</code></h3>")
        self.wizard_box.children = [self.wizard.widget]
        return self.wizard

    def clone(self) -> Any:
        """Open the wizard pre-filled with the session's config; returns it (None if it cannot)."""
        row = self._selected()
        wiz = None if row is None else self._open(row, None)
        if wiz is not None:
            self.note.value = message(f"wizard filled from session {self.session_id}: change what you like, "
                                      "then Create", "info")
        return wiz

    def promote(self) -> Any:
        """Open the wizard with the next kind on its review step; returns it (None if it cannot be promoted)."""
        from workbench.domain import SessionKind
        from workbench.lineage import NEXT_KIND, promote_problem

        row = self._selected()
        if row is None:
            return None
        problem = promote_problem(row)
        if problem:
            self.note.value = message(f"cannot promote: {problem}")
            return None
        kind = NEXT_KIND[SessionKind(row["kind"])].value
        wiz = self._open(row, kind)
        if wiz is not None:
            check = " run the pre-flight, arm it," if kind == "live" else ""
            self.note.value = message(f"promote {self.session_id} to {kind}: review,{check} then Create", "info")
        return wiz

    def _record(self, launched: Any) -> None:
        """After the wizard's Create: record the new session's parent and what changed."""
        if self.parent_id is None:
            return
        try:
            changes = self.store.set_lineage(launched.session_id, self.parent_id)
        except Exception as e:  # shown, not raised into the widget loop
            self.note.value = message(f"session {launched.session_id} created, but its lineage was not recorded: {e}")
            return
        said = ", ".join(changes) or "nothing changed"
        self.note.value = message(f"session {launched.session_id} made from {self.parent_id} ({said})", "ok")
