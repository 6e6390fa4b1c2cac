"""The `workbench` command, run as a user would: the installed console script in a subprocess."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.data import resample_bars, sample_bars

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


@pytest.fixture(scope="module")
def csv_5m(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "bars_5m.csv"
    resample_bars(sample_bars("BTC/USDT", days=4), "5m").to_csv(path)
    return path


def test_five_minute_csv_backtests_at_its_own_interval_with_no_config_file(csv_5m, home):
    proc = run("backtest", "--data", str(csv_5m), "--json", "--no-save", home=home)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"]["data"] == {**out["config"]["data"], "source": "csv", "timeframe": "5m"}
    assert out["trade_count"] > 0
    proc = run("backtest", "--data", str(csv_5m), "--timeframe", "1m", "--no-save", home=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"workbench: --timeframe 1m is finer than the 5m bars in {csv_5m} (bars cannot "
                                   "be split); leave --timeframe out to run at 5m, or give a coarser one")


def backtest_args(*flags: str) -> argparse.Namespace:
    from workbench.cli import build_parser

    return build_parser().parse_args(["backtest", "--start", "2024-01-01", "--end", "2024-01-04", *flags])


def test_timeframe_flag_resamples_a_csv_to_a_coarser_interval(csv_5m):
    from workbench.backtest import run_backtest
    from workbench.cli import config_from_args

    config = config_from_args(backtest_args("--data", str(csv_5m), "--timeframe", "1h"))
    assert config.data.timeframe == "1h"
    equity = run_backtest(config, progress=False).equity
    assert (equity.index.to_series().diff().dropna() == pd.Timedelta("1h")).all()
    assert config_from_args(backtest_args("--timeframe", "15m")).data.timeframe == "15m"  # sample data too


def test_unknown_timeframe_with_a_csv_names_the_known_ones(csv_5m, capsys):
    from workbench.cli import main

    assert main(["backtest", "--no-save", "--data", str(csv_5m), "--timeframe", "abc"]) == 2
    assert capsys.readouterr().err.startswith(
        "workbench: --timeframe (data.timeframe): unknown timeframe; use one of 1m, 3m, 5m, 15m")


@pytest.mark.parametrize("flag, value, exit_reason", [
    ("--stop-loss", "0.002", "stop_loss"), ("--take-profit", "0.002", "take_profit"),
    ("--trailing-stop", "0.002", "trailing_stop"),
])
def test_exit_flags_produce_their_exits(flag, value, exit_reason):
    from workbench.backtest import run_backtest
    from workbench.cli import config_from_args

    plain = run_backtest(config_from_args(backtest_args()), progress=False).trades
    config = config_from_args(backtest_args(flag, value))
    assert getattr(config.risk, flag[2:].replace("-", "_")) == float(value)
    trades = run_backtest(config, progress=False).trades
    assert exit_reason not in set(plain["exit_reason"]) and exit_reason in set(trades["exit_reason"])


def test_sizing_slippage_timezone_and_blackout_flags():
    from workbench.backtest import run_backtest
    from workbench.cli import config_from_args

    def trades(*flags: str) -> pd.DataFrame:
        return run_backtest(config_from_args(backtest_args(*flags)), progress=False).trades

    fixed = trades("--sizing", "fixed_quantity:0.01")
    assert len(fixed) and np.allclose(fixed["quantity"], 0.01)
    amount = trades("--sizing", "fixed_amount:1000")
    notional = amount["quantity"] * amount["entry_price"]
    assert len(amount) and np.allclose(notional, 1000, rtol=0.01)  # slippage moves the fill price a little
    cheap, dear = trades("--slippage-bps", "0"), trades("--slippage-bps", "50")
    assert cheap["slippage"].sum() == 0 and dear["slippage"].sum() > 0
    config = config_from_args(backtest_args("--timezone", "America/New_York", "--blackout", "09:30-16:00",
                                            "--blackout", "20:00-20:30"))
    assert config.time.timezone == "America/New_York"
    assert [(w.start, w.end) for w in config.time.blackouts] == [("09:30", "16:00"), ("20:00", "20:30")]
    entries = run_backtest(config, progress=False).trades["entry_time"].dt.tz_convert("America/New_York")
    minutes = entries.dt.hour * 60 + entries.dt.minute
    assert len(entries) and not ((minutes >= 9 * 60 + 30) & (minutes < 16 * 60)).any()
    assert not ((minutes >= 20 * 60) & (minutes < 20 * 60 + 30)).any()


@pytest.mark.parametrize("flags, line", [
    (["--stop-loss", "1.5"], "--stop-loss (risk.stop_loss): Input should be less than 1 (got 1.5)"),
    (["--take-profit", "0"], "--take-profit (risk.take_profit): Input should be greater than 0 (got 0.0)"),
    (["--trailing-stop", "-0.1"], "--trailing-stop (risk.trailing_stop): Input should be greater than 0 (got -0.1)"),
    (["--sizing", "percent_equity:2"], "--sizing (sizing): percent_equity sizing takes a fraction in (0, 1]"),
    (["--sizing", "lots:1"], "--sizing (sizing.mode): Input should be 'fixed_amount', 'percent_equity' or "
                             "'fixed_quantity' (got 'lots')"),
    (["--sizing", "fixed_amount:lots"], "--sizing (sizing.value): Input should be a valid number"),
    (["--sizing", "0.5"], "--sizing takes MODE:VALUE, e.g. percent_equity:0.5, fixed_amount:1000 or "
                          "fixed_quantity:0.1 (got '0.5')"),
    (["--slippage-bps", "-1"], "--slippage-bps (slippage.bps): Input should be greater than or equal to 0"),
    (["--timezone", "Mars/Base"], "--timezone (time.timezone): unknown time zone; use an IANA name"),
    (["--blackout", "12:00"], "--blackout takes HH:MM-HH:MM, e.g. --blackout 12:00-12:30 (got '12:00')"),
    (["--blackout", "12:00-25:00"], "--blackout (time.blackouts.0.end): use HH:MM between 00:00 and 24:00"),
    (["--blackout", "12:00-12:00"], "--blackout (time.blackouts.0): window start and end are equal"),
    (["--timeframe", "7m"], "--timeframe (data.timeframe): unknown timeframe; use one of 1m, 3m, 5m"),
])
def test_bad_flag_values_are_one_line_naming_the_flag(flags, line, capsys):
    from workbench.cli import main

    assert main(["backtest", "--no-save", *flags]) == 2
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1 and err.startswith("workbench: ")


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
                "expected scale_sizing(factor: float, waive: str = '')") in proc.stderr
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
