"""Backups of a SQLite store, their restore, and a store's health check (``workbench store ...``).

:func:`backup` copies a live store with SQLite's online backup API in one step: a single read
transaction, so the copy is one consistent snapshot (every transaction committed before it, none
after) while hosts keep writing (WAL readers do not block the writer). The copy is written beside
the destination, checked (``integrity_check``), switched to a rollback journal (one self-contained
file, no ``-wal``) and renamed into place.

:func:`restore` refuses while a session of the target store is being run (a running, paused,
starting or stopping session whose heartbeat is fresher than ``fresh_within`` seconds, or whose
lease has not expired), checks the backup, copies it beside the target, moves the target aside
*with* its ``-wal``, ``-shm`` and ``-journal``, and renames the copy into place. The sidecars go first
and go along: they hold the replaced store's last commits (kept whole beside it), and a stale WAL or
hot journal left at the target's name would be read as the restored file's own (reading the target
to find running sessions checkpoints a WAL nobody else holds; one held open or beside a corrupt file
stays).
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from workbench.domain import SessionState, utc_now
from workbench.paths import default_db_url
from workbench.store.db import parse_url
from workbench.store.errors import StoreError
from workbench.store.faults import StorageFault, fault_kind
from workbench.store.files import missing_wal_message, sqlite_path, wal_state
from workbench.store.store import Store

#: a running session whose heartbeat is fresher than this is being run (restore refuses)
FRESH_SECONDS = 60.0
LIVE_STATES = tuple(s.value for s in (SessionState.STARTING, SessionState.RUNNING, SessionState.PAUSED,
                                      SessionState.STOPPING))
SIDECARS = ("-wal", "-shm", "-journal")
MAGIC = b"SQLite format 3\x00"


def store_file(url: str | None, *, must_exist: bool = True) -> Path:
    """The SQLite file of ``url`` (default: the default store); ValueError for other databases or a
    missing file."""
    url = url or default_db_url()
    parsed = parse_url(url)
    path, shown = sqlite_path(parsed), parsed.render_as_string(hide_password=True)
    if path is None:
        raise ValueError(f"{shown} is not a SQLite file: backup, restore and check work on SQLite stores "
                         "(use the database's own tools, e.g. pg_dump, for others)")
    if must_exist and not path.is_file():
        raise ValueError(f"no store at {path}: check --db (e.g. --db sqlite:///path/to/workbench.db)")
    return path


@contextmanager
def _sqlite(path: Path, operation: str, timeout: float = 30.0) -> Iterator[sqlite3.Connection]:
    """A plain connection to ``path`` (closed after); storage errors as :class:`StorageFault`."""
    try:
        with closing(sqlite3.connect(str(path), timeout=timeout, isolation_level=None)) as conn:
            yield conn
    except sqlite3.Error as e:
        kind = fault_kind(e)
        if kind is None:
            raise
        raise StorageFault(kind, str(path), operation, str(e)) from e


def integrity(conn: sqlite3.Connection, quick: bool = False) -> list[str]:
    """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` or the problems found."""
    try:
        return [str(r[0]) for r in conn.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}")]
    except sqlite3.DatabaseError as e:  # not a database, or too damaged to check
        return [str(e)]


def summary(conn: sqlite3.Connection, where: Path) -> dict[str, Any]:
    """How many sessions a store holds, its newest event's time and its sessions in a running state."""
    try:
        sessions = int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
        newest = conn.execute("SELECT max(time) FROM events").fetchone()[0]
        running = [r[0] for r in conn.execute(
            f"SELECT id FROM sessions WHERE state IN ({','.join('?' * len(LIVE_STATES))})", LIVE_STATES)]
    except sqlite3.OperationalError as e:
        raise ValueError(f"{where} is not a workbench store ({e})") from None
    return {"sessions": sessions, "newest_event": _utc(newest), "running_sessions": running}


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _copy(source: sqlite3.Connection, dest: Path, operation: str) -> list[str]:
    """Copy ``source`` into a fresh ``dest`` (one backup step: one snapshot) as a rollback-journal file;
    returns its ``integrity_check``."""
    with _sqlite(dest, operation) as out:
        source.backup(out)  # pages=-1: all pages in one step, one read transaction
        out.execute("PRAGMA journal_mode = DELETE")
        return integrity(out)


def _partial(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial-{os.getpid()}")


def backup(dest: str | Path, url: str | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Copy the store at ``url`` into the SQLite file ``dest`` while hosts may be writing; returns what
    it holds (``backup``, ``source``, ``bytes``, ``sessions``, ``newest_event``, ``running_sessions``)."""
    src = store_file(url)
    out = Path(dest).expanduser()
    if not out.parent.is_dir():
        raise ValueError(f"cannot write the backup {out}: directory {out.parent} does not exist")
    if out.exists() and out.resolve() == src.resolve():
        raise ValueError(f"the backup {out} is the store itself; choose another file")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; choose a new file name or pass --force to overwrite it")
    tmp = _partial(out)
    try:
        with _sqlite(src, "read") as conn:
            problems = _copy(conn, tmp, "write")
        if problems != ["ok"]:
            raise StoreError(f"the backup of {src} fails its integrity check ({'; '.join(problems[:5])}): the "
                             f"store itself is damaged; run `workbench store check --db sqlite:///{src}`")
        with _sqlite(tmp, "read") as conn:
            info = summary(conn, src)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"backup": str(out), "source": str(src), "bytes": out.stat().st_size, **info}


def being_run(conn: sqlite3.Connection, now: datetime, fresh_within: float = FRESH_SECONDS) -> list[str]:
    """The sessions of a store that a runner is running now: a running state and a lease (``lease_expires``)
    not yet expired; for a session holding no lease (a store from before leases), a heartbeat fresher
    than ``fresh_within`` s. (A runner killed a moment ago is not running: its lease decides.)"""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
    lease = ", lease_expires" if "lease_expires" in columns else ", NULL"
    rows = conn.execute(f"SELECT id, state, runner, heartbeat_at{lease} FROM sessions "
                        f"WHERE state IN ({','.join('?' * len(LIVE_STATES))})", LIVE_STATES).fetchall()
    out = []
    for sid, state, runner, heartbeat, expires in rows:
        beat, until = _utc(heartbeat), _utc(expires)
        if until is not None:
            if until > now:
                out.append(f"{sid} ({state}, runner {runner or '?'}, lease until {until:%H:%M:%S} UTC)")
        elif beat is not None and now - beat < timedelta(seconds=fresh_within):
            out.append(f"{sid} ({state}, runner {runner or '?'}, heartbeat {(now - beat).total_seconds():.0f} s ago)")
    return out


def _move_aside(target: Path, stamp: str) -> Path | None:
    """Rename ``target`` and its sidecars to ``<name>.before-restore-<stamp>``; sidecars first."""
    if not target.exists():
        for suffix in SIDECARS:  # stale sidecars of a deleted store would be applied to the restored file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        return None
    aside = target.with_name(f"{target.name}.before-restore-{stamp}")
    n = 0
    while any(Path(f"{aside}{s}").exists() for s in ("", *SIDECARS)):
        n += 1
        aside = target.with_name(f"{target.name}.before-restore-{stamp}-{n}")
    for suffix in SIDECARS:
        side = Path(f"{target}{suffix}")
        if side.exists():
            os.replace(side, f"{aside}{suffix}")
    os.replace(target, aside)
    return aside


def restore(backup_file: str | Path, url: str | None = None, *, fresh_within: float = FRESH_SECONDS,
            clock: Callable[[], datetime] = utc_now, actor: str = "user") -> dict[str, Any]:
    """Replace the store at ``url`` with ``backup_file`` (see the module) and record a store-wide
    "restore" event in it; returns what it restored (``restored``, ``database``, ``previous``: where the
    replaced file went, or None; ``sessions``, ``newest_event``, ``running_sessions``: running when the
    backup was taken, resumable now)."""
    src = Path(backup_file).expanduser()
    if not src.is_file():
        raise ValueError(f"no backup at {src}: give the file `workbench store backup` wrote")
    with open(src, "rb") as fh:
        if fh.read(16) != MAGIC:
            raise ValueError(f"{src} is not a SQLite database: give the file `workbench store backup` wrote")
    target = store_file(url, must_exist=False)
    if not target.parent.is_dir():
        raise ValueError(f"cannot restore to {target}: directory {target.parent} does not exist")
    if target.exists() and target.resolve() == src.resolve():
        raise ValueError(f"{src} is the store itself; give a backup file")
    with _sqlite(src, "read") as conn:
        problems = integrity(conn)
        if problems != ["ok"]:
            raise StoreError(f"the backup {src} fails its integrity check ({'; '.join(problems[:5])}); "
                             "restore another backup")
        info = summary(conn, src)
    if target.exists():
        _refuse_if_running(target, clock(), fresh_within)
    tmp = _partial(target)
    try:
        with _sqlite(src, "read") as conn:
            problems = _copy(conn, tmp, "write")
        if problems != ["ok"]:
            raise StoreError(f"the copy of {src} beside {target} fails its integrity check "
                             f"({'; '.join(problems[:5])}); check the disk holding {target.parent}")
        previous = _move_aside(target, clock().strftime("%Y%m%dT%H%M%S"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    out = {"restored": str(src), "database": str(target), "previous": None if previous is None else str(previous),
           **info}
    with Store(f"sqlite:///{target}") as store:
        store.add_event(None, "restore", f"restored from {src}; the replaced store is {out['previous']}",
                        data={k: v for k, v in out.items() if k != "newest_event"}, actor=actor)
    return out


def _refuse_if_running(target: Path, now: datetime, fresh_within: float) -> None:
    """StoreError naming the sessions of ``target`` that are being run; an unreadable target passes."""
    try:
        with _sqlite(target, "read", timeout=5.0) as conn:
            running = being_run(conn, now, fresh_within)
    except (sqlite3.DatabaseError, StorageFault):
        return  # too damaged to read: that is what a restore is for
    if running:
        raise StoreError(f"cannot restore over {target}: it is in use by session(s) {'; '.join(running)}. Stop "
                         "the host first (Ctrl-C on `workbench host`, or `workbench session stop ID`), then retry; "
                         "if its host is gone, retry once its lease has expired (a store from before leases: once "
                         f"the heartbeat is {fresh_within:.0f} s old)")


def check(url: str | None = None) -> dict[str, Any]:
    """The store's health: ``integrity_check``, its WAL state (read before opening it) and ``problems``
    (empty when healthy); ``ok`` is True when there are none."""
    path = store_file(url)
    wal = wal_state(path)
    problems: list[str] = []
    lost = missing_wal_message(path, wal)
    if lost:
        problems.append(lost)
    with _sqlite(path, "read") as conn:
        found = integrity(conn)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0] if found == ["ok"] else None
    if found != ["ok"]:
        problems += [f"integrity: {p}" for p in found[:20]]
        problems.append(f"restore a backup: `workbench store restore BACKUP --db sqlite:///{path}`")
    return {"database": str(path), "bytes": path.stat().st_size, "ok": not problems, "integrity": found,
            "journal_mode": mode, "wal": wal.as_dict(), "problems": problems}
