"""A real ``workbench up`` (``workbench host`` + Voilà over the repository's dashboards) for the tests here."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from workbench.serve import free_port, page_url, url_token

WORKBENCH = shutil.which("workbench", path=str(Path(sys.executable).parent)) or "workbench"
REPLAY_SPEED = 1200  # 20 one-minute bars a second: a paper session runs for hours, equity points arrive at once
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


@dataclass
class Served:
    """A running ``workbench up``: its process, port, data directory, the token in the URL it printed
    (None: served without one) and everything it printed."""

    proc: subprocess.Popen[str]
    port: int
    home: Path
    lines: list[str] = field(default_factory=list)
    token: str | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'workbench.db'}"

    def url(self, page: str = "sessions", query: str = "") -> str:
        """The URL of dashboard ``page``, with the token (a browser opening it is logged in)."""
        return page_url(self.port, page, query, token=self.token)

    def output(self) -> str:
        return "".join(self.lines)


def start_up(home: Path, *args: str, ready_timeout: float = 120.0, env: Mapping[str, str] | None = None) -> Served:
    """Start ``workbench up --home HOME --port FREE ARGS`` (with ``env`` added to the environment) and
    return once it printed the dashboards' URL."""
    port = free_port()
    proc = subprocess.Popen([WORKBENCH, "up", "--home", str(home), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    served = Served(proc, port, home)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keep reading, or a chatty child blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            served.lines.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=ready_timeout)
        except queue.Empty:
            stop_up(served)
            raise RuntimeError(f"workbench up printed no URL within {ready_timeout} s:\n{served.output()}") from None
        if line is None:
            raise RuntimeError(f"workbench up exited ({proc.wait()}):\n{served.output()}")
        if "dashboards at http" in line:
            served.token = url_token(line)
            return served


def stop_up(served: Served, timeout: float = 30.0) -> int:
    """Ctrl-C ``workbench up`` as a terminal would and wait for it; returns its exit code."""
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGINT)
        try:
            served.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            served.proc.kill()
            served.proc.wait()
    return int(served.proc.returncode)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell a failed test (and screenshot it)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``workbench up`` on a free port with a fresh data directory, for one test module; its host replays
    paper sessions at :data:`REPLAY_SPEED` so they are still running while a test drives them."""
    up = start_up(tmp_path_factory.mktemp("wbhome"), "--replay-speed", str(REPLAY_SPEED))
    try:
        yield up
    finally:
        stop_up(up)
