"""``workbench store backup|restore|check`` on real SQLite files (workbench.store.backup, cli/store.py)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from tests.kit import wait_until
from tests.test_store_faults import corrupt_pages, equity, fill, integrity_ok, leave_with_wal, wal_notes
from workbench.cli import main
from workbench.config import make_config
from workbench.domain import utc_now
from workbench.store import Store, StoreError
from workbench.store.backup import backup, restore


def cli(*args: str) -> subprocess.CompletedProcess:
    """``workbench ...`` as its own process."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=120)


def test_backup_while_a_host_writes_holds_a_consistent_prefix(store, store_url, tmp_path):
    """A writer commits checkpoint n with fill n and equity point n in one transaction; every backup taken
    meanwhile holds exactly checkpoints 0..n: all of one, none of the next."""
    sid = store.create_session(make_config(kind="paper"), state="running")
    done = threading.Event()
    written = [0]

    def host() -> None:
        with Store(store_url) as st:
            while not done.is_set():
                n = written[0]
                st.save_checkpoint(sid, {"n": n}, fills=[fill(n)], equity=equity(n, 1))
                written[0] = n + 1

    writer = threading.Thread(target=host)
    writer.start()
    try:
        wait_until(lambda: written[0] >= 20, timeout=30)
        before = written[0]
        copies = [backup(tmp_path / f"b{k}.db", store_url) for k in range(4)]
        wait_until(lambda: written[0] >= before + 20, timeout=30)
    finally:
        done.set()
        writer.join(30)
    prefixes = []
    for info in copies:
        path = Path(info["backup"])
        assert integrity_ok(path) and not Path(f"{path}-wal").exists()  # one self-contained file
        with Store(f"sqlite:///{path}") as copy:
            n = copy.load_runner_state(sid)["n"]
            assert sorted(copy.fills(sid)["fill_id"]) == sorted(f"f{i}" for i in range(n + 1))
            assert len(copy.equity(sid)) == n + 1
        assert info["sessions"] == 1 and info["running_sessions"] == [sid]
        prefixes.append(n)
    assert before - 1 <= prefixes[0] <= prefixes[-1] < written[0] - 1  # taken while the host kept writing


def test_backup_and_restore_round_trip_through_the_command_line(store, store_url, tmp_path):
    kept = store.create_session(make_config(kind="paper"), state="stopped")
    store.save_checkpoint(kept, {"n": 3}, fills=[fill(i) for i in range(3)], equity=equity(0, 3))
    store.add_event(kept, "note", "before the backup")
    store.close()
    out = cli("store", "backup", str(tmp_path / "b.db"), "--db", store_url, "--json")
    assert out.returncode == 0, out.stderr
    taken = json.loads(out.stdout)
    assert taken["sessions"] == 1 and taken["backup"] == str(tmp_path / "b.db") and taken["newest_event"]
    # after the backup: a new session, and commits a killed host left in the -wal
    with Store(store_url) as st:
        lost = st.create_session(make_config(kind="paper"), state="stopped")
    path = tmp_path / "wb.db"
    leave_with_wal(path)
    out = cli("store", "restore", str(tmp_path / "b.db"), "--db", store_url, "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["sessions"] == 1 and done["newest_event"] == taken["newest_event"]
    assert done["database"] == str(path) and Path(done["previous"]).exists()
    assert integrity_ok(path)
    with Store(store_url) as st:  # the backup's content: not the old WAL's commits applied over it
        assert st.list_sessions().id.tolist() == [kept] and len(st.fills(kept)) == 3 and wal_notes(st) == 0
        assert "restore" in st.events(None)["kind"].tolist()
    with Store(f"sqlite:///{done['previous']}") as old:  # the replaced store kept whole, its WAL with it
        assert sorted(old.list_sessions().id) == sorted([kept, lost]) and wal_notes(old) == 20


def test_restore_refuses_while_a_host_runs_a_session(store, store_url, tmp_path):
    sid = store.create_session(make_config(kind="paper"), state="stopped")
    backup(tmp_path / "b.db", store_url)
    running = store.create_session(make_config(kind="paper"), state="running")
    store.heartbeat(running, "host-a:4242")
    store.close()
    before = (tmp_path / "wb.db").read_bytes()
    with pytest.raises(StoreError, match=rf"in use by session\(s\) {running} \(running, runner host-a:4242, "
                                         r"heartbeat \d+ s ago\)\. Stop the host first"):
        restore(tmp_path / "b.db", store_url)
    assert (tmp_path / "wb.db").read_bytes() == before
    # once its heartbeat is stale (the host is gone), the restore goes ahead
    later = utc_now() + timedelta(minutes=5)
    done = restore(tmp_path / "b.db", store_url, clock=lambda: later)
    assert done["sessions"] == 1
    with Store(store_url) as st:
        assert st.list_sessions().id.tolist() == [sid]


def test_restore_refuses_while_a_session_s_lease_runs(store, store_url, tmp_path):
    backup(tmp_path / "b.db", store_url)
    leased = store.create_session(make_config(kind="paper"), state="running")
    until = utc_now() + timedelta(minutes=2)
    store._write(lambda conn: conn.exec_driver_sql(  # a runner that never heartbeated but holds the lease
        "UPDATE sessions SET lease_expires = ? WHERE id = ?", (until.strftime("%Y-%m-%d %H:%M:%S.%f"), leased)))
    store.close()
    with pytest.raises(StoreError, match=rf"{leased} \(running, runner \?, lease until {until:%H:%M:%S} UTC\)"):
        restore(tmp_path / "b.db", store_url)
    assert restore(tmp_path / "b.db", store_url, clock=lambda: until + timedelta(seconds=1))["sessions"] == 0


def test_restore_checks_the_backup_first(store, store_url, tmp_path, capsys):
    for _ in range(3):
        store.create_session(make_config(kind="paper"), state="stopped")
    store.save_checkpoint(store.list_sessions().id[0], {}, fills=[fill(i) for i in range(400)])
    backup(tmp_path / "b.db", store_url)
    corrupt_pages(tmp_path / "b.db")
    before = (tmp_path / "wb.db").read_bytes()
    assert main(["store", "restore", str(tmp_path / "b.db"), "--db", store_url]) == 2
    assert "fails its integrity check" in capsys.readouterr().err
    (tmp_path / "note.txt").write_text("not a database")
    assert main(["store", "restore", str(tmp_path / "note.txt"), "--db", store_url]) == 2
    assert main(["store", "restore", str(tmp_path / "missing.db"), "--db", store_url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"workbench: {tmp_path / 'note.txt'} is not a SQLite database: give the file "
                   "`workbench store backup` wrote",
                   f"workbench: no backup at {tmp_path / 'missing.db'}: give the file `workbench store backup` wrote"]
    assert (tmp_path / "wb.db").read_bytes() == before


def test_restore_over_a_corrupt_store(store, store_url, tmp_path):
    sid = store.create_session(make_config(kind="paper"), state="stopped")
    store.save_checkpoint(sid, {}, fills=[fill(i) for i in range(400)])
    backup(tmp_path / "b.db", store_url)
    store.close()
    corrupt_pages(tmp_path / "wb.db")
    done = restore(tmp_path / "b.db", store_url)
    with Store(store_url) as st:
        assert len(st.fills(sid)) == 400
    assert done["previous"] and integrity_ok(tmp_path / "wb.db")


def test_check_exit_codes(store, store_url, tmp_path, capsys):
    sid = store.create_session(make_config(kind="paper"), state="stopped")
    store.save_checkpoint(sid, {}, fills=[fill(i) for i in range(400)])
    store.close()
    assert main(["store", "check", "--db", store_url]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'wb.db'} (")
    corrupt_pages(tmp_path / "wb.db")
    assert main(["store", "check", "--db", store_url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["integrity"] != ["ok"]
    assert any("workbench store restore BACKUP" in p for p in report["problems"])
    assert main(["store", "check", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert main(["store", "check", "--db", "postgresql://u:secret@host/db"]) == 2
    err = capsys.readouterr().err
    assert f"no store at {tmp_path / 'none.db'}" in err and "secret" not in err and "not a SQLite file" in err


def test_check_reports_a_lost_wal(store, tmp_path, capsys):
    store.close()
    leave_with_wal(tmp_path / "wb.db")
    (tmp_path / "wb.db-wal").unlink()
    assert main(["store", "check", "--db", f"sqlite:///{tmp_path / 'wb.db'}", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["wal"]["missing_frames"] > 0 and "without its -wal file" in report["problems"][0]


def test_backup_refuses_to_overwrite_without_force(store, store_url, tmp_path, capsys):
    store.close()
    (tmp_path / "b.db").write_text("an older backup")
    assert main(["store", "backup", str(tmp_path / "b.db"), "--db", store_url]) == 2
    assert "pass --force" in capsys.readouterr().err and (tmp_path / "b.db").read_text() == "an older backup"
    assert main(["store", "backup", str(tmp_path / "b.db"), "--db", store_url, "--force"]) == 0
    assert integrity_ok(tmp_path / "b.db")
    assert main(["store", "backup", str(tmp_path / "no" / "b.db"), "--db", store_url]) == 2
    assert main(["store", "backup", str(tmp_path / "wb.db"), "--db", store_url]) == 2
    assert "is the store itself" in capsys.readouterr().err.splitlines()[-1]
    assert not list(tmp_path.glob(".*partial*"))
    with sqlite3.connect(tmp_path / "b.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
