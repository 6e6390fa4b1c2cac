"""The operator's console (issue 16): the header on every page, states and risk states in colour, the
detail view's P&L split, trades so far, position ages and breaker usage, and Create leading to the result.
Real stores; the running session is a real Session run by "another process" (tests.kit.ThreadRunner)."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

import ipywidgets as W
import pandas as pd
import pytest

from tests.kit import T0, ThreadRunner, paper_config, wait_until
from workbench.config import make_config
from workbench.execution.ledger import Portfolio
from workbench.store import Store
from workbench.ui import pages as P
from workbench.ui.common import state_badge
from workbench.ui.console import ALERT_KINDS, console_summary, header_html
from workbench.ui.detail import DetailView
from workbench.ui.history import HistoryView
from workbench.ui.positions import breaker_status, pnl_split, position_ages
from workbench.ui.sessions import SessionsView
from workbench.ui.wizard import REVIEW


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'wb.db'}"


@pytest.fixture
def store(url):
    st = Store(url)
    yield st
    st.close()


def text(html_: str) -> str:
    """What a reader sees of some HTML: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub("<[^>]+>", " ", html_))).strip()


def find(widget, css):
    todo = [widget]
    while todo:
        w = todo.pop(0)
        if css in getattr(w, "_dom_classes", ()):
            return w
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    raise AssertionError(f"no widget with class {css}")


def running(store, *, equity=10_500.0, exposure=2_000.0, risk=None, **fields):
    """A session another process runs: state running, fresh heartbeat, one equity point, a checkpoint
    whose risk engine state is ``risk``; ``fields`` go to the config."""
    sid = store.create_session(make_config(kind="paper", **fields))
    store.set_state(sid, "running")
    store.heartbeat(sid, "other:1")
    store.add_equity_points(sid, [(T0 + timedelta(hours=30), equity, equity - exposure, exposure)])
    if risk is not None:
        store.save_runner_state(sid, {"risk": risk})
    return sid


# ---- colours -------------------------------------------------------------------------------------
def test_a_tripped_session_reads_running_halted_in_colour_and_paused_ones_show_no_risk_state():
    badge = state_badge("running", risk_state="halted")
    assert text(badge) == "running · halted"
    assert "wb-state-running" in badge and re.search(r"wb-risk-halted' style='color:#c62828", badge)
    assert text(state_badge("running", risk_state="running")) == "running · normal"  # the engine's RUNNING
    assert "wb-risk-reducing" in state_badge("starting", risk_state="reducing")
    assert text(state_badge("paused", risk_state="halted")) == "paused"  # a paused session does not trade
    assert text(state_badge("running", orphaned=True, risk_state="halted")) == "orphaned ⚠"


# ---- header ------------------------------------------------------------------------------------------
def test_header_sums_equity_day_pnl_exposure_counts_states_and_shows_recent_alerts(store):
    now = datetime.now(timezone.utc)
    a = running(store, risk={"state": "halted", "day_start": 10_800.0, "peak": 11_000.0, "last_equity": 10_500.0})
    b = running(store, equity=5_200.0, exposure=0.0, initial_balance=5_000.0,
                risk={"state": "running", "day_start": 5_000.0, "peak": 5_200.0, "last_equity": 5_200.0})
    store.create_session(make_config(kind="paper"), state="requested")
    store.add_event(a, "circuit_breaker_tripped", "circuit breaker tripped (drawdown): running -> halted")
    store.add_event(b, "error", "poll failed: disk I/O error")
    store.add_event(b, "control", "pause applied")  # not an alert
    s = console_summary(store, clock=lambda: now)
    assert s.equity == pytest.approx(15_700.0) and s.exposure == pytest.approx(2_000.0)
    assert s.day_pnl == pytest.approx((10_500 - 10_800) + (5_200 - 5_000))  # vs the breaker's start-of-day equity
    assert s.by_state == {"running": 2, "requested": 1} and s.by_risk == {"halted": 1, "running": 1}
    assert [(x["session_id"], x["kind"]) for x in s.alerts] == [(b, "error"), (a, "circuit_breaker_tripped")]
    shown = text(header_html(s))
    assert "Equity $15,700" in shown and "Day P&L -$100" in shown and "Exposure $2,000" in shown
    assert "2 running" in shown and "1 requested" in shown and "1 halted 1 normal" in shown
    assert "poll failed: disk I/O error" in shown and "drawdown" in shown
    for i in range(60):  # a halted session rejects every order it is asked for: these must not hide the alerts
        store.add_event(a, "order_rejected", f"buy 0.1 BTC/USDT rejected by state ({i})")
    assert len(console_summary(store, clock=lambda: now).alerts) == 2
    # an hour later the error is no longer recent; the trip stays while the breaker is still tripped
    later = console_summary(store, clock=lambda: now + timedelta(hours=1))
    assert [x["kind"] for x in later.alerts] == ["circuit_breaker_tripped"]
    store.save_runner_state(a, {"risk": {"state": "running", "day_start": 10_500.0, "peak": 10_500.0,
                                         "last_equity": 10_500.0}})  # reset
    assert console_summary(store, clock=lambda: now + timedelta(hours=1)).alerts == []
    from workbench.ops.alerts import ALERT_KIND

    assert ALERT_KIND in ALERT_KINDS
    store.add_event(a, ALERT_KIND, "feed stale for 120 s")  # recorded by the ops alert rules
    assert [x["kind"] for x in console_summary(store, clock=lambda: now).alerts][0] == "alert"
    store.add_event(None, ALERT_KIND, "host: webhook unreachable")  # of no session: the host's own
    assert ("host", "host: webhook unreachable") in [(x["session_id"], x["message"])
                                                     for x in console_summary(store, clock=lambda: now).alerts]
    assert "no alerts" in text(header_html(console_summary(store, clock=lambda: now + timedelta(hours=1))))


def test_every_page_opens_with_the_header(store):
    sid = running(store, risk={"state": "halted", "day_start": 10_000.0, "peak": 10_600.0, "last_equity": 10_500.0})
    pages = [P.sessions_page(store), P.session_page(sid, store), P.risk_page(store), P.history_page(store),
             P.session_page("no-such-id", store)]
    for page in pages:
        head = page.children[0]
        assert "wb-header" in head._dom_classes, page._dom_classes
        shown = text(head.children[1].value)
        assert "Equity $10,500" in shown and "1 running" in shown and "1 halted" in shown, shown
        assert "@media (max-width" in head.children[0].value  # the phone layout travels with the header
    # the session's state reads "running · halted" in the sessions table, the detail and the history
    row = pages[0].views["sessions"].rows[sid]
    assert text(find(row.widget, "wb-state").value) == "running · halted"
    assert "running · halted" in text(find(pages[1], "wb-detail").children[0].value)
    assert "running · halted" in text(pages[3].views["history"].body.children[0].children[-2].value)
    for page in pages:
        page.close_views()


# ---- detail view --------------------------------------------------------------------------------------
def test_detail_of_a_host_run_session_lists_trades_so_far_pnl_split_ages_and_breakers(url, store):
    cfg = paper_config(symbols=["BTC/USDT"], risk={"max_holding_minutes": 600,
                                                   "circuit_breaker": {"max_daily_loss": 0.5, "max_drawdown": 0.4}})
    sid = store.create_session(cfg)
    with ThreadRunner(url, sid) as runner:
        wait_until(lambda: len(store.fills(sid)) >= 1, timeout=30)
        store.send_command(sid, "trip_breaker", {"reason": "test"})
        wait_until(lambda: (store.load_runner_state(sid) or {}).get("risk", {}).get("state") == "halted", timeout=10)
        view = DetailView(sid, store)
        assert not view.handle.local and store.get_session(sid)["state"] == "running"
        ledger = Portfolio.replay_stored(cfg.initial_balance, store.fills(sid), store.orders(sid))
        trades = pd.DataFrame(ledger.trade_log(include_open=True))
        assert len(view.trades) >= len(trades) >= 1  # trades so far (fills may have come since), not 0 until the end
        assert "wb-trades-table" in view.trades_html.value and "until then its fills" not in view.trades_html.value
        assert "running · halted" in text(view.header.value)
        assert re.search(r"Risk state:</span> halted \(no new orders\)", view.risk_html.value)
        assert "class='wb-risk-halted" in view.risk_html.value
        realized, unrealized = pnl_split(view.trades)
        panel = view.limits.value
        assert f"{abs(realized):,.2f}" in text(panel) and f"{abs(unrealized):,.2f}" in text(panel)
        assert "Risk/reward" in text(panel) and "Risk/Reward" in text(view.performance.value)
        assert ("Max holding" in panel and "600 min" in panel) or "no open positions" in panel
        assert "daily loss" in panel and "drawdown" in panel and "Trips at" in panel and "50.00%" in panel
        view.close()
        assert not runner.session.state.is_final  # all of it was read while the session ran


def test_pnl_split_position_ages_and_breaker_usage_are_the_ledgers_and_the_risk_engines_numbers():
    trades = pd.DataFrame([
        {"symbol": "BTC/USDT", "entry_time": T0, "pnl": 120.0, "status": "closed"},
        {"symbol": "BTC/USDT", "entry_time": T0, "pnl": -20.0, "status": "closed"},
        {"symbol": "ETH/USDT", "entry_time": T0 + timedelta(minutes=30), "pnl": 7.5, "status": "open"}])
    assert pnl_split(trades) == (100.0, 7.5)
    ages = position_ages(trades, pd.Timestamp(T0 + timedelta(minutes=120)), 120.0)
    assert list(ages["symbol"]) == ["ETH/USDT"] and ages["age_minutes"].iloc[0] == pytest.approx(90.0)
    assert ages["usage"].iloc[0] == pytest.approx(0.75)
    assert position_ages(trades, pd.Timestamp(T0), None)["usage"].isna().all()  # no limit, no usage
    cfg = make_config(kind="paper", risk={"circuit_breaker": {"max_daily_loss": 0.1, "max_drawdown": 0.2}})
    usage = breaker_status({"last_equity": 9_500.0, "day_start": 10_000.0, "peak": 10_000.0}, cfg)
    assert list(usage["limit"]) == ["daily loss", "drawdown"]
    assert list(usage["now"]) == pytest.approx([0.05, 0.05]) and list(usage["usage"]) == pytest.approx([0.5, 0.25])
    assert breaker_status({}, make_config(kind="paper")).empty  # no breaker configured: nothing to show


# ---- Create leads to the result ---------------------------------------------------------------------------
def to_review(wiz):
    while wiz.step < REVIEW:
        assert wiz.next(), wiz.errors


def test_create_links_the_new_sessions_detail_page_and_a_backtest_shows_its_verdict(store):
    page = P.sessions_page(store)
    wiz = page.views["wizard"]
    wiz.load_config(make_config(symbols=["BTC/USDT"], start="2024-01-01", end="2024-01-03"))
    to_review(wiz)
    wiz.create_button.click()
    bt = wiz.launcher.launched[-1].session_id
    note = find(wiz.result, "wb-create-result").value
    assert f"href='session.ipynb?id={bt}'" in note and "wb-open-detail" in note
    assert re.search(r"Total Return</span> <b>[+-]?\d", note) and "Sharpe" in note and "Max Drawdown" in note
    assert "wb-backtest-result" in {c for w in wiz.result.children for c in w._dom_classes}  # its equity chart
    wiz.load_config(paper_config())
    wiz.goto(0)
    to_review(wiz)
    wiz.create_button.click()
    paper = wiz.launcher.launched[-1].session_id
    assert store.get_session(paper)["state"] == "requested"
    note = find(wiz.result, "wb-create-result").value
    assert f"href='session.ipynb?id={paper}'" in note and "watch it live" in note
    assert page.views["sessions"].selected == paper
    page.close_views()


def test_history_rows_of_trading_sessions_show_the_risk_state(store):
    sid = running(store, risk={"state": "reducing", "day_start": 10_000.0, "peak": 10_600.0, "last_equity": 10_500.0})
    view = HistoryView(store)
    assert "running · reducing" in text(view.body.children[0].children[-2].value)
    store.set_state(sid, "stopped")
    view.refresh()
    assert text(view.body.children[0].children[-2].value) == "stopped"
    table = SessionsView(store)
    assert "wb-scroll-x" in table.table._dom_classes  # a phone scrolls the table, not the page
    table.close()


def test_breaker_usage_shows_while_paused_but_the_trading_state_only_while_trading(store):
    breaker = {"circuit_breaker": {"max_daily_loss": 0.1, "max_drawdown": 0.2}}
    state = {"state": "halted", "day_start": 10_000.0, "peak": 10_000.0, "last_equity": 9_500.0}
    sid = store.create_session(make_config(kind="paper", risk=breaker))
    store.set_state(sid, "running")
    store.save_runner_state(sid, {"risk": state})
    view = DetailView(sid, store, tables_every=1)
    assert "wb-risk-halted" in view.limits.value
    assert re.search(r"daily loss 5\.00% 10\.00% 50%", text(view.limits.value)), text(view.limits.value)
    store.set_state(sid, "paused")
    view.refresh()
    assert "wb-risk-state" not in view.limits.value and "daily loss 5.00% 10.00% 50%" in text(view.limits.value)
    assert "paused" in text(view.header.value) and "halted" not in text(view.header.value)
    view.close()


def test_control_panel_of_a_local_session_reads_its_own_risk_engine(url, store):
    import asyncio

    from tests.kit import until
    from workbench.data import sample_bars
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.session import Session
    from workbench.ui.controls import ControlPanel

    async def main():
        cfg = paper_config()
        bars = {sym: sample_bars(sym, days=2) for sym in cfg.symbols}
        s = Session(cfg, store, feed=ReplayFeed(bars, 3000.0, yield_every=32), poll_interval=0.05)
        s.start()
        await until(lambda: s.state.value == "running")
        panel = ControlPanel(s.id, store, s, refresh=0.05)
        assert text(panel.state_html.value) == "State: running · normal"
        panel.buttons["trip_breaker"].click()
        panel.refresh()
        assert text(panel.state_html.value) == "State: running · halted"
        panel.close()
        s.kill("test over")
        await s.wait()
    asyncio.run(main())


def test_the_header_shows_a_failed_refresh_without_a_key_in_its_text(store):
    from workbench.secrets import register_secret
    from workbench.ui.console import ConsoleHeader

    register_secret("canary-console-key-123")
    header = ConsoleHeader(store, refresh=60)
    try:
        header._failed(RuntimeError("GET https://x.example/api?apiKey=canary-console-key-123 failed"))
        assert "canary-console-key-123" not in header.html.value and "failed" in header.html.value
    finally:
        header.close()
