"""Fast first backtests: numba's on-disk cache for vectorbt's kernels, and a warm-up that fills it.

vectorbt compiles its numba kernels on first use: the first backtest of a fresh process costs
15-20 s on 525,600 bars (61 kernels compiled). The kernels the runner uses (workbench's
``fills_nb``, vectorbt's ``simulate_from_orders_nb``, trade and value kernels) are declared
``cache=True``, but numba writes that cache next to the source (site-packages, maybe read-only)
only after a first compile; others, such as ``simulate_from_signals_nb``, are bare ``@njit``.
Three steps make the first backtest of a new process load machine code instead (~0.6 s):

1. :func:`configure_numba_cache` points numba's cache at ``$NUMBA_CACHE_DIR`` if set, else
   ``workbench.paths.numba_cache_dir()`` (the user's cache dir, shared by every ``$WORKBENCH_HOME``;
   always writable, unlike a system-wide site-packages). Best called before numba/vectorbt are imported.
2. :func:`enable_vectorbt_caching` turns numba's on-disk cache on, in that directory, for every
   kernel of vectorbt and workbench (``Dispatcher.enable_caching()``, what ``@njit(cache=True)``
   does), so from_signals, stats and the rest are cacheable too. Kernels that take other jitted
   functions as arguments (e.g. the reducers behind ``Portfolio.stats()``) miss the cache in
   every new process; they still work, they just compile as before.
3. :func:`warm_up` runs tiny backtests through ``run_backtest`` (three sizing modes, and stops),
   compiling every kernel a backtest uses into the cache. ``python -m workbench.backtest.warmup``
   (``workbench warmup``, run by ``make install``) does it once, ~20 s. If the cache is empty or
   stale (new numba/vectorbt/workbench source), the first backtest compiles and refills it:
   slower once, never wrong (numba checks each source file's timestamp and every signature).

:func:`ensure_numba_cache` is steps 1-2 together and is idempotent; the runner calls it before its
first vectorbt call. ``WORKBENCH_NUMBA_CACHE=0`` turns it all off (the benchmark's "no cache" run).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

_configured: Path | None = None
_enabled = False


def _disabled() -> bool:
    return os.environ.get("WORKBENCH_NUMBA_CACHE", "1").strip().lower() in ("0", "false", "no", "off")


def configure_numba_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Point numba's on-disk cache at ``cache_dir`` (default: ``$NUMBA_CACHE_DIR``, else
    ``paths.numba_cache_dir()``); create it; return it. Returns None when ``WORKBENCH_NUMBA_CACHE=0``.

    Call before vectorbt is imported. Works whether or not numba is already imported.
    """
    global _configured
    if _disabled():
        return None
    if cache_dir is None:
        env = os.environ.get("NUMBA_CACHE_DIR")
        if env:
            cache_dir = env
        else:
            from workbench.paths import numba_cache_dir

            cache_dir = numba_cache_dir()
    path = Path(cache_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)  # read by numba when it is first imported
    if "numba" in sys.modules:  # already imported: numba reads config.CACHE_DIR when a cache is created
        from numba.core import config as numba_config

        numba_config.CACHE_DIR = str(path)  # type: ignore[attr-defined]
    _configured = path
    return path


_PACKAGES = ("vectorbt", "workbench")


def _ours(module_name: str) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in _PACKAGES)


def _vectorbt_dispatchers() -> list[Any]:
    """Every numba dispatcher defined in an imported vectorbt or workbench module (each once)."""
    from numba.core.registry import CPUDispatcher

    seen: dict[int, Any] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not _ours(name):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher) and _ours(getattr(obj.py_func, "__module__", None) or ""):
                seen.setdefault(id(obj), obj)
    return list(seen.values())


def enable_vectorbt_caching() -> int:
    """Enable numba's on-disk cache, in the configured directory, on every vectorbt kernel and on
    workbench's own (``workbench.execution``); imports vectorbt; returns how many it switched.

    Idempotent: kernels already cached in the configured directory are left alone. workbench's
    kernels are ``cache=True`` already but picked their directory when imported; this moves them
    next to vectorbt's so one warm-up fills one place.
    """
    global _enabled
    if _disabled():
        return 0
    if _configured is None:
        configure_numba_cache()
    import vectorbt  # noqa: F401  (imports every kernel module)
    from numba.core.caching import FunctionCache

    import workbench.execution.simulate  # noqa: F401

    count = 0
    for disp in _vectorbt_dispatchers():
        cache = getattr(disp, "_cache", None)
        if isinstance(cache, FunctionCache) and str(cache._cache_path).startswith(str(_configured)):
            continue
        try:
            disp.enable_caching()
            count += 1
        except Exception:  # noqa: BLE001 - a kernel numba cannot cache still works uncached
            pass
    _enabled = True
    return count


def _count_cached() -> int:
    from numba.core.caching import FunctionCache

    return sum(isinstance(getattr(d, "_cache", None), FunctionCache) for d in _vectorbt_dispatchers())


def ensure_numba_cache() -> None:
    """:func:`configure_numba_cache` + :func:`enable_vectorbt_caching`, once per process."""
    if _enabled or _disabled():
        return
    if _configured is None:
        configure_numba_cache()
    enable_vectorbt_caching()


def cache_dir() -> Path | None:
    """The numba cache directory in use (None until configured, or when disabled)."""
    return _configured


def _warmup_bars(n: int = 400):
    """A small deterministic OHLCV frame with UTC minute bars (no sample generation needed)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(1, 10, n)}, index=index
    )


def _warmup_configs() -> list[Any]:
    """Configs that together walk the kernels of the common backtest paths.

    Sizing modes and the SL/TP/trailing path compile different kernel signatures; each config
    is a few hundred bars, so compiling dominates and running is instant.
    """
    from workbench.config import make_config

    base: dict[str, Any] = dict(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"])
    configs = []
    for sizing in (
        {"mode": "percent_equity", "value": 1.0},
        {"mode": "fixed_quantity", "value": 1.0},
        {"mode": "fixed_amount", "value": 1000.0},
    ):
        configs.append(make_config(**base, sizing=sizing))
    configs.append(make_config(**base, risk={"stop_loss": 0.01, "take_profit": 0.02, "trailing_stop": 0.01}))
    configs.append(make_config(**{**base, "symbols": ["BTC/USDT", "ETH/USDT"]}))  # several symbols: copied inputs
    configs.append(make_config(  # time windows (wall clock) and the circuit breaker
        **base, time={"timezone": "America/New_York", "blackouts": [{"start": "12:00", "end": "13:00"}]},
        risk={"circuit_breaker": {"max_drawdown": 0.5}},
    ))
    return configs


def warm_up(verbose: bool = False) -> dict[str, Any]:
    """Compile (or load from the cache) every kernel a backtest uses by running tiny backtests.

    Returns ``{"cache_dir", "kernels_cached", "seconds", "runs"}``. Safe to call repeatedly; the
    second call in a process, or the first in a process whose cache is already filled, is fast.
    """
    t0 = time.perf_counter()
    ensure_numba_cache()
    from workbench.backtest import run_backtest

    bars = _warmup_bars()
    runs = 0
    for config in _warmup_configs():
        t = time.perf_counter()
        frames = {s: bars for s in config.symbols}
        result = run_backtest(config, bars=frames)
        _ = result.trades, result.metrics, result.equity, result.portfolio.value()  # vectorbt's kernels too
        runs += 1
        if verbose:
            print(f"warm-up run {runs} ({config.sizing.mode}): {time.perf_counter() - t:.2f} s", file=sys.stderr)
    from workbench.backtest.sweep import sweep  # the sweep's own kernels (metrics, chunk runner)

    t = time.perf_counter()
    sweep(_warmup_configs()[0], {"fast": [3, 5], "slow": [20]}, bars=bars, progress=False)
    runs += 1
    if verbose:
        print(f"warm-up sweep: {time.perf_counter() - t:.2f} s", file=sys.stderr)
    out = {
        "cache_dir": str(_configured) if _configured else None,
        "kernels_cached": _count_cached(),
        "seconds": round(time.perf_counter() - t0, 3),
        "runs": runs,
    }
    if verbose:
        print(f"numba cache {out['cache_dir']}: warm-up {out['seconds']:.1f} s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.backtest.warmup``: fill the numba cache (what ``workbench warmup`` does)."""
    info = warm_up(verbose=True)
    print(f"numba cache ready in {info['cache_dir']} ({info['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
