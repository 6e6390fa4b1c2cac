"""Sessions table, control panel, detail view and the wizard's Create, driven in-process with a
real SQLite store and real sessions replaying sample bars on the asyncio loop."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from tests.kit import FakeClock, until

pytest.importorskip("ipywidgets")

from workbench.config import make_config  # noqa: E402
from workbench.data import sample_bars  # noqa: E402
from workbench.domain import SessionState  # noqa: E402
from workbench.engine.feeds import ReplayFeed  # noqa: E402
from workbench.engine.session import Session  # noqa: E402
from workbench.metrics import format_metric  # noqa: E402
from workbench.store import schema  # noqa: E402
from workbench.store.store import NotFoundError  # noqa: E402
from workbench.ui import controls, detail, sessions  # noqa: E402
from workbench.ui.launch import LOCAL_SESSIONS  # noqa: E402
from workbench.ui.wizard import REVIEW, Wizard  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def paper(**kw):
    kw.setdefault("symbols", SYMBOLS)
    return make_config(kind="paper", strategy="momentum", params={"window": 20, "entry_threshold": 0.002},
                       risk={"stop_loss": 0.006, "take_profit": 0.01}, sizing={"mode": "percent_equity", "value": 0.4},
                       **kw)


def set_heartbeat(store, session_id, at):
    """Write a heartbeat time directly, as a runner that died at ``at`` leaves it."""
    with store.engine.begin() as conn:
        conn.execute(update(schema.sessions).where(schema.sessions.c.id == session_id).values(heartbeat_at=at))


def session(store, speed=None, days=2, **kw):
    cfg = paper(**kw)
    bars = {s: sample_bars(s, days=days) for s in cfg.symbols}
    return Session(cfg, store, feed=ReplayFeed(bars, speed, yield_every=32), poll_interval=0.05)


# ---- sessions table ---------------------------------------------------------------------------
def test_sessions_table_shows_other_processes_sessions_live_and_flags_orphans(store):
    async def main():
        clock = FakeClock(datetime.now(timezone.utc))  # stands still: heartbeats age only when it is advanced
        view = sessions(store, refresh=0.05, stale_after=30, clock=clock)
        assert view.rows == {} and view.empty.layout.display is None
        # another process: a running session with a fresh heartbeat and one equity point
        sid = store.create_session(paper(name="remote-btc"))
        store.set_state(sid, "running")
        store.heartbeat(sid, "otherhost:42")
        t = datetime(2024, 1, 1, tzinfo=timezone.utc)
        store.add_equity_points(sid, [(t, 10_240.0, 2_040.0, 8_200.0)])
        await until(lambda: sid in view.rows)
        row = view.rows[sid]
        texts = [c.value for c in row.cells]
        assert texts[0] == "Paper" and texts[1] == "remote-btc"
        assert texts[3] == "+$240" and texts[4] == "$8,200"
        assert "running" in texts[2] and "orphaned" not in texts[2]
        assert view.empty.layout.display == "none"
        # a runner that stopped heartbeating long ago is flagged
        stale = store.create_session(paper())
        store.set_state(stale, "running")
        set_heartbeat(store, stale, clock() - timedelta(minutes=1))
        await until(lambda: stale in view.rows and "orphaned" in view.rows[stale].cells[2].value)
        assert "orphaned" not in view.rows[sid].cells[2].value
        # the flag follows the view's clock (not the wall clock): 31 s on, the remote runner's heartbeat is stale too
        clock.advance(31)
        await until(lambda: "orphaned" in view.rows[sid].cells[2].value)
        # finished sessions leave the table
        store.set_state(sid, "completed")
        await until(lambda: sid not in view.rows)
        n = view.ticker.count
        view.close()
        await asyncio.sleep(0.2)
        assert view.ticker.count == n  # closed: no more refreshes
    asyncio.run(main())


def test_selecting_a_row_shows_its_control_panel_and_bad_ids_show_a_message(store):
    sid = store.create_session(paper(), state="requested")
    view = sessions(store)
    view.rows[sid].open.click()
    assert view.selected == sid and view.panel.session_id == sid
    assert view.selection.children[0] is view.panel.widget
    assert all(b.disabled for b in view.panel.buttons.values())  # requested: nothing to control yet
    view.select("nope")
    assert "cannot open session nope" in view.message.value
    view.close()


# ---- control panel -------------------------------------------------------------------------------
def test_local_controls_call_session_methods_and_follow_the_state(store):
    async def main():
        s = session(store, speed=3000.0)  # 50 bars/s: stays running while we click
        s.start()
        await until(lambda: s.state.value == "running")
        p = controls(s.id, session=s, refresh=0.05)
        b = p.buttons
        assert not b["pause"].disabled and b["resume"].disabled and b["restart"].disabled
        b["pause"].click()
        assert s.state.value == "paused" and "pause: paused" in p.message.value
        assert b["pause"].disabled and not b["resume"].disabled
        b["resume"].click()
        assert s.state.value == "running"
        b["scale_sizing"].click()
        b["tighten_stops"].click()
        assert s.risk.size_factor == pytest.approx(0.5) and s.risk.stop_delta == pytest.approx(0.02)
        p.symbol.value = "ETH/USDT"
        b["disable_symbol"].click()
        assert "ETH/USDT" in s.risk.disabled
        b["enable_symbol"].click()
        assert "ETH/USDT" not in s.risk.disabled
        # risk override: bad input is a message, a good one reaches the risk engine
        p.override_limit.value = "max_position"
        p.override_value.value = "2,500"
        p.override_reason.value = ""
        b["risk_override"].click()
        assert "give a reason" in p.message.value and s.risk.overrides == []
        p.override_value.value = "abc"
        p.override_reason.value = "news"
        b["risk_override"].click()
        assert "override value" in p.message.value and s.risk.overrides == []
        p.override_value.value = "2,500"
        b["risk_override"].click()
        assert len(s.risk.overrides) == 1 and s.risk.overrides[0]["changes"] == {"max_position": 2500.0}
        # strategy parameters: a rejected value is shown, not raised
        assert p.act("set_params", params={"window": -3}) is None and "set_params failed" in p.message.value
        p.param_widgets["window"].value = 30
        b["set_params"].click()
        assert s.params["window"] == 30
        # kill asks first
        b["kill"].click()
        assert p.kill_box.layout.display is None and s.state.value == "running"
        p.kill_cancel.click()
        assert p.kill_box.layout.display == "none"
        b["kill"].click()
        p.kill_confirm.click()
        await s.wait()
        assert s.state.value == "killed"
        await until(lambda: p.state == "killed")
        assert not b["restart"].disabled and all(x.disabled for k, x in b.items() if k != "restart")
        b["restart"].click()
        new = p.restarted
        assert new.id != s.id and store.get_session(new.id)["parent_id"] == s.id
        new._kill_reason = "test over"
        new.kill()
        await new.wait()
        p.close()
    asyncio.run(main())


def test_remote_controls_send_commands_and_show_the_runners_answer(store):
    async def main():
        s = session(store, speed=3000.0)
        s.start()
        await until(lambda: s.state.value == "running")
        p = controls(s.id, store, refresh=0.05)  # no local session: store commands
        cmd = p.act("resume")  # running: the runner rejects it
        assert isinstance(cmd, int) and "waiting for the runner" in p.message.value
        await until(lambda: not p.pending)
        assert "resume rejected: cannot resume" in p.message.value
        p.buttons["pause"].click()
        await until(lambda: not p.pending)
        assert "pause applied" in p.message.value and s.state.value == "paused"
        await until(lambda: p.buttons["pause"].disabled and not p.buttons["resume"].disabled)
        assert [c["command"] for c in p.results] == ["resume", "pause"]
        p.buttons["stop"].click()
        await s.wait()
        assert s.state.value in ("stopped", "completed")
        await until(lambda: p.state == s.state.value)
        p.buttons["restart"].click()  # no local session: the host is asked
        new = store.get_session(p.restarted)
        assert new["state"] == "requested" and new["parent_id"] == s.id and new["run_no"] == 2
        p.close()
    asyncio.run(main())


def test_controls_of_an_unknown_session_fail_clearly(store):
    with pytest.raises(NotFoundError, match="no session 'nope'"):
        controls("nope", store)


# ---- detail view --------------------------------------------------------------------------------------
def test_detail_charts_stay_bounded_throttled_and_match_the_store(store):
    async def main():
        s = session(store, days=3)  # 4320 bars at full speed
        v = detail(s.id, store, s, refresh=0.05, window=200)
        s.start()
        t0 = asyncio.get_running_loop().time()
        await s.wait()
        await until(lambda: not v.ticker.running)  # final state seen: the view stops itself
        elapsed = asyncio.get_running_loop().time() - t0
        eq = store.equity(s.id)
        assert len(eq) == 4320
        assert v.equity_chart.points(0) == v.equity_chart.points(1) == 200  # bounded window
        assert v.equity_chart.fig.data[0].y[-1] == pytest.approx(eq["equity"].iloc[-1])
        assert v.equity_chart.fig.data[0].x[-1] == eq.index[-1].to_pydatetime()
        assert v.price_chart.points(0) == 200
        fills = store.fills(s.id)
        btc = fills[fills["symbol"] == "BTC/USDT"]
        n_buys = min((btc["side"] == "buy").sum(), 200)
        assert v.price_chart.points(1) == n_buys > 0
        # throttled: at most one update per min_interval per chart (plus the forced first/last)
        per_chart_max = elapsed / v.equity_chart.min_interval + 3
        assert v.equity_chart.updates <= per_chart_max and v.price_chart.updates <= per_chart_max
        # the metrics shown are the session's own (computed by the one metrics module)
        m = store.get_session(s.id)["metrics"]
        assert v.metrics == m and m["total_return"] == pytest.approx(eq["equity"].iloc[-1] / 10_000 - 1)
        assert format_metric("total_return", m["total_return"]) in v.performance.value
        assert "Max Drawdown" in v.risk_html.value
        trades = store.trades(s.id)
        assert v.trades_html.value.count("<tr>") == min(len(trades), 100) + 1  # newest 100, newest first
        first_row = v.trades_html.value.split("<tbody><tr>")[1]
        assert re.match(rf"<td style='[^']*'>{re.escape(trades['symbol'].iloc[-1])}</td>", first_row), first_row[:120]
        assert "open" in first_row and trades["status"].iloc[-1] == "open"
        assert "feed ended" in v.events_html.value
        assert v.problem.value == ""  # no refresh failed on the way (live metrics, fills, prices)
        v.close()
    asyncio.run(main())


def test_detail_close_stops_updates_while_the_session_runs(store):
    async def main():
        s = session(store, speed=3000.0)
        v = detail(s.id, store, refresh=0.05)
        s.start()
        await until(lambda: v.equity_chart.points(0) > 5)
        await until(lambda: "Total Return" in v.performance.value)  # live metrics while it runs
        assert v.problem.value == "" and s.state.value == "running"
        v.close()
        count, points, updates = v.ticker.count, v.equity_chart.points(0), v.updates
        await asyncio.sleep(0.3)
        assert v.ticker.count == count and not v.ticker.running
        assert v.updates == updates and v.equity_chart.closed and v.equity_chart.points(0) == points
        assert len(store.equity(s.id)) > points  # the session went on, the view did not
        s.kill()
        await s.wait()
    asyncio.run(main())


# ---- wizard Create ----------------------------------------------------------------------------------------
def to_review(wiz):
    while wiz.step < REVIEW:
        assert wiz.next(), wiz.errors


def test_wizard_create_backtest_runs_with_progress_and_shows_the_result(store):
    wiz = Wizard(make_config(symbols=["BTC/USDT"], start="2024-01-01", end="2024-01-04"), store=store)
    to_review(wiz)
    wiz.create_button.click()
    bar, note, result = wiz.result.children
    assert bar.value == bar.max == 3 and bar.bar_style == "success"
    sid = wiz.launcher.launched[-1].session_id
    row = store.get_session(sid)
    assert row["kind"] == "backtest" and row["state"] == "completed" and row["metrics"]
    assert sid in note.value and "Total Return" in result.children[1].value


def test_wizard_create_paper_in_kernel_or_host(store):
    async def main():
        feed = ReplayFeed({"BTC/USDT": sample_bars("BTC/USDT", days=1)}, None)
        wiz = Wizard(paper(symbols=["BTC/USDT"]), store=store, session_kwargs={"poll_interval": 0.05, "feed": feed})
        to_review(wiz)
        wiz.create_button.click()
        out = wiz.launcher.launched[-1]
        assert out.where == "kernel" and LOCAL_SESSIONS[out.session_id] is out.session
        await out.session.wait()
        assert store.get_session(out.session_id)["state"] == "completed"
        wiz.run_in.value = "host"
        wiz.back()
        to_review(wiz)
        wiz.create_button.click()
        out = wiz.launcher.launched[-1]
        assert out.where == "host" and store.get_session(out.session_id)["state"] == "requested"
        assert "requested from workbench host" in wiz.result.children[0].value
    asyncio.run(main())


def test_wizard_create_in_kernel_without_a_loop_shows_the_error(store):
    wiz = Wizard(paper(), store=store)
    to_review(wiz)
    wiz.create_button.click()
    assert "create failed: no running event loop" in wiz.status.value
    assert store.list_sessions().empty


def test_restart_keeps_the_kind_and_a_live_session_is_re_armed_in_the_panel(store):
    live = make_config(kind="live", strategy="momentum", symbols=["BTC/USDT"],
                       data={"source": "ccxt", "exchange": "binance"})
    sid = store.create_session(live, state="stopped")  # run by a host that has ended it
    p = controls(sid, store)
    assert p.restart_confirm.layout.display is None  # shown for a live session only
    assert not p.buttons["restart"].disabled and p.buttons["pause"].disabled  # the commands table's say
    p.buttons["restart"].click()
    assert p.restarted is None and "restart failed: cannot restart" in p.message.value
    assert "binance:main" in p.message.value and len(store.list_sessions()) == 1  # nothing requested
    p.restart_confirm.value = "binance:main"
    p.buttons["restart"].click()
    new = store.get_session(p.restarted)
    assert new["kind"] == "live" and new["state"] == "requested" and new["parent_id"] == sid
    p.close()
    paper_panel = controls(store.create_session(paper(), state="completed"), store)
    assert paper_panel.restart_confirm.layout.display == "none"
    paper_panel.close()


# ---- resume run (orphaned sessions) ----------------------------------------------------------------
def test_resume_run_is_offered_for_orphaned_sessions_only_and_asks_the_host(store):
    for state in SessionState:
        p = controls(store.create_session(paper(), state=state.value), store)
        offered = not p.buttons["resume_run"].disabled
        assert offered is (state is SessionState.ORPHANED), state
        assert (p.buttons["resume_run"].layout.display is None) is offered  # hidden unless offered
        if offered:
            assert not p.buttons["restart"].disabled  # beside Restart
        p.close()
    sid = store.create_session(paper(), state="orphaned")
    p = controls(sid, store, actor="dashboard")
    p.buttons["resume_run"].click()  # no local session: the host is asked
    assert store.get_session(sid)["state"] == "requested"
    assert "resumed from its last checkpoint (requested from workbench host)" in p.message.value
    assert p.buttons["resume_run"].disabled and p.buttons["resume_run"].layout.display == "none"
    last = store.events(sid).query("kind == 'state'").iloc[-1]
    assert last.actor == "dashboard" and "requested by dashboard" in last.message
    assert p.resume_run() is None and "resume run failed: cannot resume the run" in p.message.value
    assert "it is requested already" in p.message.value
    p.close()


def test_resume_run_of_a_live_orphan_is_re_armed_in_the_panel(store):
    live = make_config(kind="live", strategy="momentum", symbols=["BTC/USDT"],
                       data={"source": "ccxt", "exchange": "binance"})
    sid = store.create_session(live, state="orphaned")
    p = controls(sid, store)
    p.buttons["resume_run"].click()
    assert "resume run failed: cannot resume" in p.message.value and "binance:main" in p.message.value
    assert store.get_session(sid)["state"] == "orphaned"  # nothing requested
    p.restart_confirm.value = "binance:main"
    p.buttons["resume_run"].click()
    assert store.get_session(sid)["state"] == "requested"
    p.close()


def test_resume_run_of_a_local_orphan_runs_it_on_in_this_kernel_and_the_views_follow(store):
    async def main():
        s = session(store, speed=3000.0)
        s.start()
        await until(lambda: s.bars_seen > 20)
        s.hand_back("test: runner gone")
        assert (await s.wait()).value == "orphaned"
        LOCAL_SESSIONS[s.id] = s
        view = sessions(store, refresh=0.05, with_detail=True)
        view.rows[s.id].open.click()
        p = view.panel
        assert p.handle.local and not p.buttons["resume_run"].disabled
        p.buttons["resume_run"].click()
        new = LOCAL_SESSIONS[s.id]
        assert new is not s and p.session is new and p.handle.session is new and view.detail.handle is p.handle
        assert new.bars_seen == s.bars_seen and new.portfolio.cash == s.portfolio.cash  # from its checkpoint
        await until(lambda: new.state.value == "running")
        assert "resumed" in view.message.value and p.buttons["resume_run"].disabled
        assert not p.buttons["pause"].disabled  # the panel acts on the resumed run
        p.buttons["pause"].click()
        assert new.state.value == "paused"
        new.kill()
        await new.wait()
        view.close()
        LOCAL_SESSIONS.pop(s.id)
    asyncio.run(main())
