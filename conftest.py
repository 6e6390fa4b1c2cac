"""nbval runs of notebooks/ and dashboards/ (``pytest --nbval-lax``): small, in a throwaway store.

nbval starts a notebook's kernel while setting up its first cell, from this process's environment,
so around the setup of every notebook cell ``$WORKBENCH_HOME`` points at a temporary directory (the
kernels never touch the user's store), ``$WORKBENCH_NB_DAYS`` is small (read by
``workbench.research.notebook_days`` in the analyst notebooks' parameters cells) and
``$QUERY_STRING`` is unset (a dashboard sees no Voilà URL query); then all are restored, so no
other test sees the change. The papermill template keeps its own small default dates.
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
NOTEBOOK_ENV = {"WORKBENCH_HOME": str(_HOME), "WORKBENCH_NB_DAYS": "3", "QUERY_STRING": None}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Apply :data:`NOTEBOOK_ENV` (``None`` = unset) while nbval sets up a notebook cell."""
    if item.path.suffix != ".ipynb":
        yield
        return
    saved = {k: os.environ.get(k) for k in NOTEBOOK_ENV}
    for key, value in NOTEBOOK_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        elif key == "WORKBENCH_NB_DAYS":
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
