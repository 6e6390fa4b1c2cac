"""numba cache configuration and the install-time warm-up (each check in a fresh interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env: dict[str, str]) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "WORKBENCH_NUMBA_CACHE")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_dir_defaults_to_the_shared_cache_dir(tmp_path):
    res = _run(
        """
        import json, os
        from workbench.backtest import warmup
        path = warmup.configure_numba_cache()
        import numba
        print(json.dumps({"path": str(path), "env": os.environ["NUMBA_CACHE_DIR"], "numba": numba.config.CACHE_DIR}))
        """,
        {"WORKBENCH_HOME": str(tmp_path / "home"), "WORKBENCH_CACHE": str(tmp_path / "cache")},
    )
    expected = str((tmp_path / "cache" / "numba").resolve())
    assert res == {"path": expected, "env": expected, "numba": expected}


def test_explicit_numba_cache_dir_wins_and_kernels_use_it(tmp_path):
    res = _run(
        """
        import json
        from workbench.backtest import warmup
        warmup.ensure_numba_cache()
        import vectorbt.portfolio.nb as pnb
        from workbench.execution import simulate as kernel
        print(json.dumps({
            "dir": str(warmup.cache_dir()),
            "vbt": str(pnb.simulate_from_signals_nb._cache._cache_path),
            "wb": str(kernel.fills_nb._cache._cache_path),
            "count": warmup._count_cached(),
        }))
        """,
        {"WORKBENCH_HOME": str(tmp_path / "home"), "NUMBA_CACHE_DIR": str(tmp_path / "nc")},
    )
    nc = str((tmp_path / "nc").resolve())
    assert res["dir"] == nc
    assert res["vbt"].startswith(nc) and res["wb"].startswith(nc)
    assert res["count"] > 100


def test_disabled_by_env(tmp_path):
    res = _run(
        """
        import json
        from workbench.backtest import warmup
        print(json.dumps({"path": warmup.configure_numba_cache(), "n": warmup.enable_vectorbt_caching()}))
        """,
        {"WORKBENCH_HOME": str(tmp_path), "WORKBENCH_NUMBA_CACHE": "0"},
    )
    assert res == {"path": None, "n": 0}


@pytest.mark.slow
def test_warm_up_fills_the_cache_for_the_next_process(tmp_path):
    env = {"WORKBENCH_HOME": str(tmp_path), "WORKBENCH_CACHE": str(tmp_path)}
    first = _run("import json; from workbench.backtest.warmup import warm_up; print(json.dumps(warm_up()))", env)
    assert first["runs"] >= 3 and any((tmp_path / "numba").rglob("*.nbi"))
    second = _run(
        """
        import json, time
        from workbench.backtest import run_backtest, warmup
        from workbench.config import make_config
        bars = warmup._warmup_bars(2000)
        config = make_config(strategy="sma_cross", params={"fast": 10, "slow": 30},
                             sizing={"mode": "fixed_quantity", "value": 0.1})
        t = time.perf_counter()
        run_backtest(config, bars=bars)
        seconds = time.perf_counter() - t
        hits = misses = 0
        for d in warmup._vectorbt_dispatchers():
            if d.overloads:
                hits += sum(d.stats.cache_hits.values()); misses += sum(d.stats.cache_misses.values())
        print(json.dumps({"seconds": seconds, "hits": hits, "misses": misses}))
        """,
        env,
    )
    assert second["hits"] > 0 and second["misses"] == 0, second
