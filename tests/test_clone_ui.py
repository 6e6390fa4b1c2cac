"""Clone and Promote in the views (widget level, a real SQLite store): clicking Clone on the detail view
fills the wizard with the session's config and its Create records the lineage; Promote on the history view
opens the next kind on the review step; the lineage shows on both views."""
from __future__ import annotations

from tests.kit import paper_config
from workbench.store import Store
from workbench.ui.detail import DetailView
from workbench.ui.history import HistoryView
from workbench.ui.wizard import REVIEW, TYPE


def source(store: Store, **fields) -> str:
    cfg = paper_config(name="src", risk={"stop_loss": 0.03, "take_profit": 0.08}, initial_balance=25_000.0, **fields)
    return store.create_session(cfg, state="completed")


def test_clone_on_the_detail_view_fills_the_wizard_and_create_records_the_lineage(store: Store) -> None:
    src = source(store)
    view = DetailView(src, store, refresh=60)
    try:
        panel = view.clone_panel
        assert not panel.promote_button.disabled and panel.lineage.value == ""  # no parent
        panel.clone_button.click()
        wiz = panel.wizard
        assert wiz is not None and wiz.step == TYPE and src in wiz.title.value
        values = {k: wiz.field(k).read() for k in ("kind", "strategy", "params.fast", "params.slow",
                                                   "initial_balance", "risk.stop_loss", "risk.take_profit")}
        assert values == {"kind": "paper", "strategy": "sma_cross", "params.fast": 5, "params.slow": 20,
                          "initial_balance": 25_000.0, "risk.stop_loss": 0.03, "risk.take_profit": 0.08}
        wiz.field("params.fast").write(8)
        wiz.run_in.value = "host"
        assert wiz.create() is not None
        new = wiz.launcher.launched[-1].session_id
        row = store.get_session(new)
        assert (row["parent_id"], row["run_no"], row["state"]) == (src, 2, "requested")
        assert row["changes"] == {"params.fast": [5, 8]}  # the form's round trip changes nothing else
        assert "made from" in panel.note.value and "params.fast" in panel.note.value
    finally:
        view.close()
    child = DetailView(new, store, refresh=60)
    try:
        line = child.clone_panel.lineage.value
        assert f"made from <code>{src}</code> (run 2)" in line and "params.fast" in line
        assert child.clone_panel.promote_button.disabled  # requested: not finished yet
    finally:
        child.close()


def test_promote_on_the_history_view_opens_the_next_kind_on_the_review_step(store: Store) -> None:
    src = source(store, kind="backtest")
    running = store.create_session(paper_config(), state="running")
    view = HistoryView(store, run_in="host")
    try:
        view.clone_panel.promote_button.click()
        assert "tick the session" in view.clone_panel.note.value and view.clone_panel.wizard is None
        view.checks[running].value = True
        view.clone_panel.promote_button.click()
        assert "cannot promote" in view.clone_panel.note.value and "is running" in view.clone_panel.note.value
        view.checks[running].value = False
        view.checks[src].value = True
        view.clone_panel.promote_button.click()
        wiz = view.clone_panel.wizard
        assert wiz.step == REVIEW and wiz.field("kind").read() == "paper" and "Promote to paper" in wiz.title.value
        assert wiz.create() is not None
        new = wiz.launcher.launched[-1].session_id
        assert store.get_session(new)["changes"] == {"kind": ["backtest", "paper"]}
        view.refresh()
        assert view.frame.set_index("id").loc[new, "parent_id"] == src
        cells = [r for r in view.body.children if f"<code>{new}</code>" in r.children[-1].value]
        assert len(cells) == 1 and f"from <code>{src}</code>" in cells[0].children[-1].value
    finally:
        view.close()
