"""The "Fidelity twin" tab of a paper or live session's detail view: the session against its config
backtested on the bars it saw (:mod:`workbench.twin`), recomputed when the tab opens and on Refresh
(a backtest costs well under a second). Trades that diverge (missing, extra, or filled at another
price) are listed first."""
from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.ui.common import button, fmt_money, fmt_num, fmt_time, frame_table, lazy_tab, message

__all__ = ["FidelityPanel", "attach_fidelity"]

_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("symbol", "Symbol", str), ("entry_time", "Entry", fmt_time), ("match", "Match", str),
    ("session_entry", "Entry (session)", fmt_num), ("twin_entry", "Entry (twin)", fmt_num),
    ("entry_bps", "Entry diff, bps", lambda v: fmt_num(v, ".2f")),
    ("exit_bps", "Exit diff, bps", lambda v: fmt_num(v, ".2f")),
    ("session_pnl", "P&L (session)", fmt_money), ("twin_pnl", "P&L (twin)", fmt_money),
    ("pnl_gap", "P&L gap", fmt_money),
]
SHOWN = 200  # trades listed at most (the divergent ones first)


def _diverged(trades: pd.DataFrame) -> pd.Series:
    price = (trades["entry_bps"].abs() > 1e-6) | (trades["exit_bps"].abs() > 1e-6)
    return (trades["match"] != "matched") | price.fillna(False)


class FidelityPanel:
    """The twin's summary and its trade comparison for one session; :meth:`refresh` recomputes it."""

    def __init__(self, session_id: str, store: Any):
        self.session_id, self.store = session_id, store
        self.result: Any = None
        self.summary = W.HTML()
        self.summary.add_class("wb-fidelity-summary")
        self.table = W.HTML()
        self.table.add_class("wb-fidelity-trades")
        self.refresh_button = button("Refresh", "wb-fidelity-refresh", icon="refresh",
                                     tooltip="backtest the session's config again on the bars it has seen")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([self.refresh_button]), self.summary,
                              W.VBox([self.table], layout={"max_height": "320px", "overflow": "auto"})])
        self.widget.add_class("wb-fidelity")
        self.refresh()

    def refresh(self) -> None:
        """Backtest the twin again and redraw; a failure (no bars yet, say) shows in the panel."""
        from workbench.twin import fidelity

        try:
            self.result = fidelity(self.session_id, self.store)
        except Exception as e:
            self.summary.value = message(f"fidelity twin not computed: {e}", "error")
            self.table.value = ""
            return
        r = self.result
        verdict = ("matches its twin" if r.identical else "diverges from its twin")
        regime = (self.store.get_session(self.session_id).get("regime") or "")
        self.summary.value = (f"<div class='wb-fidelity-verdict'><b>The session {verdict}</b>"
                              f"{' (market: ' + html.escape(regime) + ')' if regime else ''}</div>"
                              f"<div>{html.escape(r.text())}</div>")
        trades = r.trades
        if len(trades):
            order = _diverged(trades).map({True: 0, False: 1})
            trades = trades.assign(_o=order).sort_values(["_o", "entry_time"], kind="stable").drop(columns="_o")
        self.table.value = frame_table(trades.head(SHOWN), _COLUMNS, "wb-fidelity-table",
                                       empty="no trades on either side")

    @property
    def gap(self) -> float:
        """The P&L gap of the last computation (NaN before one succeeds)."""
        return math.nan if self.result is None else float(self.result.summary["pnl_gap"])


def attach_fidelity(tabs: W.Tab, view: Any) -> W.VBox | None:
    """Add the "Fidelity twin" tab to a paper or live session's detail view (built when first selected)."""
    view.fidelity = None
    if view.config is None or view.config.kind.value not in ("paper", "live"):
        return None

    def make() -> W.Widget:
        view.fidelity = FidelityPanel(view.session_id, view.store)
        return view.fidelity.widget

    return lazy_tab(tabs, "Fidelity twin", "wb-fidelity-tab", make, "Fidelity twin")
