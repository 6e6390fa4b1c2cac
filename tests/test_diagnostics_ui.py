"""The Diagnostics widget: built lazily (the detail view's tab and each sub-tab), the page picks a session
and explains bad ids, and a backtest says it has no runner measurements."""
from __future__ import annotations

import asyncio

import ipywidgets as W
import pytest

from tests.kit import bars_for, paper_config
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.ui.detail import DetailView
from workbench.ui.diagnostics import TABS, DiagnosticsView
from workbench.ui.pages import diagnostics_page


def text(view: DiagnosticsView, i: int) -> str:
    return view.tabs.children[i].children[-1].value


@pytest.fixture
def sid(store):
    cfg = paper_config(time={"trading_hours": {"start": "08:00", "end": "24:00"}})
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    assert asyncio.run(session.run()).value == "completed"
    return session.id


def test_sub_tabs_are_built_when_shown_and_show_each_diagnostic(store, sid):
    view = DiagnosticsView(sid, store)
    assert view.built == {} and all(not box.children for box in view.tabs.children)
    for i in range(len(TABS)):
        view.tabs.selected_index = i
        view.show()
    assert set(view.built) == set(range(len(TABS)))
    assert "order_rejected" in text(view, 0) and "wb-diag-log-csv" in text(view, 0)
    assert "wb-diag-orders-table" in text(view, 1) and "total latency" in text(view, 1)
    assert "bar_to_order" in text(view, 2) and "CPU and memory" in text(view, 2)
    assert "BTC/USDT" in text(view, 3)
    assert "blocked: trading_hours" in text(view, 4)
    view.f_level.value = "error"
    view.built[0]()
    assert "no events match" in text(view, 0) and len(view.log) == 0


def test_detail_view_builds_its_diagnostics_tab_only_when_selected(store, sid):
    detail = DetailView(sid, store, refresh=60)
    try:
        tabs = next(w for w in detail.widget.children if isinstance(w, W.Tab))
        index = list(tabs.titles).index("Diagnostics")
        assert detail.diagnostics is None
        tabs.selected_index = index
        assert isinstance(detail.diagnostics, DiagnosticsView) and 0 in detail.diagnostics.built
    finally:
        detail.close()


def test_page_without_sessions_says_where_to_make_one(tmp_path):
    from workbench.store import Store

    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert "No sessions yet" in diagnostics_page(store=empty).children[-1].value
    finally:
        empty.close()


def test_page_picks_a_session_and_explains_bad_ids(store, sid):
    Session(paper_config(), store)  # a second, newer session
    page = diagnostics_page(sid, store)
    picker = next(w for w in page.children if isinstance(w, W.Dropdown))
    assert picker.value == sid and page.views["diagnostics"].session_id == sid
    other = next(v for _label, v in picker.options if v != sid)
    picker.value = other
    assert page.views["diagnostics"].session_id == other
    assert "no signal counters" not in text(page.views["diagnostics"], 0)
    assert "There is no session <code>nope</code>" in diagnostics_page("nope", store).children[-1].value
