"""A host that shuts down hands its sessions back: SIGTERM/SIGINT to a real ``workbench host``, or an
error in its loop, leaves each running session ORPHANED (resumable, positions and resting orders kept,
never KILLED) and the next host, with its default flags, resumes it from its checkpoint to the end.
A killed ``workbench up`` takes its children with it (:func:`workbench.serve.spawn`)."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from tests.kit import paper_config, until, wait_until
from workbench.engine.host import run_host
from workbench.engine.session import Session
from workbench.store import Store

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
HANDED_BACK = "host shut down: handed back, resumable"


def _config():
    return paper_config(start=START, end=START + timedelta(hours=8))


def _reference_equity(store: Store) -> float:
    """The final equity of an uninterrupted in-process run of :func:`_config`."""
    ref = Session(_config(), store)
    assert asyncio.run(ref.run()).value == "completed"
    return float(store.get_session(ref.id)["final_equity"])


def _holding(store: Store, sid: str) -> bool:
    """Running, with a position in its stored checkpoint."""
    state = store.load_runner_state(sid)
    return store.get_session(sid)["state"] == "running" and state is not None and any(
        float(p["quantity"]) > 0 for p in state["portfolio"]["positions"].values())


def _assert_handed_back(store: Store, sid: str) -> dict:
    """ORPHANED, never killed, nothing flattened or canceled. The strategy may have closed its position on
    its own between the test's look and the hand-back, so "kept" is checked as: the checkpoint's positions
    are the stored positions, no trade ended by ``close_all``/``end``, and (in the callers) a resumed run
    ends exactly where an uninterrupted one does."""
    row = store.get_session(sid)
    assert row["state"] == "orphaned", store.events(sid)[["kind", "message"]].tail(5)
    assert row["runner"] is None
    events = store.events(sid)
    assert (events["message"] == HANDED_BACK).any()
    assert not events["message"].str.contains("killed").any()
    assert not (events["kind"] == "orders_canceled").any()  # resting orders kept
    state = store.load_runner_state(sid)
    assert state is not None
    held = {s: float(p["quantity"]) for s, p in state["portfolio"]["positions"].items() if float(p["quantity"]) > 0}
    stored = store.positions(sid)
    stored = {str(s): float(q) for s, q in zip(stored["symbol"], stored["quantity"]) if float(q) > 0}
    assert stored == held  # the checkpoint is the store's truth
    trades = store.trades(sid)
    assert not trades["exit_reason"].isin(["close_all", "end"]).any(), trades["exit_reason"].tolist()
    return state


def _resume_with_a_next_host(store_url: str, store: Store, sid: str, reference: float, checkpoint: dict) -> None:
    ran = asyncio.run(run_host(store_url, poll=0.05, stop_after=0.3, resume_orphans=True))
    assert ran == [sid]
    row = store.get_session(sid)
    assert row["state"] == "completed"
    events = store.events(sid)
    assert events["message"].str.contains(f"resumed after {checkpoint['last_bar']}", regex=False).any()
    assert float(row["final_equity"]) == pytest.approx(reference, rel=1e-12)  # as if never interrupted


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_host_hands_its_session_back_and_the_next_host_finishes_it(sig, store_url, store):
    reference = _reference_equity(store)
    sid = store.create_session(_config(), state="requested")
    host = subprocess.Popen([sys.executable, "-m", "workbench.cli", "host", "--db", store_url, "--poll", "0.1",
                             "--replay-speed", "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: host.poll() is not None or _holding(store, sid), timeout=60,
                   message="the hosted session holding a position")
        assert host.poll() is None, host.communicate()[1]
        host.send_signal(sig)
        out, err = host.communicate(timeout=30)
    finally:
        if host.poll() is None:
            host.kill()
    assert host.returncode == 0, err
    checkpoint = _assert_handed_back(store, sid)
    assert checkpoint["bars_seen"] < 8 * 60  # it really was mid-run
    _resume_with_a_next_host(store_url, store, sid, reference, checkpoint)


def test_an_error_in_the_hosts_loop_hands_sessions_back(store_url, store, monkeypatch):
    reference = _reference_equity(store)
    sid = store.create_session(_config(), state="requested")
    broken = {"on": False}
    list_sessions = Store.list_sessions

    def failing(self, *args, **kwargs):
        if broken["on"]:
            raise OSError("disk I/O error")
        return list_sessions(self, *args, **kwargs)

    monkeypatch.setattr(Store, "list_sessions", failing)

    async def main() -> None:
        host = asyncio.get_running_loop().create_task(
            run_host(store_url, poll=0.05, session_kwargs={"replay_speed": 3000.0}))
        await until(lambda: _holding(store, sid), timeout=30)
        broken["on"] = True
        with pytest.raises(OSError, match="disk I/O error"):
            await host

    asyncio.run(main())
    monkeypatch.setattr(Store, "list_sessions", list_sessions)
    checkpoint = _assert_handed_back(store, sid)
    _resume_with_a_next_host(store_url, store, sid, reference, checkpoint)


def test_host_resumes_orphans_by_default_now_that_sessions_hold_a_lease():
    from workbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["host"]).resume_orphans is True
    assert parser.parse_args(["host", "--no-resume-orphans"]).resume_orphans is False


STAND_IN = """
import sys, time
from workbench.serve import spawn
child = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_child_spawned_by_up_dies_when_up_is_killed(tmp_path):
    up = subprocess.Popen([sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert up.stdout is not None
        child = int(up.stdout.readline())
        assert not _gone(child)
        up.kill()  # SIGKILL: no handler of `up` runs
        up.wait()
        wait_until(lambda: _gone(child), timeout=5, message=f"child {child} gone after its parent was killed")
    finally:
        if up.poll() is None:
            up.kill()
        if child and not _gone(child):  # only if the test failed
            psutil.Process(child).kill()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_a_killed_up_takes_host_and_voila_with_it_and_the_host_hands_its_session_back(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    from workbench.paths import default_db_url

    store = Store(default_db_url())
    sid = store.create_session(_config(), state="requested")
    with open(tmp_path / "up.log", "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "workbench.cli", "up", "--no-seed", "--replay-speed", "3000"],
                              stdout=log, stderr=subprocess.STDOUT)
    children: list[psutil.Process] = []
    try:
        wait_until(lambda: up.poll() is not None or _holding(store, sid), timeout=90,
                   message="the session run by up's host holding a position")
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        children = psutil.Process(up.pid).children()
        assert len(children) == 2, [c.cmdline() for c in children]  # host and Voilà
        up.kill()  # SIGKILL: up's own cleanup never runs
        up.wait()
        wait_until(lambda: all(_gone(c.pid) for c in children), timeout=20,
                   message="host and Voilà gone after up was killed")
    finally:
        if up.poll() is None:
            up.kill()
        for child in children:  # none are left unless the test failed
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    checkpoint = _assert_handed_back(store, sid)
    _resume_with_a_next_host(default_db_url(), store, sid, _reference_equity(store), checkpoint)
    store.close()
