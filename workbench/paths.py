"""Where workbench keeps its files: ``$WORKBENCH_HOME`` or the user's data directory."""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir


def data_dir() -> Path:
    """The root for the default database and the market-data cache (created on demand)."""
    root = Path(os.environ.get("WORKBENCH_HOME") or user_data_dir("workbench", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    """The on-disk Parquet cache of market data."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    """The embedded default store: a SQLite file under the data directory."""
    return f"sqlite:///{data_dir() / 'workbench.db'}"


def numba_cache_dir() -> Path:
    """Compiled numba kernels: machine-wide (``$WORKBENCH_CACHE`` or the user's cache dir), not per
    ``$WORKBENCH_HOME``, so every store and test home shares one warm cache."""
    path = Path(os.environ.get("WORKBENCH_CACHE") or user_cache_dir("workbench", appauthor=False)) / "numba"
    path.mkdir(parents=True, exist_ok=True)
    return path
