"""nbval runs of the dashboards (``pytest --nbval-lax``): their kernels get a fresh, empty store.

nbval starts a notebook's kernel while setting up its first cell, from this process's environment,
so ``$WORKBENCH_HOME`` is pointed at a temporary directory around each dashboard cell's setup and
restored afterwards: the kernels never touch the user's store, and no other test sees the change.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="wb-dashboards-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Set ``$WORKBENCH_HOME`` (and drop QUERY_STRING) while nbval starts a dashboard's kernel."""
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_HOME", "QUERY_STRING")}
    os.environ["WORKBENCH_HOME"] = str(_HOME)
    os.environ.pop("QUERY_STRING", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
