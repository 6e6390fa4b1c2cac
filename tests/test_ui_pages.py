"""The Voilà pages (workbench.ui.pages), the history browser and the risk view, in-process."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import ipywidgets as W
import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.domain import Position
from workbench.engine.exposure import risk_report
from workbench.profiles import PROFILES
from workbench.ui import history, risk
from workbench.ui import pages as P
from workbench.ui.wizard import REVIEW

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def classes(widget) -> set[str]:
    """Every CSS class in a widget tree."""
    out, todo = set(), [widget]
    while todo:
        w = todo.pop()
        out.update(getattr(w, "_dom_classes", ()))
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    return out


def find(widget, css):
    todo = [widget]
    while todo:
        w = todo.pop()
        if css in getattr(w, "_dom_classes", ()):
            return w
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    raise AssertionError(f"no widget with class {css}")


def backtest(store, strategy="momentum", days=3, symbols=("BTC/USDT",)):
    cfg = make_config(strategy=strategy, symbols=list(symbols), start=T0, end=T0 + timedelta(days=days))
    return store.save_backtest(cfg, run_backtest(cfg, {s: sample_bars(s, days=days) for s in symbols}))


# ---- pages -----------------------------------------------------------------------------------
def test_pages_carry_the_documented_css_classes(store):
    sid = store.create_session(make_config(kind="paper"))
    store.set_state(sid, "running")
    pages = [P.sessions_page(store), P.session_page(sid, store), P.risk_page(store), P.history_page(store)]
    have = set().union(*(classes(p) for p in pages))
    after_create = {"wb-progress", "wb-create-result", "wb-page-message"}  # tested below
    documented = set(re.findall(r"``(wb-[a-z0-9_-]+)``", P.__doc__))
    assert len(documented) > 60
    missing = {c for c in documented if not c.endswith("-")} - have - after_create
    assert missing == set()
    assert f"wb-session-{sid}" in have and "wb-param-window" in have
    for p in pages:
        p.close_views()


def test_sessions_page_creates_through_the_host_and_selects_the_new_session(store):
    page = P.sessions_page(store)
    assert isinstance(page, P.Page) and {"wb-page", "wb-page-sessions"} <= set(page._dom_classes)
    wiz = page.views["wizard"]
    assert wiz.run_in.value == "host"
    find(page, "wb-field-kind").value = "paper"
    bal = find(page, "wb-field-initial_balance")
    bal.value = -5
    find(page, "wb-wizard-next").click()
    find(page, "wb-wizard-next").click()
    assert "greater than 0" in find(page, "wb-error-initial_balance").value  # shown beside the field
    bal.value = 2500
    while wiz.step < REVIEW:
        assert wiz.next(), wiz.errors
    find(page, "wb-wizard-create").click()
    sid = wiz.launcher.launched[-1].session_id
    row = store.get_session(sid)
    assert row["state"] == "requested" and row["initial_balance"] == 2500
    view = page.views["sessions"]
    assert sid in view.rows and view.selected == sid and view.panel.session_id == sid
    assert f"session.ipynb?id={sid}" in find(page, "wb-detail-link").value
    page.close_views()


def test_session_page_reads_the_id_from_the_query_and_explains_bad_ids(store, monkeypatch):
    sid = store.create_session(make_config(kind="paper"), state="requested")
    monkeypatch.setenv("QUERY_STRING", f"id={sid}&theme=dark")
    page = P.session_page(store=store)
    assert set(page.views) == {"header", "detail", "controls"} and page.views["detail"].session_id == sid
    assert "wb-equity-chart" in classes(page) and "wb-btn-pause" in classes(page)
    assert "requested" in find(page, "wb-state").value
    page.close_views()
    monkeypatch.setenv("QUERY_STRING", "id=doesnotexist")
    msg = find(P.session_page(store=store), "wb-page-message").value
    assert "no session <code>doesnotexist</code>" in msg
    monkeypatch.delenv("QUERY_STRING")
    assert "No session selected" in find(P.session_page(store=store), "wb-page-message").value
    assert P.query_id("?id=%20abc%20") == "abc" and P.query_id("x=1") is None


# ---- history -----------------------------------------------------------------------------------------
def test_history_filters_compare_and_templates(store):
    a = backtest(store, "momentum")
    b = backtest(store, "sma_cross")
    p = store.create_session(make_config(kind="paper", strategy="momentum"))
    view = history(store)
    assert len(view.frame) == 3 and len(view.body.children) == 3
    view.kind.value = "backtest"
    assert set(view.frame["id"]) == {a, b}
    view.strategy.value = "sma_cross"
    assert list(view.frame["id"]) == [b]
    text = view.body.children[0].children
    row = store.history().set_index("id").loc[b]
    assert text[2].value == "sma_cross" and text[3].value == "Backtest"
    assert text[5].value == f"{row['return'] * 100:+.1f}%".replace("-0.0%", "+0.0%")
    view.strategy.value = ""  # "All"
    view.kind.value = ""
    today = datetime.now(timezone.utc).date()
    view.since.value = today + timedelta(days=1)
    assert view.frame.empty
    view.until.value = today
    assert "before the 'From' date" in view.message.value
    view.since.value = view.until.value = None
    assert len(view.frame) == 3
    # compare
    view.checks[a].value = True
    view.compare()
    assert "tick two or more" in view.message.value
    view.checks[b].value = True
    view.compare_button.click()
    table, fig = view.compare_box.children
    assert a in table.value and b in table.value and "Sharpe Ratio" in table.value
    assert len(fig.data) == 2
    eq = store.equity(a)["equity"]
    assert fig.data[[tr.name for tr in fig.data].index(f"momentum {a}")].y[-1] == pytest.approx(
        (eq.iloc[-1] / 10_000 - 1) * 100)
    # templates: save the ticked session's config, start the wizard from it with a risk profile
    view.template_name.value = ""
    view.save_button.click()
    assert "give the template a name" in view.message.value
    view.template_name.value = "mom-3d"
    view.checks[b].value = False  # the first ticked session's config is saved
    view.save_button.click()
    assert "saved" in view.message.value and store.get_template("mom-3d").strategy == "momentum"
    assert view.template.value == "mom-3d"
    view.profile.value = "conservative"
    view.start_button.click()
    wiz = view.wizard
    assert view.wizard_box.children[0] is wiz.widget
    cfg, errors = wiz.build()
    assert errors == {} and cfg.strategy == "momentum"
    assert cfg.risk.stop_loss == PROFILES["conservative"]["risk"]["stop_loss"]
    assert wiz.field("risk.stop_loss").widgets[0].value == "2"  # shown in percent
    assert p  # the paper session stays in the unfiltered history


# ---- risk view -----------------------------------------------------------------------------------------
def test_risk_view_shows_the_report_of_active_sessions(store):
    cfg = make_config(kind="paper", symbols=["BTC/USDT", "ETH/USDT"], risk={"portfolio_limit": 20_000})
    sid = store.create_session(cfg)
    store.set_state(sid, "running")
    store.heartbeat(sid, "t:1")
    t = pd.Timestamp("2024-01-03 12:00", tz="UTC")
    store.add_equity_points(sid, [(t, 10_000.0, 4_000.0, 6_000.0)])
    store.upsert_position(sid, Position("BTC/USDT", 0.1, 40_000.0))
    store.upsert_position(sid, Position("ETH/USDT", 1.0, 2_000.0))
    view = risk(store)
    expected = risk_report(store)
    assert expected.total_exposure > 0 and view.report.total_exposure == pytest.approx(expected.total_exposure)
    btc = sample_bars("BTC/USDT", days=3)["close"].loc[:t].iloc[-1]  # marked at the session's own last close
    assert view.report.positions.set_index("symbol").loc["BTC/USDT", "value"] == pytest.approx(0.1 * btc)
    assert f"${expected.total_exposure:,.2f}" in view.parts["summary"].value
    assert "BTC/USDT" in view.parts["concentration"].value and "ETH/USDT" in view.parts["correlation"].value
    assert "portfolio limit" in view.parts["limits"].value
    assert view.message.value == ""
    store.set_state(sid, "completed")
    view.refresh_button.click()
    assert view.report.total_exposure == 0 and "nothing held" in view.parts["concentration"].value
    view.close()


def test_views_refresh_on_the_running_loop_and_stop_on_close(store):
    async def main():
        page = P.risk_page(store, refresh=0.05)
        v = page.views["risk"]
        await asyncio.sleep(0.3)
        assert v.ticker.running and v.ticker.count >= 3
        page.close_views()
        n = v.ticker.count
        await asyncio.sleep(0.2)
        assert v.ticker.count == n
    asyncio.run(main())


def test_refresh_errors_show_as_messages(store):
    view = risk(store)
    store.close()
    store.engine.dispose()
    view.store = None  # a broken store: the refresh fails, the view says so
    view.ticker.tick()
    assert "refresh failed" in view.message.value


# ---- what a user sees (issue 5 polish) ----------------------------------------------------------------
def dropdowns(widget) -> list[W.Dropdown]:
    out, todo = [], [widget]
    while todo:
        w = todo.pop()
        if isinstance(w, W.Dropdown):
            out.append(w)
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    return out


def test_every_history_dropdown_shows_a_choice(store):
    a = backtest(store)
    view = history(store)
    boxes = dropdowns(view.widget)
    assert len(boxes) == 5  # type, strategy, market regime, template, risk profile
    for d in boxes:  # a value of None selects nothing: the browser shows a blank box
        assert d.index == 0 and d.label, (d.description, d.index, d.label)
    assert (view.kind.label, view.strategy.label, view.regime.label, view.template.label, view.profile.label) == (
        "All", "All", "All", "(default config)", "(none)")
    view.kind.value = "paper"
    assert view.frame.empty and "no sessions match" in view.body.children[0].value
    view.kind.index = 0  # "All" again filters nothing
    assert list(view.frame["id"]) == [a]
    assert view.save_template("t1", a) and view.template.label == "t1"
    view._load_templates()  # reloading keeps the choice
    assert view.template.value == "t1"
    assert view.start_wizard() is not None and "from template 't1'" in view.message.value
    view.template.index = 0
    view.start_wizard()
    assert "from template" not in view.message.value and "prefilled" in view.message.value
    p = store.create_session(make_config(kind="paper"))  # no metrics until it ends: the compare table says so
    view.refresh()
    view.compare([a, p])
    assert f"n/a: {p} has no stored metrics yet" in view.compare_box.children[0].value


def test_sessions_page_has_section_headings_under_the_dashboards_title(store):
    page = P.sessions_page(store)
    texts = [w.value for w in _all(page) if isinstance(w, W.HTML)]
    assert not [t for t in texts if re.search(r"<h[12]\b", t)]  # the notebook's "# Workbench" is the page title
    headings = [re.sub("<[^>]+>", "", t) for t in texts if "<h3" in t]
    assert headings == ["Active Trading Sessions", "Create New Trading Session"]
    page.close_views()


def _all(widget):
    todo = [widget]
    while todo:
        w = todo.pop(0)
        yield w
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))


def test_detail_shows_risk_state_only_while_trading_and_separates_the_fills_note(store):
    from workbench.domain import Fill
    from workbench.ui.detail import DetailView

    sid = store.create_session(make_config(kind="paper"))
    store.set_state(sid, "running")
    store.save_runner_state(sid, {"risk": {"state": "halted"}})
    v = DetailView(sid, store)
    assert "Risk state:</span> halted (no new orders)" in v.risk_html.value
    assert "Trading state" not in v.risk_html.value
    assert re.sub("<[^>]+>", "|", v.trades_html.value).strip("|") == "no fills yet"  # one message, nothing glued on
    store.add_fill(sid, Fill("c1", "BTC/USDT", "buy", 0.02495, 40_106.4412, 1.0, 0.5,
                             T0 + timedelta(minutes=11), fill_id="f1"))
    for state in ("paused", "stopped"):
        store.set_state(sid, state)
        v.refresh()
        assert "Risk state" not in v.risk_html.value, state  # a paused/ended session does not trade
    html_ = v.trades_html.value
    note, table = html_.split("</div>", 1)
    assert "until then its fills" in note and "no fills yet" not in html_
    assert "wb-fills-table" in table and "40,106.44" in table and "0.02495" in table and "e+0" not in table
    v.close()


def test_numbers_are_readable_and_missing_cells_show_a_dash():
    from workbench.ui.common import fmt_num, frame_table

    assert [fmt_num(x) for x in (40_080.5, 12.3456789, 0.02495, 0.0000123456, 0, 1_234_567.891, None)] == [
        "40,080.50", "12.3457", "0.02495", "0.00001235", "0", "1,234,567.89", ""]
    assert fmt_num(0.1234, ".1%") == "12.3%"
    t = frame_table(pd.DataFrame({"sym": ["A", "B"], "vol": [1.5, float("nan")], "why": ["x", None]}),
                    [("sym", "Symbol", str), ("vol", "Volume", fmt_num), ("why", "Reason", str)])
    assert re.search(r"<th style='text-align:right[^']*'>Volume</th>", t) and "text-align:right'>1.5</td>" in t
    assert t.count(">—</td>") == 2 and "text-align:left'>x</td>" in t


def test_risk_view_values_positions_early_in_the_sample_without_errors(store):
    sid = store.create_session(make_config(kind="paper", symbols=["BTC/USDT", "ETH/USDT"]))
    store.set_state(sid, "running")
    store.heartbeat(sid, "t:1")
    t = T0 + timedelta(minutes=20)  # fewer than the loader's 500 bars since the bundled sample starts
    store.add_equity_points(sid, [(t, 10_000.0, 8_000.0, 2_000.0)])
    store.upsert_position(sid, Position("BTC/USDT", 0.025, 40_000.0))
    store.upsert_position(sid, Position("ETH/USDT", 0.45, 2_200.0))
    view = risk(store)
    assert view.report.problems == [] and view.message.value == ""
    close = sample_bars("BTC/USDT", days=1)["close"].loc[:t].iloc[-1]
    assert view.report.positions.set_index("symbol").loc["BTC/USDT", "price"] == pytest.approx(close)
    assert "—" not in view.parts["liquidity"].value  # the bars were there: volume and volatility are filled in
    view.close()


def test_detail_price_chart_switches_between_the_sessions_symbols(store):
    from workbench.domain import Fill
    from workbench.ui.detail import DetailView

    sid = store.create_session(make_config(kind="paper", symbols=["BTC/USDT", "ETH/USDT"]))
    store.set_state(sid, "running")
    t = T0 + timedelta(minutes=20)
    store.add_equity_points(sid, [(T0 + timedelta(minutes=m), 10_000.0, 10_000.0, 0.0) for m in range(21)])
    for i, (sym, price) in enumerate((("BTC/USDT", 40_100.0), ("ETH/USDT", 2_202.0))):
        t11 = T0 + timedelta(minutes=11)
        store.add_fill(sid, Fill(f"c{i}", sym, "buy", 0.5, price, 1.0, 0.5, t11, fill_id=f"f{i}"))
    v = DetailView(sid, store)
    picker = v.symbol_picker
    assert picker.layout.display != "none" and picker.value == "BTC/USDT"
    assert v.price_chart.fig.data[1].y == (40_100.0,)
    picker.value = "ETH/USDT"  # what a user does
    fig = v.price_chart.fig
    eth = sample_bars("ETH/USDT", days=1)["close"].loc[:t]
    assert fig.layout.title.text == "ETH/USDT: price and fills" and fig.data[0].name == "ETH/USDT"
    assert fig.data[0].y[-1] == pytest.approx(eth.iloc[-1]) and len(fig.data[0].y) == len(eth)
    assert fig.data[1].y == (2_202.0,)  # only that symbol's fills
    v.show_symbol("DOGE/USDT")
    assert "not traded by this session" in v.problem.value and v.symbol == "ETH/USDT"
    v.close()
    one = DetailView(store.create_session(make_config(kind="paper")), store)
    assert one.symbol_picker.layout.display == "none"  # nothing to pick
    one.close()
