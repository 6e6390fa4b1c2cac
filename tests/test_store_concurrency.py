"""Several Store objects and processes on one SQLite file see each other's writes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pandas as pd

from tests.kit import both_backends, wait_until
from workbench.config import make_config
from workbench.domain import Fill, Side
from workbench.store import Store


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


@both_backends
def test_two_stores_on_one_file(store, store_url):
    runner, dashboard = store, Store(store_url)
    sid = runner.create_session(make_config(kind="paper"), state="running")
    assert dashboard.get_session(sid)["state"] == "running"
    cmd = dashboard.send_command(sid, "pause", actor="dashboard")
    assert [c["id"] for c in runner.pending_commands(sid)] == [cmd]
    runner.finish_command(cmd, "applied")
    runner.set_state(sid, "paused", actor="runner")
    assert dashboard.get_command(cmd)["status"] == "applied"
    assert dashboard.list_sessions(states=["paused"]).id.tolist() == [sid]
    runner.add_equity_points(sid, pd.Series([1.0], index=[datetime(2024, 1, 1, tzinfo=timezone.utc)]))
    assert len(dashboard.equity(sid)) == 1
    dashboard.close()


COMMANDER = """
    import sys, time
    from workbench.store import Store
    url, sid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    st = Store(url)
    for i in range(n):
        st.send_command(sid, "adjust", {"i": i, "sent": time.time()}, actor="dashboard")
        st.add_event(sid, "note", f"dashboard note {i}", actor="dashboard")
        time.sleep(0.02)
"""


def test_commands_from_another_process_are_seen_quickly(store, store_url):
    """A 'dashboard' process writes commands while this 'runner' polls, applies them and writes its own rows."""
    st = store
    sid = st.create_session(make_config(kind="paper"), state="running")
    n = 30
    proc = spawn(COMMANDER, store_url, sid, str(n))
    seen: list[int] = []
    lags: list[float] = []
    k = 0

    def runner_poll() -> bool:
        """One round of the runner's poll loop; True once every command has been applied."""
        nonlocal k
        for cmd in st.pending_commands(sid):
            lags.append(time.time() - cmd["args"]["sent"])
            seen.append(cmd["args"]["i"])
            st.finish_command(cmd["id"], "applied")
        st.heartbeat(sid, "test:1")
        st.add_fill(sid, Fill("c", "BTC/USDT", Side.BUY, 1.0, 1.0, 0.0, 0.0, datetime.now(timezone.utc),
                              fill_id=f"f{k}"))
        k += 1
        return len(seen) >= n
    wait_until(runner_poll, timeout=60, step=0.05)
    finish(proc)
    assert sorted(seen) == list(range(n)) and seen == sorted(seen)  # all, once, in order
    assert max(lags) < 1.0, f"command latency up to {max(lags):.2f}s"
    assert st.pending_commands(sid) == []
    notes = st.events(sid).query("kind == 'note'")
    assert len(notes) == n and set(notes.actor) == {"dashboard"}
    assert len(st.fills(sid)) == k


WRITER = """
    import sys
    from workbench.config import make_config
    from workbench.store import Store
    url, tag = sys.argv[1], sys.argv[2]
    st = Store(url)  # both processes migrate the same new file at once
    sid = st.create_session(make_config(name=tag))
    for i in range(150):
        st.add_event(sid, "tick", f"{tag} {i}")
        st.heartbeat(sid, tag)
    print(sid)
"""


def test_processes_migrate_and_write_one_new_file_concurrently(store_url):
    procs = [spawn(WRITER, store_url, tag) for tag in ("p1", "p2", "p3")]
    ids = [finish(p).strip() for p in procs]
    st = Store(store_url)
    assert sorted(st.list_sessions().id) == sorted(ids)
    for sid in ids:
        assert (st.events(sid).kind == "tick").sum() == 150
    st.close()
