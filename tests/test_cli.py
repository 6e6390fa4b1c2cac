"""The `workbench` command, run as a user would: the installed console script in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.data import sample_bars

WORKBENCH = shutil.which("workbench", path=str(Path(sys.executable).parent)) or "workbench"


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([WORKBENCH, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wbhome")


@pytest.fixture(scope="module")
def json_run(home):
    proc = run("backtest", "--strategy", "momentum", "--symbols", "BTC/USDT,ETH/USDT",
               "--start", "2024-01-01", "--end", "2024-01-15", "--param", "window=30", "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_backtest_json_prints_config_metrics_and_trade_count(json_run):
    assert json_run["config"]["strategy"] == "momentum"
    assert json_run["config"]["params"]["window"] == 30
    assert json_run["config"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    for key in ("sharpe_ratio", "max_drawdown", "value_at_risk", "expected_shortfall", "calmar_ratio",
                "profit_factor", "win_rate", "total_return", "annualized_return"):
        assert key in json_run["metrics"]
    assert json_run["trade_count"] > 0
    assert json_run["metrics"]["trade_count"] == json_run["trade_count"]


def test_backtest_is_recorded_and_listed_in_history(json_run, home):
    proc = run("sessions", "list", home=home)
    assert proc.returncode == 0, proc.stderr
    assert json_run["session_id"] in proc.stdout
    assert "momentum" in proc.stdout.lower() and "backtest" in proc.stdout.lower()
    assert (home / "workbench.db").exists()


def test_backtest_from_csv_file(tmp_path, home):
    bars = sample_bars("ETH/USDT", days=3)
    csv = tmp_path / "eth.csv"
    frame = bars.reset_index().rename(columns={"time": "Date"})
    frame["Date"] = frame["Date"].dt.strftime("%d/%m/%Y %H:%M")
    frame.to_csv(csv, index=False)
    proc = run("backtest", "--strategy", "sma_cross", "--data", str(csv), "--json", "--no-save", home=home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"]["data"]["source"] == "csv" and out["session_id"] is None
    assert out["trade_count"] > 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--param", "window"], "--param takes key=value"),
        (["--param", "window=-3"], "param 'window'"),
        (["--symbols", "btcusdt"], "BASE/QUOTE"),
        (["--start", "2024-02-01", "--end", "2024-01-01"], "end"),
        (["--data", "/nonexistent/bars.csv"], "bars.csv"),
    ],
)
def test_bad_input_is_one_clear_line_not_a_traceback(args, fragment, home):
    proc = run("backtest", "--no-save", *args, home=home)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_host_runs_a_requested_session_to_completion(home, store, store_url, config):
    config = config.replace(start="2024-01-01", end="2024-01-01T06:00:00Z")
    session_id = store.create_session(config, state="requested")
    proc = run("host", "--db", store_url, "--poll", "0.2", "--stop-after", "3", home=home)
    assert proc.returncode == 0, proc.stderr
    assert "ran 1 session" in proc.stdout
    session = store.get_session(session_id)
    assert session["state"] == "completed"
    assert session["trade_count"] is not None


def test_saved_config_is_the_base_and_given_flags_win(tmp_path):
    from workbench.cli import build_parser, config_from_args
    from workbench.config import make_config

    saved = make_config(strategy="sma_cross", params={"fast": 5}, initial_balance=500, symbols=["ETH/USDT"])
    path = tmp_path / "saved.json"
    path.write_text(saved.to_json())
    parser = build_parser()
    same = config_from_args(parser.parse_args(["backtest", "--config", str(path)]))
    assert same == saved
    changed = config_from_args(parser.parse_args(["backtest", "--config", str(path), "--symbols", "BTC/USDT",
                                                  "--param", "slow=40"]))
    assert changed.symbols == ["BTC/USDT"] and changed.initial_balance == 500
    assert changed.strategy == "sma_cross" and changed.params == {"fast": 5, "slow": 40}
    other = config_from_args(parser.parse_args(["backtest", "--config", str(path), "--strategy", "momentum"]))
    assert other.strategy == "momentum" and other.initial_balance == 500 and "window" in other.params


# ---- session controls from a shell --------------------------------------------------------------
def test_sessions_act_restart_and_show_from_a_shell(home, store, store_url, config):
    import asyncio
    import threading

    from tests.kit import bars_for, wait_until
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.session import Session
    from workbench.store import Store

    runner_store = Store(store_url)  # the runner: another thread with its own connection
    session = Session(config, runner_store, feed=ReplayFeed(bars_for(config), 20.0), poll_interval=0.05)
    thread = threading.Thread(target=lambda: asyncio.run(session.run()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: store.get_session(session.id)["state"] == "running")
        proc = run("sessions", "act", session.id, "pause", "--db", store_url, home=home)
        assert proc.returncode == 0 and proc.stdout.strip() == "paused", proc.stderr
        proc = run("sessions", "act", session.id, "scale_sizing", "--arg", "factor=0.5", "--arg", "size=2",
                   "--db", store_url, home=home)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert ("bad arguments for scale_sizing: got an unexpected keyword argument 'size'; "
                "expected scale_sizing(factor: float)") in proc.stderr
        proc = run("sessions", "act", session.id, "set_params", "--arg", 'params={"fast": 4}', "--db", store_url,
                   home=home)
        assert proc.returncode == 0 and "'fast': 4" in proc.stdout, proc.stderr
        proc = run("sessions", "act", session.id, "stop", "--db", store_url, home=home)
        assert proc.returncode == 0 and proc.stdout.startswith("stopping"), proc.stderr
    finally:
        thread.join(20)
        runner_store.close()
    assert session.params["fast"] == 4 and session.state.value == "stopped"

    proc = run("sessions", "act", session.id, "pause", "--db", store_url, home=home)
    assert proc.returncode == 2 and "cannot pause: the session is stopped; stopped allows: restart" in proc.stderr
    proc = run("sessions", "act", session.id, "explode", "--db", store_url, home=home)
    assert proc.returncode == 2 and "invalid choice: 'explode'" in proc.stderr
    proc = run("sessions", "act", session.id, "pause", "--arg", "oops", "--db", store_url, home=home)
    assert proc.returncode == 2 and "--arg takes key=value, e.g. --arg factor=0.5 (got 'oops')" in proc.stderr
    proc = run("sessions", "act", "nope", "pause", "--db", store_url, home=home)
    assert proc.returncode == 2 and "no session 'nope'" in proc.stderr and "Traceback" not in proc.stderr

    proc = run("sessions", "show", session.id, "--db", store_url, home=home)
    assert proc.returncode == 0 and "(paper): stopped" in proc.stdout and "allowed now: restart" in proc.stdout
    proc = run("sessions", "restart", session.id, "--db", store_url, home=home)
    assert proc.returncode == 0, proc.stderr
    new_id = proc.stdout.split(" requested as ")[1].split()[0]
    row = store.get_session(new_id)
    assert row["state"] == "requested" and row["kind"] == "paper" and row["parent_id"] == session.id


def test_sessions_act_without_a_runner_times_out_clearly(home, store, store_url, config):
    sid = store.create_session(config, state="running")  # its runner is gone
    proc = run("sessions", "act", sid, "pause", "--timeout", "0.2", "--db", store_url, home=home)
    assert proc.returncode == 2 and "no runner answered pause" in proc.stderr and "it stays queued" in proc.stderr


def test_session_commands_control_a_host_run_session_with_no_dashboards(home, store, store_url, config):
    import signal

    from tests.kit import wait_until

    sid = store.create_session(config, state="requested")
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    host = subprocess.Popen([sys.executable, "-m", "workbench.cli", "host", "--db", store_url, "--poll", "0.1",
                             "--replay-speed", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        wait_until(lambda: store.get_session(sid)["state"] == "running", timeout=120)
        proc = run("session", "pause", sid, "--json", "--db", store_url, home=home)
        assert proc.returncode == 0 and json.loads(proc.stdout)["state"] == "paused", proc.stderr
        proc = run("session", "show", sid, "--json", "--db", store_url, home=home)
        allowed = json.loads(proc.stdout)["allowed"]
        assert proc.returncode == 0 and "resume" in allowed and "pause" not in allowed and "kill" in allowed
        proc = run("session", "kill", sid, "--reason", "dashboards down", "--json", "--db", store_url, home=home)
        assert proc.returncode == 0 and json.loads(proc.stdout)["result"].startswith("killing"), proc.stderr
        wait_until(lambda: store.get_session(sid)["state"] == "killed", timeout=30)
        proc = run("session", "tail", sid, "--json", "--db", store_url, home=home)
        kinds = [json.loads(line)["kind"] for line in proc.stdout.splitlines()]
        assert proc.returncode == 0 and kinds[-1] == "state" and kinds.count("command") >= 4
    finally:
        host.send_signal(signal.SIGINT)
        try:
            host.communicate(timeout=30)
        finally:
            host.kill()
