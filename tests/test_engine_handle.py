"""SessionHandle: a local session in this kernel and a remote one through a real SQLite store (its
runner on another thread with its own store connection, as another process would be)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from tests.kit import FakeClock, ThreadRunner, bars_for, paper_config, until, wait_until
from workbench.config import make_config
from workbench.domain import SessionState
from workbench.engine.commands import BadArguments, Command, CommandRejected
from workbench.engine.feeds import ReplayFeed
from workbench.engine.handle import RESUME_RUN, LocalHandle, RemoteHandle, handle_for
from workbench.engine.host import requested_arming, run_host
from workbench.engine.live import LiveNotArmed, LiveSession, open_session
from workbench.engine.session import Session
from workbench.store import Store, StoreError
from workbench.store.lease import LeaseHeld

S = SessionState
ARMED = {"allow_live": True, "confirmation": "binance:main"}
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def live_config():
    return make_config(kind="live", strategy="momentum", symbols=["BTC/USDT"],
                       data={"source": "ccxt", "exchange": "binance"})


def finished(store):
    cfg = paper_config()
    s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    asyncio.run(s.run())
    return s


# ---- local -----------------------------------------------------------------------------------------
def test_local_handle_acts_now_and_rejects_with_the_reason(store):
    cfg = paper_config()
    s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    h = handle_for(s.id, store, {s.id: s})
    assert isinstance(h, LocalHandle) and h.state is S.CREATED and Command.PAUSE in h.allowed()
    assert h.act("scale_sizing", factor=0.5) == "sizing x0.5" and s.risk.size_factor == 0.5
    with pytest.raises(BadArguments,
                       match=r"missing a required argument: 'symbol'; expected disable_symbol\(symbol: str\)"):
        h.act(Command.DISABLE_SYMBOL)
    with pytest.raises(CommandRejected, match="set_params rejected: .*window"):
        h.act("set_params", params={"fast": 5, "slow": -1, "window": 1})
    with pytest.raises(CommandRejected, match="unknown command 'explode'; known: pause"):
        h.act("explode")
    with pytest.raises(CommandRejected, match="restart makes a new run"):
        h.act("restart")
    with pytest.raises(CommandRejected, match="cannot restart: the session is created"):
        h.restart()
    assert h.act("stop").startswith("stopped before it ran") and h.state is S.STOPPED  # issue 11: ends at once


def test_local_restart_keeps_the_kind_and_a_live_one_must_be_armed_again(store):
    paper_run = finished(store)
    new = LocalHandle(paper_run).restart(start=False, feed=ReplayFeed(bars_for(paper_run.config), None))
    assert type(new.session) is Session and new.kind == "paper" and new.state is S.CREATED
    row = store.get_session(new.session_id)
    assert row["parent_id"] == paper_run.id and row["run_no"] == 2
    assert new.session.poll_interval == paper_run.poll_interval  # the old run's settings are kept
    assert asyncio.run(new.session.run()) is S.COMPLETED
    assert new.session.portfolio.trade_log() == paper_run.portfolio.trade_log()

    live = open_session(live_config(), store, exchange=object(), arming=ARMED)  # never started: no exchange calls
    store.set_state(live.id, S.STOPPED)
    live.state = S.STOPPED  # as an ended run leaves it
    before = len(store.list_sessions())
    with pytest.raises(LiveNotArmed, match=r"cannot restart .*not armed.*binance:main"):
        LocalHandle(live).restart(start=False, exchange=object())
    assert len(store.list_sessions()) == before  # nothing recorded for a refused restart
    again = LocalHandle(live).restart(arming=ARMED, start=False, exchange=object())
    assert isinstance(again.session, LiveSession) and again.kind == "live"  # not a paper session
    assert store.get_session(again.session_id)["parent_id"] == live.id


def test_local_snapshot_is_the_sessions_own_state(store):
    s = finished(store)
    snap = LocalHandle(s).snapshot()
    pf = s.portfolio
    assert snap.state is S.COMPLETED and snap.risk_state == s.risk.state.value and snap.kind == "paper"
    assert snap.cash == pf.cash and snap.equity == pf.equity and snap.exposure == pf.exposure
    expected = pd.DataFrame(pf.trade_log(include_open=True), columns=snap.trades.columns)
    pd.testing.assert_frame_equal(snap.trades, expected)
    assert len(snap.trades) and snap.trades.status.iloc[-1] == "open"
    assert list(snap.positions.symbol) == s._open_symbols()
    assert snap.positions.value.sum() == pytest.approx(pf.exposure)


def eight_hours():
    """A paper config over 8 hours of sample bars (its default feed replays them)."""
    return paper_config(start=START, end=START + timedelta(hours=8))


def uninterrupted_equity(store) -> float:
    ref = Session(eight_hours(), store)
    assert asyncio.run(ref.run()) is S.COMPLETED
    return float(store.get_session(ref.id)["final_equity"])


def orphaned(store, **kwargs) -> Session:
    """A run of :func:`eight_hours` handed back mid-run, after its first fills, as a host shutting down
    leaves it: ORPHANED, checkpointed, no runner."""
    async def main() -> Session:
        s = Session(eight_hours(), store, replay_speed=20000.0, **kwargs)  # 3 ms a bar
        s.start()
        await until(lambda: s.portfolio.fill_count > 0 and s.bars_seen > 60 or s.state.is_final)
        s.hand_back("test: runner gone")
        assert await s.wait() is S.ORPHANED
        return s

    s = asyncio.run(main())
    assert 0 < s.bars_seen < 8 * 60 and store.load_runner_state(s.id)["bars_seen"] == s.bars_seen
    return s


def test_local_resume_run_carries_an_orphaned_run_on_to_the_uninterrupted_result(store, store_url):
    reference = uninterrupted_equity(store)
    old = orphaned(store)
    h = LocalHandle(old, actor="alice")
    assert h.state is S.ORPHANED and {RESUME_RUN, "restart"} <= h.controls()
    dead = Store(store_url)  # a runner that died holding a live lease: no takeover before it expires
    dead.claim_session(old.id, "deadhost:1", ttl=60.0)
    with pytest.raises(LeaseHeld, match="run by deadhost:1 .*only after its lease expires"):
        h.resume_run()
    assert store.get_session(old.id)["state"] == "orphaned"
    dead.release_lease(old.id)
    dead.close()
    with pytest.raises(RuntimeError, match="no running event loop"):
        h.resume_run()  # claimed, then failed: handed back, still resumable
    assert store.get_session(old.id)["state"] == "orphaned"
    assert store.events(old.id).message.str.contains("resume failed: no running event loop; still resumable").any()

    async def main() -> None:
        new = h.resume_run(replay_speed=None)  # as fast as possible from here
        assert new.session_id == old.id and new.session is not old and new.local
        assert new.session.poll_interval == old.poll_interval  # the old run's settings are kept
        assert new.session.portfolio.fill_count == old.portfolio.fill_count  # with its portfolio
        with pytest.raises(CommandRejected, match=f"cannot resume the run of {old.id}: it is starting and its "
                                                  "runner is alive; nothing to resume"):
            h.resume_run()  # the store's compare-and-set: never two runners
        assert await new.session.wait() is S.COMPLETED
        with pytest.raises(CommandRejected, match=r"it is completed \(ended\); restart it for a new run"):
            new.resume_run()

    asyncio.run(main())
    row = store.get_session(old.id)
    assert float(row["final_equity"]) == pytest.approx(reference, rel=1e-12)  # as if never interrupted
    states = store.events(old.id).query("kind == 'state'")
    assert states.message.str.contains("run resumed from its last checkpoint by alice").any()
    assert states.message.str.contains(f"resumed after {old.last_bar}", regex=False).any()


def test_local_resume_run_of_a_live_session_must_be_armed_again(store):
    live = open_session(live_config(), store, exchange=object(), arming=ARMED)  # never started
    store.set_state(live.id, S.ORPHANED)
    live.state = S.ORPHANED
    with pytest.raises(LiveNotArmed, match=rf"cannot resume {live.id}: live trading is not armed.*binance:main"):
        LocalHandle(live).resume_run(start=False, exchange=object())
    assert store.get_session(live.id)["state"] == "orphaned"  # refused before it was claimed
    again = LocalHandle(live).resume_run(arming=ARMED, start=False, exchange=object())
    assert isinstance(again.session, LiveSession) and again.session_id == live.id and again.state is S.STARTING


# ---- remote ----------------------------------------------------------------------------------------
def test_remote_handle_acts_through_store_commands_and_waits_for_the_runner(store, store_url):
    sid = store.create_session(paper_config())
    h = handle_for(sid, store, {})
    assert isinstance(h, RemoteHandle) and not h.local
    with ThreadRunner(store_url, sid):
        wait_until(lambda: h.state is S.RUNNING)
        assert h.act("pause") == "paused" and h.state is S.PAUSED
        assert Command.RESUME in h.allowed() and Command.PAUSE not in h.allowed()
        with pytest.raises(CommandRejected, match="cannot pause: the session is paused; paused allows: "):
            h.act("pause")  # the runner's answer, through the store
        with pytest.raises(BadArguments, match=r"expected scale_sizing\(factor: float, waive: str = ''\)"):
            h.send("scale_sizing", size=2)  # never queued: no runner could apply it
        assert h.act("scale_sizing", factor=0.25) == "sizing x0.25"
        assert h.act("stop", reason="test").startswith("stopping")
        wait_until(lambda: h.state.is_final)
    cmds = store.events(sid)
    assert (cmds.kind == "command").sum() == 2 * 4  # requested + finished, for the four sent


def test_remote_send_rejects_what_no_runner_could_answer_and_act_times_out_on_the_clock(store):
    done = store.create_session(paper_config(), state="completed")
    h = RemoteHandle(done, store)
    with pytest.raises(CommandRejected, match="cannot pause: the session is completed; completed allows: restart"):
        h.send("pause")
    with pytest.raises(CommandRejected, match="unknown command 'explode'"):
        h.send("explode")
    assert store.pending_commands(done) == []
    clock = FakeClock()
    lost = store.create_session(paper_config(), state="running")  # its runner is gone
    slow = RemoteHandle(lost, store, timeout=5.0, poll=0.5, clock=clock.monotonic, sleep=clock.advance)
    with pytest.raises(TimeoutError, match=r"no runner answered pause \(command \d+\) within 5s; it stays queued"):
        slow.act("pause")
    assert clock.monotonic() == pytest.approx(5.0) and len(store.pending_commands(lost)) == 1


def test_remote_restart_requests_the_same_kind_and_re_arms_live(store):
    paper_sid = store.create_session(paper_config(), state="stopped")
    new = RemoteHandle(paper_sid, store).restart()
    row = store.get_session(new.session_id)
    assert row["state"] == "requested" and row["kind"] == "paper" and row["parent_id"] == paper_sid
    with pytest.raises(CommandRejected, match="cannot restart: the session is requested"):
        new.restart()

    live_sid = store.create_session(live_config(), state="killed")
    with pytest.raises(LiveNotArmed, match="not armed"):
        RemoteHandle(live_sid, store).restart()
    again = RemoteHandle(live_sid, store).restart(arming=ARMED)
    row = store.get_session(again.session_id)
    assert row["kind"] == "live" and row["state"] == "requested" and row["run_no"] == 2
    assert requested_arming(store, again.session_id, host_allows_live=True) == ARMED
    assert requested_arming(store, again.session_id, host_allows_live=False)["allow_live"] is False


def test_remote_snapshot_matches_the_local_one(store):
    s = finished(store)
    local, remote = LocalHandle(s).snapshot(), RemoteHandle(s.id, store).snapshot()
    assert remote.state is local.state and remote.risk_state == local.risk_state
    assert remote.cash == pytest.approx(local.cash, rel=1e-12)
    assert remote.equity == pytest.approx(local.equity, rel=1e-12)
    pd.testing.assert_frame_equal(remote.positions, local.positions, check_exact=False, rtol=1e-12)
    assert len(remote.trades) == len(local.trades) > 0
    assert remote.trades.pnl.sum() == pytest.approx(local.trades.pnl.sum(), rel=1e-9)
    assert list(remote.limits.columns) == ["limit", "used", "limit_value", "usage"]


def test_remote_resume_run_requests_the_orphan_back_and_names_the_state_it_refuses(store):
    sid = store.create_session(paper_config(), state="orphaned")
    h = RemoteHandle(sid, store, actor="alice")
    assert {RESUME_RUN, "restart"} <= h.controls()
    assert h.resume_run() is h and h.state is S.REQUESTED and RESUME_RUN not in h.controls()
    last = store.events(sid).query("kind == 'state'").iloc[-1]
    assert last.actor == "alice" and "resume of the run requested by alice" in last.message
    with pytest.raises(CommandRejected, match=r"it is requested already \(waiting for `workbench host`\); cancel"):
        h.resume_run()
    for state, hint in [("completed", r"\(ended\); restart it for a new run of its config"),
                        ("killed", r"\(ended\); restart it"), ("paused", "its runner is alive; resume it to resume "
                                                                         "trading"),
                        ("running", "its runner is alive; nothing to resume")]:
        other = store.create_session(paper_config(), state=state)
        with pytest.raises(CommandRejected, match=rf"cannot resume the run of {other}: it is {state}.*{hint}"):
            RemoteHandle(other, store).resume_run()
        assert store.get_session(other)["state"] == state and RESUME_RUN not in RemoteHandle(other, store).controls()
    with pytest.raises(TypeError, match="a remote resume takes only arming"):
        RemoteHandle(sid, store).resume_run(replay_speed=5.0)

    live = store.create_session(live_config(), state="orphaned")
    with pytest.raises(LiveNotArmed, match="not armed"):
        RemoteHandle(live, store).resume_run()
    assert store.get_session(live)["state"] == "orphaned"
    RemoteHandle(live, store).resume_run(arming=ARMED)
    assert store.get_session(live)["state"] == "requested"
    assert requested_arming(store, live, host_allows_live=True) == ARMED


def test_cancel_request_withdraws_a_resume_and_ends_a_new_run(store):
    old = orphaned(store)
    h = RemoteHandle(old.id, store, actor="bob")
    h.resume_run()
    assert h.cancel_request("not now") is S.ORPHANED and RESUME_RUN in h.controls()  # it may hold positions
    assert "resume request withdrawn by bob: not now" in store.events(old.id).message.iloc[-1]
    with pytest.raises(CommandRejected, match=f"cannot cancel session {old.id}: it is orphaned; only a requested"):
        h.cancel_request()
    new = store.create_session(paper_config(), state="requested")
    assert RemoteHandle(new, store).cancel_request() is S.STOPPED
    with pytest.raises(StoreError, match="it is stopped; only a requested session"):
        RemoteHandle(new, store).cancel_request()


def test_a_host_resumes_a_run_requested_back_from_its_checkpoint(store, store_url):
    """The contract with ``workbench host``: a requested session with a runner checkpoint is resumed from it."""
    reference = uninterrupted_equity(store)
    old = orphaned(store)
    RemoteHandle(old.id, store, actor="alice").resume_run()
    ran = asyncio.run(run_host(store_url, poll=0.05, stop_after=0.3, resume_orphans=False))
    assert ran == [old.id]
    row = store.get_session(old.id)
    assert row["state"] == "completed"
    assert store.events(old.id).message.str.contains(f"resumed after {old.last_bar}", regex=False).any()
    assert float(row["final_equity"]) == pytest.approx(reference, rel=1e-12)
