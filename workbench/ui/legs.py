"""The "Legs" tab of a multi-strategy session's detail view: each leg's strategy, params, symbols,
allocation, whether it is paused, its trades and P&L; and, while a paper or live session runs, the
per-leg controls (pause or resume a leg) through the session's handle."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W

from workbench.domain import SessionState
from workbench.ui.common import button, fmt_money, fmt_num, frame_table, lazy_tab, message

__all__ = ["LegsPanel", "attach_legs"]

_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("leg", "Leg", str), ("strategy", "Strategy", str), ("params", "Params", str), ("symbols", "Symbols", str),
    ("allocation", "Allocation", lambda v: f"{v:.0%}"), ("paused", "Paused", lambda v: "paused" if v else ""),
    ("trades", "Trades", str), ("pnl", "P&L", fmt_money), ("realized_pnl", "Realized", fmt_money),
    ("fees", "Fees", fmt_money), ("win_rate", "Win rate", lambda v: fmt_num(v, ".0%")),
]


class LegsPanel:
    """The legs table of one session (:func:`workbench.backtest.legs.leg_table`); :meth:`refresh` rereads it."""

    def __init__(self, view: Any):
        self.view = view
        self.table = W.HTML()
        self.table.add_class("wb-legs-table")
        self.note = W.HTML()
        self.picker = W.Dropdown(options=[leg.name for leg in view.config.legs], description="Leg",
                                 layout={"width": "220px"})
        self.buttons = {"pause_leg": button("Pause leg", "wb-btn-pause-leg"),
                        "resume_leg": button("Resume leg", "wb-btn-resume-leg"),
                        "refresh": button("Refresh", "wb-btn-legs-refresh")}
        self.buttons["pause_leg"].on_click(lambda _: self.act("pause_leg"))
        self.buttons["resume_leg"].on_click(lambda _: self.act("resume_leg"))
        self.buttons["refresh"].on_click(lambda _: self.refresh())
        controls = W.HBox([self.picker, self.buttons["pause_leg"], self.buttons["resume_leg"]])
        running = view.config.kind.value != "backtest" and not SessionState(view.state).is_final
        if not running:
            controls.layout.display = "none"
        self.widget = W.VBox([W.HBox([self.buttons["refresh"]]), self.table, controls, self.note])
        self.refresh()

    def frame(self) -> Any:
        from workbench.backtest.legs import leg_table

        view = self.view
        row = view.store.get_session(view.session_id)
        trader: Any = getattr(view.session, "trader", None)
        if trader is not None and getattr(trader, "paused", None) is not None:  # runs here: its own state
            state: Any = {"legs": {"params": trader.leg_params, "paused": sorted(trader.paused)}}
        else:  # another process runs it (or ran it): its last checkpoint
            state = view.store.load_runner_state(view.session_id) if view.config.kind.value != "backtest" else None
        return leg_table(view.config, view._trades(row), state)

    def refresh(self) -> None:
        self.table.value = frame_table(self.frame(), _COLUMNS, "wb-legs")

    def act(self, command: str) -> None:
        leg = str(self.picker.value)
        try:
            said = self.view.handle.act(command, leg=leg)
        except ValueError as e:  # CommandRejected: the message says why
            self.note.value = message(str(e), "error")
            return
        self.note.value = message(said, "ok")
        self.refresh()


def attach_legs(tabs: W.Tab, view: Any) -> W.VBox | None:
    """Add the "Legs" tab to the detail view of a session with legs (built when first selected)."""
    view.legs = None
    if view.config is None or not view.config.legs:
        return None

    def make() -> W.Widget:
        view.legs = LegsPanel(view)
        return view.legs.widget

    return lazy_tab(tabs, "Legs", "wb-legs-tab", make, "Legs")
