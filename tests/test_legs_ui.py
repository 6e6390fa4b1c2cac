"""The detail view's "Legs" tab: the legs table of a saved backtest, and pausing a leg of a paper session."""
from __future__ import annotations

import ipywidgets as W
import pytest

from tests.kit import bars_for, paper_config
from tests.test_legs import legs_config
from workbench.backtest import run_backtest
from workbench.backtest.legs import leg_summary
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.ui.detail import DetailView


def legs_tab(view: DetailView) -> tuple[W.Tab, int | None]:
    tabs = next(w for w in view.widget.children if isinstance(w, W.Tab))
    return tabs, list(tabs.titles).index("Legs") if "Legs" in tabs.titles else None


def test_a_backtest_detail_view_lists_its_legs_with_their_pnl(store) -> None:
    config = legs_config(kind="backtest")
    result = run_backtest(config, bars={s: df.iloc[:600] for s, df in bars_for(config).items()})
    view = DetailView(store.save_backtest(config, result), store, refresh=60)
    try:
        tabs, index = legs_tab(view)
        assert index is not None and view.legs is None  # built when first selected
        tabs.selected_index = index
        table = view.legs.frame()
        summary = leg_summary(result.trades, ["trend", "revert"])
        assert list(table["leg"]) == ["trend", "revert"] and list(table["allocation"]) == [0.6, 0.4]
        assert table["pnl"].tolist() == pytest.approx(summary["pnl"].tolist())
        assert "mean_reversion" in view.legs.table.value and "BTC/USDT, ETH/USDT" in view.legs.table.value
        assert view.legs.widget.children[2].layout.display == "none"  # no controls on a backtest
    finally:
        view.close()


def test_pause_a_leg_from_the_view_and_a_plain_session_has_no_legs_tab(store) -> None:
    config = legs_config()
    session = Session(config, store, feed=ReplayFeed(bars_for(config), None))
    view = DetailView(session.id, store, session=session, refresh=60)
    try:
        tabs, index = legs_tab(view)
        tabs.selected_index = index
        panel = view.legs
        panel.picker.value = "revert"
        panel.buttons["pause_leg"].click()
        assert "leg revert paused" in panel.note.value and session.trader.paused == {"revert"}
        assert panel.frame().set_index("leg")["paused"].to_dict() == {"trend": False, "revert": True}
        panel.buttons["resume_leg"].click()
        assert session.trader.paused == set()
    finally:
        view.close()
    plain = Session(paper_config(), store, feed=ReplayFeed(bars_for(paper_config()), None))
    view = DetailView(plain.id, store, session=plain, refresh=60)
    try:
        assert legs_tab(view)[1] is None
    finally:
        view.close()


def test_the_report_has_a_legs_section_summing_to_the_session() -> None:
    from workbench.reports.legs import legs_table
    from workbench.reports.report import Report

    config = legs_config(kind="backtest", start="2024-01-01", end="2024-01-02")
    report = Report(config=config)
    group = report.show_legs()
    table = legs_table(report._res())
    assert list(table.index) == ["trend", "revert", "session"] and table.loc["session", "allocation"] == 1.0
    trend = table.loc["trend"]
    assert trend["total_return"] == pytest.approx(trend["pnl"] / (0.6 * config.initial_balance))
    assert table.loc["session", "pnl"] == pytest.approx(report._res().equity.iloc[-1] - config.initial_balance)
    assert group.items[1].figure.layout.title.text == "P&L per leg"
    single = Report(config=legs_config(kind="backtest", legs=[], start="2024-01-01", end="2024-01-02"))
    assert repr(single.show_legs()) == "single strategy: no legs"


def test_the_price_chart_shows_every_legs_fills_of_its_symbol(store) -> None:
    import asyncio

    from workbench.ui.detail import BUYS

    config = legs_config()
    session = Session(config, store, feed=ReplayFeed({s: df.iloc[:400] for s, df in bars_for(config).items()}, None))
    asyncio.run(session.run())
    fills = store.fills(session.id)
    btc_buys = fills[(fills.side == "buy") & fills.symbol.str.startswith("BTC/USDT")]
    assert set(btc_buys.symbol) == {"BTC/USDT@trend", "BTC/USDT@revert"}  # both legs bought BTC
    view = DetailView(session.id, store, refresh=60, symbol="BTC/USDT")
    try:
        view.price_chart.flush(force=True)
        assert len(view.price_chart.fig.data[BUYS].x) == len(btc_buys)
    finally:
        view.close()
