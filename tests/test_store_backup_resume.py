"""Backup mid-run, crash, restore, resume: a session backed up while a real ``workbench host`` ran it,
the host then killed (SIGKILL) and the store restored from the backup, is resumed by the next host
from the backup's checkpoint and ends exactly as an uninterrupted run (its fills replayed forward)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from tests.kit import lease_expired, paper_config, wait_until
from workbench.engine.host import run_host
from workbench.engine.session import Session
from workbench.store import Store

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


def _bars_seen(store: Store, sid: str) -> int:
    return int((store.load_runner_state(sid) or {}).get("bars_seen", 0))


@pytest.mark.slow
def test_backup_mid_run_then_crash_restore_and_resume_ends_as_an_uninterrupted_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    cfg = paper_config(start=START, end=START + timedelta(hours=12))
    store = Store(url)
    reference = Session(cfg, store)
    assert asyncio.run(reference.run()).value == "completed"
    want = float(store.get_session(reference.id)["final_equity"])

    sid = store.create_session(cfg, state="requested")
    host = subprocess.Popen([sys.executable, "-m", "workbench.cli", "host", "--db", url, "--poll", "0.05",
                             "--replay-speed", "1500", "--lease-seconds", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    backup = tmp_path / "backup.db"
    try:
        wait_until(lambda: host.poll() is not None or _bars_seen(store, sid) > 60, timeout=60,
                   message="the host running the session")
        done = _cli("store", "backup", str(backup), "--db", url, "--json")
        assert done.returncode == 0, done.stderr
        at_backup = Store(f"sqlite:///{backup}")
        saved = _bars_seen(at_backup, sid)
        at_backup.close()
        assert saved > 0
        wait_until(lambda: host.poll() is not None or _bars_seen(store, sid) > saved + 60, timeout=60,
                   message="the session running on past the backup")
        assert host.poll() is None, host.communicate()[1]
    finally:
        host.kill()  # SIGKILL: the store is left mid-run
        host.wait()
    assert store.get_session(sid)["state"] == "running" and _bars_seen(store, sid) > saved
    store.close()

    with Store(url) as live:  # the killed host's lease (the backup's is older)
        wait_until(lambda: lease_expired(live, sid), timeout=10, message="the killed host's lease expired")
    restored = _cli("store", "restore", str(backup), "--db", url, "--json")
    assert restored.returncode == 0, restored.stderr

    store = Store(url)
    assert _bars_seen(store, sid) == saved  # the store is the backup's again
    ran = asyncio.run(run_host(url, poll=0.05, stop_after=1.0))
    assert ran == [sid]
    row = store.get_session(sid)
    assert row["state"] == "completed"
    assert float(row["final_equity"]) == pytest.approx(want, rel=1e-12)
    fills = store.fills(sid)
    assert fills.fill_id.is_unique and len(fills) == len(store.fills(reference.id))
    events = store.events(sid)
    assert events["message"].str.contains("lease expired").any()
    assert events["message"].str.contains("resumed after").any()
    store.close()
