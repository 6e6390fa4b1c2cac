"""Storage faults on a real SQLite file: disk full, an I/O error, a lock held past the timeout, a
read-only file, a corrupt file, a database separated from its WAL (workbench.store.faults, .files)."""
from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.kit import T0
from workbench.cli import main
from workbench.config import make_config
from workbench.domain import Fill, Side
from workbench.store import StorageFault, Store, StoreError, WalMissingWarning
from workbench.store.db import BUSY_TIMEOUT_MS, RETRY_SECONDS
from workbench.store.faults import fault_kind


def fill(i: int) -> Fill:
    return Fill(f"c{i}", "BTC/USDT", Side.BUY, 1.0, 100.0 + i, 0.1, 0.0, T0 + timedelta(minutes=i), fill_id=f"f{i}")


def equity(start: int, n: int) -> pd.Series:
    return pd.Series([1000.0 + i for i in range(start, start + n)],
                     index=pd.date_range(T0 + timedelta(minutes=start), periods=n, freq="1min"))


def integrity_ok(path: Path) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def corrupt_pages(path: Path, pages: range = range(3, 7), seed: int = 1) -> None:
    """Write random bytes over ``pages`` (1-based) of the closed SQLite file ``path``."""
    with sqlite3.connect(path) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        assert conn.execute("PRAGMA page_count").fetchone()[0] >= pages.stop
    conn.close()
    noise = random.Random(seed)
    with open(path, "r+b") as fh:
        for page in pages:
            fh.seek((page - 1) * size)
            fh.write(noise.randbytes(size))


@pytest.fixture
def recorded(store: Store) -> str:
    """A running session with 5 fills, 5 equity points and a checkpoint already recorded."""
    sid = store.create_session(make_config(kind="paper"), state="running")
    store.save_checkpoint(sid, {"bar": 4}, fills=[fill(i) for i in range(5)], equity=equity(0, 5))
    return sid


def test_disk_full_raises_a_fault_naming_the_file_and_loses_nothing(store, recorded, page_limit, tmp_path):
    sid = recorded
    page_limit["n"] = 1
    with pytest.raises(StorageFault) as caught:
        store.save_checkpoint(sid, {"bar": 9000}, fills=[fill(i) for i in range(5, 3000)], equity=equity(5, 3000))
    fault = caught.value
    assert fault.kind == "disk_full" and fault.operation == "write"
    assert fault.database == str(tmp_path / "wb.db") and str(tmp_path / "wb.db") in str(fault)
    assert "free disk space" in str(fault) and isinstance(fault, StoreError)
    assert isinstance(fault.__cause__, OperationalError)  # the driver's error is kept
    assert not store.writable()
    # nothing recorded is lost, nothing of the failed checkpoint is half-written
    assert len(store.fills(sid)) == 5 and len(store.equity(sid)) == 5
    assert store.load_runner_state(sid)["bar"] == 4
    assert integrity_ok(tmp_path / "wb.db")
    page_limit["n"] = 1_000_000_000  # room again
    assert store.writable()
    store.save_checkpoint(sid, {"bar": 9000}, fills=[fill(i) for i in range(5, 3000)], equity=equity(5, 3000))
    assert len(store.fills(sid)) == 3000 and store.load_runner_state(sid)["bar"] == 9000
    assert len(store.events(None)[lambda e: e["kind"] == "probe"]) == 0  # the probes leave nothing behind


IO_ERROR = """
    import json, os, resource, signal, sys
    from workbench.store import Store, StorageFault
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    path, sid = sys.argv[1], sys.argv[2]
    store = Store("sqlite:///" + path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    store.add_event(sid, "note", "before")
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path + "-wal"), hard))  # the WAL cannot grow
    out = {}
    try:
        store.add_event(sid, "note", "x" * 500_000)
    except StorageFault as e:
        out = {"kind": e.kind, "database": e.database, "message": str(e)}
    out["writable_while_capped"] = store.writable()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    out["writable"] = store.writable()
    store.add_event(sid, "note", "after")
    print(json.dumps(out))
"""


def test_a_real_io_error_is_a_fault(store, recorded, store_url, tmp_path):
    """A file size limit (RLIMIT_FSIZE) makes SQLite's write fail with EFBIG: a real SQLITE_IOERR."""
    store.close()  # checkpointed: the database file holds everything, the child's WAL starts empty
    path = tmp_path / "wb.db"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(IO_ERROR), str(path), recorded],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kind"] == "io_error" and out["database"] == str(path)
    assert "check the disk" in out["message"] and "workbench store check" in out["message"]
    assert out["writable_while_capped"] is False and out["writable"] is True
    again = Store(store_url)
    assert list(again.events(recorded)["message"])[-2:] == ["before", "after"] and len(again.fills(recorded)) == 5
    again.close()
    assert integrity_ok(path)


def test_a_lock_held_past_the_timeout_and_retries_is_a_fault(store_url, tmp_path):
    store = Store(store_url, busy_timeout_ms=50, retry_seconds=0.3)
    sid = store.create_session(make_config(kind="paper"), state="running")
    holder = sqlite3.connect(tmp_path / "wb.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StorageFault) as caught:
            store.add_event(sid, "note", "blocked")
        assert time.monotonic() - started < 10
        assert caught.value.kind == "locked" and f"fuser {tmp_path / 'wb.db'}" in str(caught.value)
        assert store.get_session(sid)["state"] == "running"  # reads go on (WAL)
        assert store.writable(timeout=0.05) is False
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.writable(timeout=0.05) is True
    store.add_event(sid, "note", "through")
    with store.engine.connect() as conn:  # the probe's short timeout does not stick to the connection
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 50
    store.close()


def test_the_default_timeouts_are_unchanged(store):
    assert (store.busy_timeout_ms, store.retry_seconds) == (BUSY_TIMEOUT_MS, RETRY_SECONDS) == (30_000, 60.0)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_a_read_only_database_is_a_fault(store, recorded, tmp_path):
    store.close()
    ro = Store(f"sqlite:///file:{tmp_path / 'wb.db'}?mode=ro&uri=true")
    assert len(ro.fills(recorded)) == 5
    with pytest.raises(StorageFault) as caught:
        ro.add_event(recorded, "note", "x")
    assert caught.value.kind == "readonly" and caught.value.database == str(tmp_path / "wb.db")
    assert not ro.writable()
    ro.close()


def test_programming_errors_stay_the_drivers_errors(store, recorded):
    with pytest.raises(OperationalError) as bad_sql:
        store._write(lambda conn: conn.exec_driver_sql("SELEC 1"))
    assert not isinstance(bad_sql.value, StorageFault)
    with pytest.raises(OperationalError) as no_table:
        store._read(lambda conn: conn.exec_driver_sql("SELECT * FROM no_such_table"))
    assert not isinstance(no_table.value, StorageFault)
    with pytest.raises(IntegrityError):  # a fill for a session that does not exist: a foreign key
        store._write(lambda conn: conn.exec_driver_sql(
            "INSERT INTO fills (session_id, client_id, fill_id, symbol, side, quantity, price, commission, "
            "slippage, time) VALUES ('nope', 'c', 'f', 'X', 'buy', 1, 1, 0, 0, '2024-01-01')"))


@pytest.mark.parametrize(("code", "kind"), [(13, "disk_full"), (10, "io_error"), (10 | 3 << 8, "io_error"),
                                            (5, "locked"), (8, "readonly"), (11, "corrupt"), (26, "corrupt"),
                                            (14, "cannot_open"), (1, None), (19, None)])
def test_the_kind_follows_sqlites_result_code(code, kind):
    err = sqlite3.OperationalError("whatever the text says")
    err.sqlite_errorcode = code  # type: ignore[attr-defined]  # as the driver sets it
    assert fault_kind(err) == kind


def test_the_kind_of_other_drivers():
    class PgError(Exception):
        def __init__(self, sqlstate: str):
            self.sqlstate = sqlstate

    assert [fault_kind(PgError(s)) for s in ("53100", "58030", "55P03", "25006", "23505", "42601")] == \
        ["disk_full", "io_error", "locked", "readonly", None, None]
    assert fault_kind(RuntimeError("database or disk is full")) == "disk_full"  # no code: the message
    assert fault_kind(RuntimeError("syntax error")) is None


def test_a_corrupt_file_is_refused_on_open_with_how_to_restore(store, recorded, store_url, tmp_path, capsys):
    store.save_checkpoint(recorded, {"bar": 5}, fills=[fill(i) for i in range(5, 400)], equity=equity(5, 400))
    store.close()
    path = tmp_path / "wb.db"
    corrupt_pages(path)
    with pytest.raises(StorageFault) as caught:
        Store(store_url)
    assert caught.value.kind == "corrupt" and caught.value.operation == "open"
    assert str(path) in str(caught.value) and "workbench store restore BACKUP" in str(caught.value)
    unchecked = Store(store_url, check=False)  # opt-out: opens, the damage shows later
    unchecked.close()
    # the command line says it in one line, exit code 2
    capsys.readouterr()
    assert main(["session", "list", "--db", store_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("workbench: storage fault (corrupt) on open of " + str(path))


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "wb.db"
    path.write_bytes(b"this is not a database, it is a note" * 200)
    with pytest.raises(StorageFault) as caught:
        Store(f"sqlite:///{path}")
    assert caught.value.kind == "corrupt" and str(path) in str(caught.value)


LEFT_WITH_WAL = """
    import os, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # keep every commit in the WAL, as a busy host may
    for i in range(int(sys.argv[2])):
        conn.execute("INSERT INTO events (session_id, time, kind, message, actor) "
                     "VALUES (NULL, '2024-01-01 00:00:00.000000', 'note', ?, 'test')", (f"wal {i}",))
    os._exit(0)  # as a killed host: the -wal and -shm stay beside the database
"""


def leave_with_wal(path: Path, n: int = 20) -> None:
    """Commit ``n`` events to ``path`` that stay in its -wal (a process that dies with the store open)."""
    subprocess.run([sys.executable, "-c", textwrap.dedent(LEFT_WITH_WAL), str(path), str(n)], check=True, timeout=60)
    assert Path(f"{path}-wal").stat().st_size > 0 and Path(f"{path}-shm").exists()


def wal_notes(store: Store) -> int:
    return int(store.events(None)["message"].str.startswith("wal ").sum())


def test_a_database_copied_without_its_wal_warns(store, tmp_path):
    store.close()
    path = tmp_path / "wb.db"
    leave_with_wal(path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("wb.db", "wb.db-shm"):  # a copy that forgot the -wal
        (copy / name).write_bytes((tmp_path / name).read_bytes())
    with pytest.warns(WalMissingWarning, match=r"without its -wal file: .* [1-9][0-9]* committed WAL frame") as caught:
        copied = Store(f"sqlite:///{copy / 'wb.db'}")
    assert str(copy / "wb.db") in str(caught[0].message)
    assert wal_notes(copied) == 0  # the commits are indeed missing
    copied.close()
    with warnings.catch_warnings():  # the original, with its -wal: all there, no warning
        warnings.simplefilter("error", WalMissingWarning)
        original = Store(f"sqlite:///{path}")
        assert wal_notes(original) == 20
        original.close()
        Store(f"sqlite:///{path}").close()  # cleanly closed before: no -wal, no -shm, no warning
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


WRITER = """
    import sys
    from workbench.store import Store
    with Store(sys.argv[1]) as st:
        st.add_event(sys.argv[2], "note", "from another process")
"""


def test_opening_a_store_keeps_the_locks_of_this_process_s_other_connections(store, recorded, store_url, tmp_path):
    """SQLite's POSIX locks belong to the process: a plain open()+close() of the database or its -shm (as the
    checks on open could do) drops the locks of every connection this process holds on it; another process
    closing last would then checkpoint and delete the -wal and -shm under them."""
    assert len(store.events(recorded)) >= 1  # this process holds the WAL open
    for _ in range(3):
        Store(store_url).close()
    subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), store_url, recorded], check=True, timeout=60)
    assert Path(f"{tmp_path / 'wb.db'}-wal").exists() and Path(f"{tmp_path / 'wb.db'}-shm").exists()
    assert list(store.events(recorded)["message"])[-1] == "from another process"
    again = Store(store_url)
    assert list(again.events(recorded)["message"])[-1] == "from another process"
    again.close()
