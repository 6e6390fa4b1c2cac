"""The headless path: `workbench session ...` and `workbench run` against a real SQLite store, the
controlled session run by another thread (its own loop and store connection, as another process)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.kit import FakeClock, ThreadRunner, bars_for, paper_config, until, wait_until
from workbench.cli import main
from workbench.cli.run import EXIT_CODES, Interrupts
from workbench.cli.session import follow_events
from workbench.domain import SessionState
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store
from workbench.store.base import StoreError

S = SessionState
WORKBENCH = shutil.which("workbench", path=str(Path(sys.executable).parent)) or "workbench"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `workbench` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- session commands ---------------------------------------------------------------------------
def test_every_control_reaches_a_session_run_elsewhere_and_prints_json(capsys, store, store_url):
    sid = store.create_session(paper_config())
    db = ("--db", store_url)
    with ThreadRunner(store_url, sid) as runner:
        wait_until(lambda: store.get_session(sid)["state"] == "running")
        code, out, _ = cli(capsys, "session", "pause", sid, *db, "--json")
        assert code == 0 and json.loads(out) == {"session_id": sid, "command": "pause", "args": {},
                                                 "result": "paused", "state": "paused"}
        code, out, err = cli(capsys, "session", "pause", sid, *db)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "cannot pause: the session is paused; paused allows: " in err
        assert cli(capsys, "session", "resume", sid, *db)[1].strip() == "running"
        wait_until(lambda: runner.session.portfolio.fill_count > 0, timeout=30)
        code, out, _ = cli(capsys, "session", "close-all", sid, *db, "--json")
        assert code == 0 and json.loads(out)["command"] == "close_all" and "closing" in json.loads(out)["result"]
        assert cli(capsys, "session", "cancel-all", sid, *db)[0] == 0
        code, out, _ = cli(capsys, "session", "show", sid, *db, "--json")
        shown = json.loads(out)
        assert code == 0 and shown["state"] == "running" and shown["kind"] == "paper"
        assert "kill" in shown["allowed"] and shown["equity"] > 0
        code, out, _ = cli(capsys, "session", "kill", sid, "--reason", "from a shell", *db, "--json")
        assert code == 0 and json.loads(out)["result"].startswith("killing")
        wait_until(lambda: runner.session.state.is_final)
    assert store.get_session(sid)["state"] == "killed"
    killed = store.events(sid)
    assert killed.message.str.contains("killed \\(by cli: from a shell\\)").any()

    code, out, _ = cli(capsys, "session", "trades", sid, "--json", *db)
    trades = json.loads(out)
    assert code == 0 and len(trades) == len(store.trades(sid)) > 0
    assert set(trades[0]) >= {"symbol", "entry_time", "pnl", "status"}
    code, out, _ = cli(capsys, "session", "trades", sid, "--csv", *db)
    from io import StringIO

    frame = pd.read_csv(StringIO(out))
    assert code == 0 and len(frame) == len(trades) and frame.pnl.sum() == pytest.approx(sum(t["pnl"] for t in trades))

    code, out, _ = cli(capsys, "session", "tail", sid, "--json", *db)
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [e["id"] for e in lines] == sorted(store.events(sid).id)
    assert lines[-1]["kind"] == "state" and "killed" in lines[-1]["message"]
    code, out, _ = cli(capsys, "sessions", "list", "--json", *db)  # the old spelling still works
    assert code == 0 and [r["id"] for r in json.loads(out)] == [sid]


def test_bad_input_is_one_line_and_exit_code_2(capsys, store, store_url):
    sid = store.create_session(paper_config(), state="completed")
    live = store.create_session(paper_config(), state="running")  # arguments are checked before queueing
    for argv, fragment in [
        (("session", "stop", "nope"), "no session 'nope'"),
        (("session", "pause", sid), "cannot pause: the session is completed; completed allows: restart"),
        (("session", "act", live, "scale_sizing", "--arg", "size=2"),
         "expected scale_sizing(factor: float, waive: str = '')"),
        (("session", "tail", sid, "--for", "-1"), "--for takes seconds to follow"),
        (("session", "cancel", sid), f"cannot cancel session {sid}: it is completed; only a requested session"),
    ]:
        code, out, err = cli(capsys, *argv, "--db", store_url)
        assert (code, out) == (2, ""), argv
        assert fragment in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert store.pending_commands(live) == [] and store.pending_commands(sid) == []


def test_cancel_ends_a_requested_session_only(capsys, store, store_url):
    sid = store.create_session(paper_config(), state="requested")
    code, out, _ = cli(capsys, "session", "cancel", sid, "--reason", "changed my mind", "--db", store_url, "--json")
    assert code == 0 and json.loads(out) == {"session_id": sid, "state": "stopped"}
    ev = store.events(sid)
    assert ev.kind.iloc[-1] == "cancelled" and ev.data.iloc[-1] == {"reason": "changed my mind"}
    assert "cancelled by cli before a host picked it up" in ev[ev.kind == "state"].message.iloc[-1]
    with pytest.raises(StoreError, match="it is stopped; only a requested session"):
        store.cancel_requested(sid)  # once only: never a second state change
    running = store.create_session(paper_config(), state="running")
    with pytest.raises(StoreError, match="it is running"):
        store.cancel_requested(running)
    assert store.get_session(running)["state"] == "running"


def test_tail_follows_new_events_on_the_injected_clock_and_ends_with_the_session(store):
    sid = store.create_session(paper_config(), state="running")
    clock = FakeClock()
    ticks: list[float] = []

    def sleep(seconds: float) -> None:  # "meanwhile" the runner writes an event, then time passes
        ticks.append(seconds)
        store.add_event(sid, "note", f"tick {len(ticks)}")
        clock.advance(seconds)

    events = list(follow_events(store, sid, follow_for=2.0, poll=0.5, clock=clock.monotonic, sleep=sleep))
    assert ticks == [0.5, 0.5, 0.5, 0.5] and clock.monotonic() == pytest.approx(2.0)
    assert [e["message"] for e in events[1:]] == ["tick 1", "tick 2", "tick 3", "tick 4"]
    assert len({e["id"] for e in events}) == len(events)  # each once

    store.set_state(sid, S.STOPPED)
    later = list(follow_events(store, sid, follow_for=60.0, clock=clock.monotonic, sleep=sleep))
    assert len(later) == len(events) + 1 and len(ticks) == 4  # ended: no waiting at all


# ---- workbench run ------------------------------------------------------------------------------
def run_cli(*args: str, home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.Popen([WORKBENCH, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def test_run_paper_in_the_foreground_prints_metrics_and_exit_code_0(tmp_path, store, store_url):
    cfg = tmp_path / "paper.json"
    cfg.write_text(paper_config(start="2024-01-01", end="2024-01-01T06:00:00Z").to_json())
    proc = run_cli("--config", str(cfg), "--db", store_url, "--json", home=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["state"] == "completed" and doc["exit_code"] == 0 and doc["kind"] == "paper"
    row = store.get_session(doc["session_id"])
    assert row["state"] == "completed" and doc["trade_count"] == row["trade_count"]
    assert doc["metrics"]["sharpe_ratio"] == pytest.approx(row["metrics"]["sharpe_ratio"], nan_ok=True)


def test_run_stops_gracefully_on_one_ctrl_c(tmp_path, store, store_url):
    cfg = tmp_path / "paper.json"
    cfg.write_text(paper_config(start="2024-01-01", end="2024-01-05").to_json())  # 4 days at 600x: minutes
    proc = run_cli("--config", str(cfg), "--db", store_url, "--replay-speed", "600", "--json", home=tmp_path)
    try:
        wait_until(lambda: (store.list_sessions(states=["running"]).id.tolist() or [None])[0], timeout=120)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["state"] == "stopped" and doc["exit_code"] == 0
    assert "stopping" in err and "Ctrl-C again kills" in err and "Traceback" not in err
    assert store.get_session(doc["session_id"])["state"] == "stopped"
    assert store.positions(doc["session_id"]).query("quantity > 0").empty  # stop flattened


def test_a_second_interrupt_kills_and_the_exit_code_says_so(store):
    cfg = paper_config()
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg, days=2), 200.0), poll_interval=0.02)

    async def go() -> SessionState:
        session.start()
        await until(lambda: session.state is S.RUNNING)
        press = Interrupts(session)
        press()  # stop: flatten at the next bar
        assert session.state is S.STOPPING
        press()  # before that bar: kill
        return await session.wait()

    assert asyncio.run(go()) is S.KILLED and EXIT_CODES[S.KILLED] == 3
    assert "killed (by cli: Ctrl-C)" in store.events(session.id).message.iloc[-1]


def test_run_backtest_and_live_arming(capsys, tmp_path, store_url):
    cfg = tmp_path / "bt.json"
    cfg.write_text(paper_config(kind="backtest", start="2024-01-01", end="2024-01-03").to_json())
    code, out, _ = cli(capsys, "run", "--config", str(cfg), "--db", store_url, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "backtest" and doc["trade_count"] > 0
    assert {"sharpe_ratio", "max_drawdown", "total_return"} <= set(doc["metrics"])
    assert Store(store_url).get_session(doc["session_id"])["kind"] == "backtest"

    live = tmp_path / "live.json"
    live.write_text(paper_config(kind="live", data={"source": "ccxt", "exchange": "binance"}).to_json())
    code, out, err = cli(capsys, "run", "--config", str(live), "--db", store_url)
    assert (code, out) == (2, "") and "live trading is not armed" in err and "--allow-live --confirm binance:" in err
    code, _, err = cli(capsys, "run", "--config", str(tmp_path / "missing.json"), "--db", store_url)
    assert code == 2 and "missing.json" in err


# ---- orphans: resume-run and cancel, as an operator's shell runs them (no host running) -----------------
def workbench_session(*argv: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([WORKBENCH, "session", *argv], capture_output=True, text=True, env=env, timeout=120)


def handed_back(store: Store) -> Session:
    """A run handed back mid-run (as a host shutting down leaves it): ORPHANED, with a checkpoint."""
    cfg = paper_config()

    async def go() -> Session:
        s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), 20000.0), poll_interval=0.02)
        s.start()
        await until(lambda: s.bars_seen > 30 or s.state.is_final)
        s.hand_back("test: runner gone")
        assert await s.wait() is S.ORPHANED
        return s

    return asyncio.run(go())


def test_resume_run_and_cancel_from_a_shell_with_no_host_running(capsys, tmp_path, store, store_url):
    sid = handed_back(store).id
    db = ("--db", store_url)

    done = workbench_session("resume-run", sid, *db, "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"session_id": sid, "state": "requested", "checkpoint": True}
    assert "resume of the run requested by cli" in store.events(sid).query("kind == 'state'").message.iloc[-1]

    # no host picks it up: the request is withdrawn, the run stays resumable (it may hold positions)
    cancelled = workbench_session("cancel", sid, "--reason", "not now", *db, "--json", home=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"session_id": sid, "state": "orphaned"}
    ev = store.events(sid)
    assert ev.kind.iloc[-1] == "cancelled" and "resume request withdrawn by cli: not now" in ev.message.iloc[-1]
    assert store.load_runner_state(sid) is not None

    fresh = store.create_session(paper_config(), state="requested")  # a new run: cancelling ends it
    gone = workbench_session("cancel", fresh, *db, home=tmp_path)
    assert gone.returncode == 0 and gone.stdout.strip() == f"session {fresh} cancelled (stopped)", gone.stderr

    code, out, _ = cli(capsys, "session", "show", sid, *db, "--json")  # in-process from here
    assert code == 0 and {"resume_run", "restart"} <= set(json.loads(out)["allowed"])
    for other, fragment in [(fresh, f"cannot resume the run of {fresh}: it is stopped (ended); restart it"),
                            ("nope", "no session 'nope'")]:
        code, out, err = cli(capsys, "session", "resume-run", other, *db)
        assert (code, out) == (2, "") and fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert store.get_session(fresh)["state"] == "stopped"
