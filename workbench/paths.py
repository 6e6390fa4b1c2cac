"""Where workbench keeps its files: ``$WORKBENCH_HOME`` or the user's data directory.

The data directory holds the store (orders, fills, account names) and is created readable by its
owner only (0700); ``workbench up`` creates the default SQLite file 0600 (:func:`create_private_file`).
A directory that already exists keeps the mode its owner gave it.
"""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def data_dir() -> Path:
    """The root for the default database and the market-data cache (created on demand, 0700)."""
    root = Path(os.environ.get("WORKBENCH_HOME") or user_data_dir("workbench", appauthor=False))
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process created it just now
            pass
        else:
            root.chmod(PRIVATE_DIR)  # whatever the umask
    return root


def cache_dir() -> Path:
    """The on-disk Parquet cache of market data."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


DB_ENV = "WORKBENCH_DB"


def default_db_url() -> str:
    """The store used when none is given: ``$WORKBENCH_DB`` (e.g. a team's ``postgresql://...``, so the
    dashboards, the CLI and the hosts share it), else the embedded SQLite file under the data directory."""
    return os.environ.get(DB_ENV) or f"sqlite:///{data_dir() / 'workbench.db'}"


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty and readable by its owner only (0600) unless it exists (SQLite opens an
    empty file as an empty database, and gives its journals the file's mode). Returns whether it did."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        return False
    return True


def numba_cache_dir() -> Path:
    """Compiled numba kernels: machine-wide (``$WORKBENCH_CACHE`` or the user's cache dir), not per
    ``$WORKBENCH_HOME``, so every store and test home shares one warm cache."""
    path = Path(os.environ.get("WORKBENCH_CACHE") or user_cache_dir("workbench", appauthor=False)) / "numba"
    path.mkdir(parents=True, exist_ok=True)
    return path
