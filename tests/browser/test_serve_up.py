"""``workbench up`` as a user runs it: real Voilà and ``workbench host`` subprocesses, pages over HTTP."""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

import nbformat
import psutil
import pytest

from workbench.serve import PAGES, dashboards_dir, seed_store, voila_command
from workbench.store import Store

from .conftest import WORKBENCH, start_up, stop_up


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as resp:
        assert resp.status == 200
        return resp.read().decode()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_up_seeds_serves_every_page_without_sources_and_ctrl_c_stops_both(tmp_path):
    up = start_up(tmp_path / "home")
    try:
        assert "recorded demo backtest" in up.output() and "started demo paper session" in up.output()
        history = Store(up.db_url).history()
        # a first-time user has something to look at, and something live: the host runs the demo paper session
        assert sorted(history["kind"]) == ["backtest", "paper"]
        demo = str(history[history["kind"] == "paper"]["id"].iloc[0])
        deadline = time.monotonic() + 60
        while Store(up.db_url).get_session(demo)["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert Store(up.db_url).get_session(demo)["state"] == "running"
        kids = {" ".join(p.cmdline()) for p in psutil.Process(up.proc.pid).children()}
        assert any("workbench.cli host" in c for c in kids) and any(" voila " in f" {c} " for c in kids), kids
        for page in PAGES:
            html = get(up.url(page, f"id={history['id'].iloc[0]}" if page == "session" else ""))
            assert "from workbench.ui" not in html, f"{page}: sources are not stripped"
            assert "Traceback" not in html and "error when executing" not in html, f"{page} shows an error"
        procs = psutil.Process(up.proc.pid).children(recursive=True)
    finally:
        code = stop_up(up)
    assert code == 0, up.output()
    assert "stopping" in up.output()
    gone, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive, [p.cmdline() for p in alive]  # host, Voilà and every kernel ended with it
    assert not listening(up.port)


@pytest.mark.slow
def test_up_hides_tracebacks_of_a_failing_dashboard(tmp_path):
    dash = tmp_path / "dash"
    dash.mkdir()
    for page in PAGES:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('secret-internal-detail')")])
        nbformat.write(nb, dash / f"{page}.ipynb")
    up = start_up(tmp_path / "home", "--dashboards", str(dash), "--no-host", "--no-seed")
    try:
        html = get(up.url("sessions"))
    finally:
        assert stop_up(up) == 0
    assert "error when executing cell" in html  # rendered, the user is told something went wrong ...
    assert "secret-internal-detail" not in html and "Traceback" not in html  # ... but not the internals
    assert len(Store(up.db_url).list_sessions()) == 0  # --no-seed: no demo backtest, no demo session


def test_seed_only_fills_an_empty_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    first = seed_store(url)
    assert first is not None and seed_store(url) is None
    assert list(Store(url).history()["id"]) == [first]


def test_missing_dashboards_is_one_clear_error(tmp_path):
    proc = subprocess.run([WORKBENCH, "up", "--dashboards", str(tmp_path), "--home", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no dashboards at" in proc.stderr and "--dashboards" in proc.stderr


def test_a_busy_port_is_one_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([WORKBENCH, "up", "--port", str(port), "--home", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in proc.stderr, proc.stderr


def test_voila_serves_only_loopback_without_sources_or_tracebacks():
    cmd = voila_command(dashboards_dir(), 8123)
    assert "--Voila.ip=127.0.0.1" in cmd and "--no-browser" in cmd and "--port=8123" in cmd
    assert "--strip_sources=True" in cmd and "--show_tracebacks=False" in cmd
    assert "--Voila.port_retries=0" in cmd  # never serve on another port than the URL printed


def test_replay_speed_reaches_the_hosts_sessions(tmp_path):
    """`workbench up --replay-speed K` -> `workbench host --replay-speed K` -> sessions replay at K x real time."""
    import asyncio
    import time

    from workbench.config import make_config
    from workbench.engine.session import Session
    from workbench.serve import host_command

    assert "--replay-speed=600.0" in host_command(0.5, 600.0) and not any("replay" in a for a in host_command())
    store = Store(f"sqlite:///{tmp_path / 'wb.db'}")
    config = make_config(kind="paper", symbols=["BTC/USDT"], start="2024-01-01 00:00", end="2024-01-01 00:05")

    async def run(speed: float | None) -> tuple[float, str]:
        t0 = time.monotonic()
        state = await Session(config, store, replay_speed=speed).run()
        return time.monotonic() - t0, state.value

    asyncio.run(run(None))  # warm: imports, strategy setup
    (fast, s1), (paced, s2) = asyncio.run(run(None)), asyncio.run(run(600.0))  # 6 one-minute bars: 5 x 0.1 s
    assert s1 == s2 == "completed"
    assert paced >= 0.5 and paced - fast >= 0.35, (fast, paced)
    proc = subprocess.run([WORKBENCH, "host", "--replay-speed", "0"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WORKBENCH_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "--replay-speed must be positive" in proc.stderr
