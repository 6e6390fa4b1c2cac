"""A SQLite store file's health: its integrity and the WAL it was left with.

The missing-WAL rule (:func:`wal_state`, read from the files before any connection opens them): a
database in WAL mode (header bytes 18-19 are 2) whose ``-shm`` wal-index is initialised (both header
copies equal, version 3007000) and counts more frames (``mxFrame``) than it has copied back into the
database (``nBackfill``), while the ``-wal`` beside it is missing or shorter than those frames, was
separated from its WAL: the committed transactions in the missing frames are not in the file. A
cleanly closed store leaves neither ``-wal`` nor ``-shm`` (SQLite checkpoints and deletes both), and a
last connection closing deletes the ``-wal`` only after checkpointing every frame, so neither is
reported. A ``.db`` copied alone (without ``-wal`` and ``-shm``) while a host wrote to it cannot be told
from a cleanly closed one: copy a live store with ``workbench store backup``.
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

WAL_INDEX_VERSION = 3007000
WAL_HEADER = 32
FRAME_HEADER = 24


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


def _page_size(raw: int) -> int:
    return 65536 if raw == 1 else raw


@dataclass(frozen=True)
class WalState:
    """What the files beside a SQLite database say about its WAL (see the module's rule)."""

    wal_mode: bool
    wal_bytes: int | None  # size of the -wal file; None if there is none
    shm: bool
    frames: int = 0  # frames the -shm index counts in the WAL (mxFrame)
    backfilled: int = 0  # of those, copied back into the database (nBackfill)
    page_size: int = 0

    @property
    def missing_frames(self) -> int:
        """Committed WAL frames that are neither in the database nor in the ``-wal`` beside it."""
        if not self.wal_mode or self.frames <= self.backfilled:
            return 0
        present = 0
        if self.wal_bytes is not None and self.wal_bytes >= WAL_HEADER and self.page_size:
            present = (self.wal_bytes - WAL_HEADER) // (FRAME_HEADER + self.page_size)
        return max(0, self.frames - max(present, self.backfilled))

    def as_dict(self) -> dict[str, int | bool | None]:
        return {"wal_mode": self.wal_mode, "wal_bytes": self.wal_bytes, "shm": self.shm, "wal_frames": self.frames,
                "checkpointed_frames": self.backfilled, "missing_frames": self.missing_frames}


def wal_state(path: Path) -> WalState:
    """Read ``path``'s header and its ``-wal``/``-shm`` files (no connection is opened)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        head = b""
    wal_mode = len(head) >= 20 and head[18] == 2 and head[19] == 2
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    wal_bytes = wal.stat().st_size if wal.exists() else None
    if not shm.exists():
        return WalState(wal_mode, wal_bytes, False)
    with open(shm, "rb") as fh:
        index = fh.read(136)
    if len(index) < 136 or index[:48] != index[48:96]:
        return WalState(wal_mode, wal_bytes, True)  # not initialised, or a writer is updating it
    version, _, _, init, _, size, frames = struct.unpack("=IIIBBHI", index[:20])
    if version != WAL_INDEX_VERSION or not init:
        return WalState(wal_mode, wal_bytes, True)
    (backfilled,) = struct.unpack("=I", index[96:100])
    return WalState(wal_mode, wal_bytes, True, frames, backfilled, _page_size(size))


def missing_wal_message(path: Path, state: WalState) -> str | None:
    """The warning for ``state`` (None when no committed transaction is missing)."""
    n = state.missing_frames
    if not n:
        return None
    where = "without its -wal file" if state.wal_bytes is None else "with a truncated -wal file"
    return (f"{path} was opened {where}: its -shm index counts {n} committed WAL frame(s) that are not in "
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
