"""Hosts on several machines share one PostgreSQL store and split the requested sessions through leases.

Each "machine" is a real ``workbench host`` process with its own HOME, data directory and working
directory, on one PostgreSQL database (the server the tests start, tests/pg_kit.py). Fifty short
paper replays are requested while both hosts run; one host is SIGKILLed midway (no hand-back: its
leases are left to expire) and the other takes its sessions over once their leases expire. Every
session completes exactly once: one transition to "completed", and the trades, fills and final equity
of one uninterrupted run (a session run twice, or a second runner beside the first, would repeat
fills or trades and end elsewhere). A session a host claimed but died before starting is run by the next;
a session's last writes never overtake its posted ones (a checkpoint ahead of the fills it counts, left by
a SIGKILL, made the next host refuse the resume).
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.kit import both_backends, lease_expired, paper_config, wait_until
from workbench.domain import SessionState
from workbench.engine.host import run_host
from workbench.engine.session import Session
from workbench.engine.writes import PostingStore
from workbench.paths import numba_cache_dir
from workbench.store import Store

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
SESSIONS, BATCH = 50, 5
LEASE = "3"  # seconds: how soon the survivor may take a dead host's sessions over
PG = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def _config():
    """A short replay (60 one-minute bars) that trades several times."""
    return paper_config(start=START, end=START + timedelta(hours=1), params={"fast": 2, "slow": 5})


def _machine(root: Path, name: str, url: str) -> subprocess.Popen[str]:
    """``workbench host`` on its own "machine": a HOME, data directory and working directory of its own."""
    home = root / name
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "WORKBENCH_HOME": str(home / "workbench"),
           "WORKBENCH_CACHE": str(numba_cache_dir().parent)}  # compiled kernels only: a warm start, not shared state
    argv = [sys.executable, "-m", "workbench.cli", "host", "--db", url, "--poll", "0.1", "--lease-seconds", LEASE,
            "--replay-speed", "1200"]
    return subprocess.Popen(argv, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _claims(store: Store, sid: str) -> list[str]:
    """Who claimed the session, in order (``claimed by host (hostname:pid)`` events)."""
    events = store.events(sid)
    return events.loc[events["message"].str.startswith("claimed by"), "message"].tolist()


@pytest.mark.slow
@PG
def test_two_hosts_split_fifty_sessions_and_one_killed_midway_loses_none_and_runs_none_twice(
        store_url, store, tmp_path):
    ref = Session(_config(), store)
    assert asyncio.run(ref.run()).value == "completed"
    reference = store.get_session(ref.id)
    ref_trades, ref_fills = store.trades(ref.id), store.fills(ref.id)
    assert len(ref_trades) >= 2  # a repeated run would show

    a, b = _machine(tmp_path, "machine-a", store_url), _machine(tmp_path, "machine-b", store_url)
    runner_a, runner_b = f"({os.uname().nodename}:{a.pid})", f"({os.uname().nodename}:{b.pid})"
    try:
        ids: list[str] = []
        for _ in range(SESSIONS // BATCH):  # requested over time, as operators do: both hosts claim some
            batch = [store.create_session(_config(), state="requested") for _ in range(BATCH)]
            ids += batch
            wait_until(lambda batch=batch: all(store.get_session(s)["state"] != "requested" for s in batch), 60,
                       message="both hosts claiming requested sessions")
            assert a.poll() is None and b.poll() is None, (a.poll(), b.poll())
        claimed_by_a = [s for s in ids if runner_a in _claims(store, s)[0]]
        assert 0 < len(claimed_by_a) < SESSIONS  # split between the machines

        def a_is_midway() -> bool:
            states = [store.get_session(s)["state"] for s in claimed_by_a]
            return "running" in states and "completed" in [store.get_session(s)["state"] for s in ids]

        wait_until(a_is_midway, 60, message="machine A running sessions while others have completed")
        a.send_signal(signal.SIGKILL)  # no hand-back: its leases must expire first
        a.wait(30)
        cut_off = [s for s in claimed_by_a if store.get_session(s)["state"] != "completed"]
        assert cut_off

        def states() -> dict[str, str]:
            return {s: store.get_session(s)["state"] for s in ids}

        wait_until(lambda: all(SessionState(st).is_final for st in states().values()), 120, step=0.5,
                   message="every session ended")
        left = {s: st for s, st in states().items() if st != "completed"}
        assert not left, (f"{len(left)} sessions not completed: {left}; the first's events: "
                          f"{store.events(next(iter(left)))[['kind', 'message']].to_string()}")
    finally:
        for host in (a, b):
            if host.poll() is None:
                host.send_signal(signal.SIGTERM)
        _, err_b = b.communicate(timeout=60)
        a.communicate(timeout=60)
    assert b.returncode == 0, err_b[-2000:]

    for sid in ids:
        events = store.events(sid)
        completed = events[(events["kind"] == "state") & events["data"].map(
            lambda d: isinstance(d, dict) and d.get("to") == "completed")]
        assert len(completed) == 1, events[["kind", "message"]]
        trades, fills = store.trades(sid), store.fills(sid)
        assert len(fills) == len(ref_fills) and fills["fill_id"].is_unique
        assert trades["entry_time"].tolist() == ref_trades["entry_time"].tolist()
        assert store.get_session(sid)["final_equity"] == pytest.approx(reference["final_equity"], rel=1e-12)
    for sid in cut_off:  # taken over by the survivor, once
        claims = _claims(store, sid)
        assert len(claims) == 2 and runner_a in claims[0] and runner_b in claims[1], claims


@both_backends
def test_a_session_claimed_by_a_host_that_died_before_starting_it_is_run_by_the_next_host(store_url, store):
    sid = store.create_session(_config(), state="requested")
    with Store(store_url) as dead:  # a host's claim (lease taken, state "created"), then the host is gone
        assert dead.claim_session(sid, "machine-a:1", ttl=0.05, expect=["requested"], state="created", actor="host")
    wait_until(lambda: lease_expired(store, sid), 5)
    ran = asyncio.run(run_host(store_url, poll=0.05, stop_after=0.5))
    assert ran == [sid]
    assert store.get_session(sid)["state"] == "completed", store.events(sid)[["kind", "message"]]


def test_a_write_made_while_draining_queues_behind_the_posted_ones(store):
    """A session's poll task may checkpoint while its bar loop drains the writer queue: that write must
    not go to the store ahead of the posted writes (it would commit a checkpoint before its fills)."""
    sid = store.create_session(_config())
    gate = threading.Event()

    async def scenario() -> None:
        posting = PostingStore(store, on_error=lambda e: None)
        posting.start()
        posting.post(lambda: (gate.wait(10), store.add_event(sid, "note", "posted first")))
        draining = asyncio.ensure_future(posting.drain_async())
        await asyncio.sleep(0)  # the drain is waiting for the queue
        posting.add_event(sid, "note", "written while draining")
        gate.set()
        await draining

    asyncio.run(scenario())
    notes = store.events(sid).sort_values("id")
    assert notes.loc[notes["kind"] == "note", "message"].tolist() == ["posted first", "written while draining"]
