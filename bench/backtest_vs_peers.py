#!/usr/bin/env python
"""Workbench vs backtesting.py vs backtrader: one SMA-cross strategy, same bars, same fees.

    python bench/backtest_vs_peers.py                 # 525,600 seeded 1m BTC/USDT bars (365 days)
    python bench/backtest_vs_peers.py --bars 50000    # quick run
    python bench/backtest_vs_peers.py --json out.json --engines workbench,backtesting

The strategy, identical in all three: SMA(fast=10) / SMA(slow=30) of the close; a cross above
at bar t's close buys 1 BTC at bar t+1's open; a cross below sells the whole position at the next
open; long only, no pyramiding; fee 0.1 % of notional per fill; no slippage; 0.1 BTC per entry
and 1,000,000 USDT of cash. The fixed quantity is what makes the engines comparable: an all-in
order is rounded down to whole units by backtesting.py (whole BTC!) and not by the others; cash
never limits a 0.1-BTC order; and 0.1 BTC is below the smallest bar volume of the sample
(0.22 BTC), so workbench's volume rule (a fill takes at most 100 % of its bar's volume by
default) never trims an order. With 1 BTC it did, on the ~0.4 % of bars under 1 BTC.
Final equity = cash + position marked at the last close; a position still open at the end
counts as a trade in all three.

Every engine runs in its own subprocess, one after the other: peak memory is that process's
``ru_maxrss`` and timings are not disturbed by the other engines. Timed is the backtest call
itself (data generation and imports are reported apart):

* workbench (warm): median of ``--repeat`` calls of ``workbench.backtest.run_backtest`` after a
  first call, i.e. a process that has backtested before (a notebook, the host process);
* workbench (fresh process): the first ``run_backtest`` call of a new process, with numba's cache
  filled once beforehand by ``python -m workbench.backtest.warmup`` (what ``make install`` runs);
* workbench (no numba cache): the same, with caching off and an empty cache dir: vectorbt out of
  the box, every kernel compiled in the call;
* backtesting.py: ``FractionalBacktest(..., fractional_unit=0.1, commission=0.001,
  trade_on_close=False, exclusive_orders=True).run()`` (Backtest trading 0.1-BTC units);
* backtrader: ``cerebro.run()`` (cheat-on-open off, market orders fill at the next open,
  ``setcommission(commission=0.001)``, ``stdstats=False``: no observers, its fastest setup).

Trade counts must agree; the script compares the entry bars of every trade across engines and
reports the largest relative difference of the final equities.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peers import (  # noqa: E402  (bench/ is on sys.path when run as a script)
    CASH,
    ENGINES,
    FEE,
    FULL_BARS,
    QTY,
    ROOT,
    SYMBOL,
    _bars,
    _emit,
    _rss_mb,
    child_backtesting,
    child_backtrader,
)

# ----------------------------------------------------------------------------- workbench child


def _numba_stats() -> dict[str, int]:
    """Cache hits/misses and compiled signatures over vectorbt's kernels in this process."""
    from workbench.backtest.warmup import _vectorbt_dispatchers

    hits = misses = compiled = 0
    for d in _vectorbt_dispatchers():
        n = len(d.overloads)
        if not n:
            continue
        try:
            st = d.stats
            h, m = sum(st.cache_hits.values()), sum(st.cache_misses.values())
        except Exception:  # noqa: BLE001
            h, m = 0, 0
        hits += h
        misses += m
        compiled += max(0, n - h)
    return {"cache_hits": hits, "cache_misses": misses, "compiled": compiled}


def child_workbench(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    import workbench  # noqa: F401
    import workbench.backtest  # noqa: F401
    from workbench.backtest import run_backtest  # sets numba's cache dir; vectorbt stays unimported

    t_import = time.perf_counter() - t0
    rss_import = _rss_mb()

    from workbench.backtest.warmup import cache_dir
    from workbench.config import make_config

    t = time.perf_counter()
    bars = _bars(args.bars)
    t_data = time.perf_counter() - t
    config = make_config(
        kind="backtest",
        strategy="sma_cross",
        params={"fast": args.fast, "slow": args.slow},
        symbols=[SYMBOL],
        initial_balance=CASH,
        sizing={"mode": "fixed_quantity", "value": QTY},
        commission={"taker": FEE, "maker": FEE, "fixed": 0.0},
        slippage={"model": "fixed", "bps": 0.0},
    )

    t = time.perf_counter()
    result = run_backtest(config, bars=bars)
    _touch(result)
    t_first = time.perf_counter() - t
    numba_first = _numba_stats()

    warm = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = run_backtest(config, bars=bars)
        _touch(result)
        warm.append(time.perf_counter() - t)
    rss_peak = _rss_mb()

    out: dict[str, Any] = {
        "engine": "workbench",
        "bars": len(bars),
        "import_s": t_import,
        "data_s": t_data,
        "first_call_s": t_first,
        "warm_s": sorted(warm)[len(warm) // 2],
        "warm_min_s": min(warm),
        "warm_all_s": warm,
        "rss_after_import_mb": rss_import,
        "peak_rss_mb": rss_peak,
        "numba_first_call": numba_first,
        "numba_cache_dir": str(cache_dir()) if cache_dir() else os.environ.get("NUMBA_CACHE_DIR"),
        **_summary_workbench(result, bars),
    }
    if args.breakdown:
        out["breakdown"] = _breakdown(run_backtest, config, bars, args.repeat)
        out["vectorbt_extras"] = _vectorbt_extras(result)
    return out


def _touch(result) -> None:
    """Make sure lazily computed parts of a result are computed inside the timed region."""
    _ = result.equity, result.trades, result.metrics


def _summary_workbench(result, bars) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    trades = result.trades
    entries = pd.DatetimeIndex(pd.to_datetime(trades["entry_time"], utc=True))
    idx = bars.index.get_indexer(entries)
    final = float(np.asarray(result.equity)[-1])
    return {"trades": len(trades), "final_equity": final, "entry_bars": idx.tolist()}


def _breakdown(run_backtest, config, bars, repeat: int) -> dict[str, float]:
    """Warm ``run_backtest`` split by timing wrappers around its stages (median of ``repeat``):
    strategy signals, the execution kernel, building the vectorbt portfolio, building the result
    (equity/cash/exposure series, trade and order logs, metrics), and the rest (bars checks, arrays)."""
    import vectorbt as vbt

    from workbench.backtest import runner
    from workbench.strategies import registry

    targets = [("signals", registry.get(config.strategy), "signals", True)]
    for label, name in (("kernel", "_simulate"), ("vectorbt_portfolio", "_portfolio"), ("result", "build_result")):
        if hasattr(runner, name):
            targets.append((label, runner, name, False))
    if not hasattr(runner, "_portfolio"):
        for name in ("from_signals", "from_orders"):
            targets.append(("vectorbt_portfolio", vbt.Portfolio, name, False))
    acc: dict[str, float] = {}
    saved = []

    def wrap(label, fn, method):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[label] = acc.get(label, 0.0) + time.perf_counter() - t
        return timed

    for label, owner, name, method in targets:
        # a method may be inherited (e.g. ArrayStrategy.signals): restore by deleting the override then
        raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
        saved.append((owner, name, raw))
        fn = getattr(owner, name)
        setattr(owner, name, wrap(label, fn, method) if method else (
            staticmethod(wrap(label, fn, method)) if isinstance(owner, type) else wrap(label, fn, method)))
    try:
        rows = []
        for _ in range(repeat):
            acc.clear()
            t = time.perf_counter()
            r = run_backtest(config, bars=bars)
            _touch(r)
            total = time.perf_counter() - t
            rows.append({"total_s": total, **{f"{k}_s": v for k, v in acc.items()}})
    finally:
        for owner, name, raw in saved:
            if raw is None:
                delattr(owner, name)
            else:
                setattr(owner, name, raw)
    row = sorted(rows, key=lambda r: r["total_s"])[len(rows) // 2]
    row["rest_s"] = row["total_s"] - sum(v for k, v in row.items() if k != "total_s")
    return row


def _vectorbt_extras(result) -> dict[str, float]:
    """What vectorbt's own reporting costs on this portfolio (first call compiles; second is warm)."""
    pf = getattr(result, "portfolio", None)
    if pf is None:
        return {}
    out = {}
    for name, fn in (
        ("trades_records_s", lambda: pf.trades.records),
        ("trades_records_readable_s", lambda: pf.trades.records_readable),
        ("value_s", lambda: pf.value()),
        ("stats_s", lambda: pf.stats()),
    ):
        for k in ("first", "second"):
            t = time.perf_counter()
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                out[f"{name}_error"] = repr(e)[:200]
                break
            out[f"{name}_{k}"] = time.perf_counter() - t
    out["index_tz"] = str(getattr(pf.wrapper.index, "tz", None))
    return out


# ----------------------------------------------------------------------------- parent


def _spawn(mode: str, args: argparse.Namespace, env_extra: dict[str, str] | None = None,
           label: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--bars", str(args.bars),
           "--fast", str(args.fast), "--slow", str(args.slow), "--repeat", str(args.repeat)]
    if mode == "workbench" and not args.no_breakdown and label == "workbench":
        cmd.append("--breakdown")
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    print(f"-> {label or mode} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=str(ROOT), text=True)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{label or mode} failed (exit {proc.returncode}); output:\n{out[-4000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    res["label"] = label or mode
    res["process_wall_s"] = wall
    res["child_maxrss_mb"] = ru.ru_maxrss / 1024.0
    print(f"   done in {wall:.1f} s", file=sys.stderr, flush=True)
    return res


def _warmup_install() -> float:
    """``python -m workbench.backtest.warmup``: what ``make install`` runs once (fills numba's cache)."""
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "workbench.backtest.warmup"], check=True, env=env, cwd=str(ROOT))
    return time.perf_counter() - t


def _compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ref = next((r for r in rows if r["engine"] == "workbench"), rows[0])
    ref_set = set(ref["entry_bars"])
    out: dict[str, Any] = {"reference": ref["label"]}
    for r in rows:
        s = set(r["entry_bars"])
        out[r["label"]] = {
            "trades": r["trades"],
            "entry_bars_only_here": len(s - ref_set),
            "entry_bars_missing": len(ref_set - s),
            "final_equity_rel_diff": (r["final_equity"] - ref["final_equity"]) / ref["final_equity"],
            "final_equity_abs_diff": r["final_equity"] - ref["final_equity"],
        }
    return out


def _fmt_table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def report(res: dict[str, Any]) -> str:
    n = res["bars"]
    lines = [f"SMA cross {res['fast']}/{res['slow']} on {n:,} seeded 1m {SYMBOL} bars; fee {FEE:.1%}/side, "
             f"no slippage, {QTY:g} BTC per entry, cash {CASH:,.0f}"]
    rows = []

    def row(label: str, r: dict[str, Any], t: float) -> None:
        rows.append((label, f"{t:.3f}", f"{n / t:,.0f}", f"{r['peak_rss_mb']:,.0f}", f"{r['trades']:,}",
                     f"{r['final_equity']:,.2f}"))

    for r in res["rows"]:
        if r["label"] == "workbench":
            row("workbench, warm (median)", r, r["warm_s"])
            row("workbench, fresh process 1st call", r, r["first_call_s"])
        elif r["engine"] == "workbench":
            row("workbench, fresh process 1st call, no numba cache", r, r["first_call_s"])
        else:
            row(r["label"], r, r["warm_s"])
    lines.append(_fmt_table(rows, ("engine", "wall s", "bars/s", "peak MB", "trades", "final equity")))
    lines.append("(timed: the backtest call only; fresh process = new interpreter with workbench and the bars\n"
                 " already loaded, numba cache filled by the install-time warm-up; peak MB = ru_maxrss of that\n"
                 " engine's process after its timed runs, imports included)")
    if res.get("ratios"):
        lines.append("")
        for k, v in res["ratios"].items():
            lines.append(f"{k}: {v:,.1f}x")
    wb = next((r for r in res["rows"] if r["label"] == "workbench"), None)
    if wb:
        lines.append("")
        lines.append(f"fresh process: import workbench {wb['import_s']:.2f} s, sample bars {wb['data_s']:.2f} s, "
                     f"first run_backtest {wb['first_call_s']:.2f} s (numba: {wb['numba_first_call']}), "
                     f"warm median {wb['warm_s']:.3f} s (min {wb['warm_min_s']:.3f}); import + 1st call = "
                     f"{wb['import_s'] + wb['first_call_s']:.2f} s")
        nc = next((r for r in res["rows"] if r["label"] == "workbench (no numba cache)"), None)
        if nc:
            lines.append(f"without numba cache: import {nc['import_s']:.2f} s, "
                         f"first run_backtest {nc['first_call_s']:.2f} s (numba: {nc['numba_first_call']})")
        if res.get("warmup_install_s") is not None:
            lines.append(f"install-time warm-up (python -m workbench.backtest.warmup): {res['warmup_install_s']:.1f} s")
        if "breakdown" in wb:
            b = wb["breakdown"]
            lines.append("warm run_backtest split: " + ", ".join(f"{k[:-2]} {v:.3f} s" for k, v in b.items()))
        if wb.get("vectorbt_extras"):
            e = wb["vectorbt_extras"]
            lines.append("vectorbt reporting on the result portfolio (1st / 2nd call): " + ", ".join(
                f"{k[:-6]} {e[k]:.2f}/{e.get(k[:-6] + '_second', float('nan')):.2f} s"
                for k in e if k.endswith("_first")) + f"; index tz {e.get('index_tz')}")
    lines.append("")
    lines.append("agreement (vs workbench): " + "; ".join(
        f"{k}: {v['trades']} trades, {v['entry_bars_only_here']} extra/{v['entry_bars_missing']} missing entry bars, "
        f"final equity {v['final_equity_abs_diff']:+,.2f} ({v['final_equity_rel_diff']:+.2e})"
        for k, v in res["agreement"].items() if k != "reference"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bars", type=int, default=FULL_BARS, help="number of 1m bars (default 525600 = 365 days)")
    p.add_argument("--fast", type=int, default=10)
    p.add_argument("--slow", type=int, default=30)
    p.add_argument("--repeat", type=int, default=7, help="warm workbench calls (median reported)")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    p.add_argument("--no-uncached", action="store_true", help="skip the workbench run without numba cache")
    p.add_argument("--no-warmup", action="store_true", help="do not run the install-time warm-up first")
    p.add_argument("--no-breakdown", action="store_true", help="skip the timing split and vectorbt extras")
    p.add_argument("--json", metavar="FILE", help="also write all figures to FILE")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        children = {"workbench": child_workbench, "backtesting": child_backtesting, "backtrader": child_backtrader}
        fn = children[args.child]
        _emit(fn(args))
        return 0

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        p.error(f"unknown engine(s) {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    res: dict[str, Any] = {"bars": args.bars, "fast": args.fast, "slow": args.slow, "rows": [],
                           "python": sys.version.split()[0], "cpus": os.cpu_count()}
    if "workbench" in engines:
        res["warmup_install_s"] = None if args.no_warmup else _warmup_install()
        res["rows"].append(_spawn("workbench", args, label="workbench"))
        if not args.no_uncached:
            with tempfile.TemporaryDirectory(prefix="numba-empty-") as empty:
                res["rows"].append(_spawn("workbench", args, label="workbench (no numba cache)",
                                          env_extra={"WORKBENCH_NUMBA_CACHE": "0", "NUMBA_CACHE_DIR": empty}))
    for e in engines:
        if e != "workbench":
            res["rows"].append(_spawn(e, args, label={"backtesting": "backtesting.py"}.get(e, e)))
    wb = next((r for r in res["rows"] if r["label"] == "workbench"), None)
    if wb:
        ratios = {}
        for r in res["rows"]:
            if r["engine"] in ("backtesting", "backtrader"):
                ratios[f"{r['label']} time / workbench warm time"] = r["warm_s"] / wb["warm_s"]
                ratios[f"{r['label']} time / workbench fresh-process 1st call"] = r["warm_s"] / wb["first_call_s"]
        res["ratios"] = ratios
    res["agreement"] = _compare(res["rows"])
    text = report(res)
    print(text)
    if args.json:
        slim = {**res, "rows": [{k: v for k, v in r.items() if k != "entry_bars"} for r in res["rows"]],
                "report": text}
        Path(args.json).write_text(json.dumps(slim, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
