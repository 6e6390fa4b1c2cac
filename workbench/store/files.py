"""A SQLite store file's health: the WAL it was left with (integrity: ``PRAGMA quick_check``).

The missing-WAL rule (:func:`wal_state`, read before any connection of this Store opens the file): a
database without a ``-wal`` beside it but with a ``-shm`` wal-index that is initialised (both header
copies equal, version 3007000), whose header says WAL mode (bytes 18-19 are 2), and whose index
counts more frames (``mxFrame``) than were copied back into the database (``nBackfill``), was
separated from its WAL: the committed transactions in those frames are not in the file. A cleanly
closed store leaves neither ``-wal`` nor ``-shm`` (SQLite checkpoints and deletes both), and a last
connection deletes the ``-wal`` only after checkpointing every frame, so neither is reported. A ``.db``
copied alone (without ``-wal`` and ``-shm``) while a host wrote to it cannot be told from a cleanly
closed one: copy a live store with ``workbench store backup``.

The files are read only when there is no ``-wal``: then no connection has the database open in WAL
mode. Otherwise a plain ``open()``/``close()`` of the database or ``-shm`` would drop the POSIX locks
every SQLite connection of this process holds on it (locks belong to the process), and another
process closing last would then delete the WAL under them.
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

WAL_INDEX_VERSION = 3007000


class WalMissingWarning(UserWarning):
    """A SQLite store was opened without the ``-wal`` file it was left with (see :mod:`.files`)."""


def sqlite_path(url: URL | str) -> Path | None:
    """The file of a SQLite URL (``file:`` URIs included), or None (memory, other databases)."""
    url = make_url(url) if isinstance(url, str) else url
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or "mode=memory" in db:
        return None
    if db.startswith("file:"):
        db = db[5:].split("?", 1)[0]
    return Path(db).expanduser()


@dataclass(frozen=True)
class WalState:
    """What the files beside a SQLite database say about its WAL (see the module's rule)."""

    wal_bytes: int | None  # size of the -wal file; None if there is none
    shm: bool
    frames: int = 0  # frames the -shm index counts in the WAL (mxFrame); read only without a -wal
    backfilled: int = 0  # of those, copied back into the database (nBackfill)

    @property
    def missing_frames(self) -> int:
        """Committed WAL frames that are in neither the database nor a ``-wal`` beside it."""
        return max(0, self.frames - self.backfilled) if self.wal_bytes is None else 0

    def as_dict(self) -> dict[str, int | bool | None]:
        return {"wal_bytes": self.wal_bytes, "shm": self.shm, "missing_frames": self.missing_frames}


def wal_state(path: Path) -> WalState:
    """The WAL files beside ``path``; the database header and ``-shm`` index are read only when there is a
    ``-shm`` and no ``-wal`` (see the module: no lock of this process is dropped)."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    wal_bytes = wal.stat().st_size if wal.exists() else None
    if wal_bytes is not None or not shm.exists():
        return WalState(wal_bytes, shm.exists())
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
        with open(shm, "rb") as fh:
            index = fh.read(136)
    except FileNotFoundError:  # gone meanwhile: nothing left to compare
        return WalState(None, shm.exists())
    wal_mode = len(head) >= 20 and head[18] == 2 and head[19] == 2
    if not wal_mode or len(index) < 136 or index[:48] != index[48:96]:
        return WalState(None, True)  # not a WAL database, or the index is not initialised
    version, _, _, init, _, _, frames = struct.unpack("=IIIBBHI", index[:20])
    if version != WAL_INDEX_VERSION or not init:
        return WalState(None, True)
    (backfilled,) = struct.unpack("=I", index[96:100])
    return WalState(None, True, frames, backfilled)


def missing_wal_message(path: Path, state: WalState) -> str | None:
    """The warning for ``state`` (None when no committed transaction is missing)."""
    n = state.missing_frames
    if not n:
        return None
    return (f"{path} was opened without its -wal file: its -shm index counts {n} committed WAL frame(s) not in "
            f"the database, so the newest transactions are missing. If it was copied or moved, copy "
            f"{path.name}-wal beside it too (before any program opens it); copy a live store with "
            "`workbench store backup FILE`")


def warn_if_wal_missing(path: Path) -> WalState:
    """Warn (:class:`WalMissingWarning`) if ``path`` was separated from its WAL; call before opening it."""
    state = wal_state(path)
    message = missing_wal_message(path, state)
    if message:
        warnings.warn(message, WalMissingWarning, stacklevel=3)
    return state
