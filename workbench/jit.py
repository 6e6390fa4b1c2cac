"""numba kernels without numba where it is not worth loading: a dashboard kernel books a session's few
stored fills and computes its metrics with the same definitions, run by Python and NumPy.

Importing numba costs a dashboard kernel ~95 MB and ~0.3 s (plus scipy, which numba imports); the
rules stay defined once, in the numba modules, and :func:`kernels` gives the compiled module wherever
numba is already loaded (sessions, backtests, the host) and an interpreted copy elsewhere.
"""
from __future__ import annotations

import builtins
import functools
import importlib
import importlib.util
import sys
from types import ModuleType, SimpleNamespace
from typing import Any


def _no_jit(*args: Any, **kwargs: Any) -> Any:
    """``numba.njit`` for :func:`interpreted`: returns the function itself (``@njit`` or ``@njit(...)``)."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


@functools.cache
def interpreted(name: str) -> ModuleType:
    """Module ``name``'s source executed with ``numba.njit`` a no-op and no numba import: the same
    definitions, run by the interpreter (a separate module object; ``sys.modules`` is not touched)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None and spec.origin is not None
    source = spec.loader.get_source(spec.name)  # type: ignore[attr-defined]
    stub = SimpleNamespace(njit=_no_jit, prange=range)

    def imports(mod: str, *args: Any, **kwargs: Any) -> Any:
        return stub if mod == "numba" else builtins.__import__(mod, *args, **kwargs)

    module = ModuleType(name)
    module.__file__ = spec.origin
    module.__dict__["__builtins__"] = {**vars(builtins), "__import__": imports}
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    return module


def kernels(name: str) -> ModuleType:
    """Module ``name`` compiled by numba if numba is loaded in this process (or the module already is),
    else :func:`interpreted` ``(name)``. A module another thread is still importing is waited for
    (``import_module`` takes the import lock), never handed out half-initialized."""
    if name in sys.modules or "numba" in sys.modules:
        return importlib.import_module(name)
    return interpreted(name)
