"""nbval runs of the analyst notebooks (``pytest --nbval-lax``): small and in a throwaway store.

nbval starts a notebook's kernel while setting up its first cell, from this process's environment,
so around each notebook cell's setup ``$WORKBENCH_HOME`` points at a temporary directory (the
kernels never touch the user's store) and ``$WORKBENCH_NB_DAYS`` is set small (read by
``workbench.research.notebook_days`` in the parameters cells), then both are restored. The
papermill template (backtest_report.ipynb) keeps its own small default dates.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="wb-notebooks-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
NB_DAYS = "3"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Set ``$WORKBENCH_HOME`` and ``$WORKBENCH_NB_DAYS`` while nbval starts a notebook's kernel."""
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_HOME", "WORKBENCH_NB_DAYS")}
    os.environ["WORKBENCH_HOME"] = str(_HOME)
    os.environ.setdefault("WORKBENCH_NB_DAYS", NB_DAYS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
