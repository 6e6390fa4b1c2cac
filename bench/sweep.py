#!/usr/bin/env python
"""Parameter sweep speed: workbench.sweep vs backtesting.py's Backtest.optimize.

    python bench/sweep.py                          # 1,000 combos (10x10x10) over 525,600 1m bars
    python bench/sweep.py --combos 64 --bars 50000 # quick run

Strategy (both engines): momentum, ROC = close / close[window bars ago] - 1; ROC > entry_threshold
at bar t's close buys 0.1 BTC at bar t+1's open; ROC < exit_threshold sells it at the next open;
long only, fee 0.1 % per fill, no slippage, 1,000,000 USDT of cash. Grid: window x
entry_threshold x exit_threshold (exit <= entry always, so every combination is valid).
backtesting.py runs a reduced grid (``--bt-combos``, default 4, rounded up to a cube: 2 x 2 x 2)
on the same bars; the ratio is per combination. Peak memory is ``ru_maxrss`` after the workbench sweep
(before backtesting.py).

Both engines use both cores (numba threads; backtesting.py's process pool), so wall times move with
whatever else runs on the machine. The script therefore also prints CPU seconds per combination
(user + sys of this process and its reaped children) and the CPU ratio, which load barely moves.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from backtesting import Strategy  # noqa: E402  (module level: optimize pickles the class)


def roc(close: np.ndarray, window: int) -> np.ndarray:
    """close / close[window bars ago] - 1, NaN while warming up (as workbench's momentum)."""
    close = np.asarray(close, dtype=float)
    prev = np.full(len(close), np.nan)
    prev[window:] = close[:-window]
    return close / prev - 1.0


class BtMomentum(Strategy):
    """backtesting.py twin of workbench's momentum rule."""

    window = 60
    entry_threshold = 0.01
    exit_threshold = 0.0

    def init(self) -> None:
        self.roc = self.I(roc, self.data.Close, self.window)

    def next(self) -> None:
        r = self.roc[-1]
        if not self.position and r > self.entry_threshold:
            self.buy(size=1)  # one fractional unit = 0.1 BTC
        elif self.position and r < self.exit_threshold:
            self.position.close()


def grid_for(combos: int) -> dict[str, list]:
    """A near-cubic grid of about ``combos`` combinations (10x10x10 for 1,000)."""
    k = max(1, round(combos ** (1 / 3)))
    windows = [int(w) for w in np.linspace(10, 400, k).round()]
    entries = [float(x) for x in np.linspace(0.002, 0.02, k).round(6)]
    exits = [float(x) for x in np.linspace(-0.02, 0.0, k).round(6)]
    return {"window": windows, "entry_threshold": entries, "exit_threshold": exits}


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_workbench(bars, grid: dict, chunk_size: int) -> dict:
    from workbench.backtest.sweep import sweep
    from workbench.config import make_config

    config = make_config(
        strategy="momentum", symbols=["BTC/USDT"], initial_balance=1_000_000,
        sizing={"mode": "fixed_quantity", "value": 0.1}, commission={"taker": 0.001, "maker": 0.001},
        slippage={"bps": 0.0},
    )
    warm = {k: v[:1] for k, v in grid.items()}
    t = time.perf_counter()
    sweep(config, warm, bars=bars.iloc[:5000], progress=False)  # load (or compile) the kernels
    warmup = time.perf_counter() - t
    cpu, t = cpu_seconds(), time.perf_counter()
    res = sweep(config, grid, bars=bars, chunk_size=chunk_size, progress=True)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"combos": len(res.frame), "skipped": res.skipped, "wall_s": wall, "cpu_s": cpu, "warmup_s": warmup,
            "combos_per_s": len(res.frame) / wall, "peak_mib": peak, "result": res}


def run_backtesting(bars, grid: dict, combos: int) -> dict:
    import warnings

    from backtesting.lib import FractionalBacktest

    df = bars.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    df.index = df.index.tz_localize(None)
    per = max(1, round(combos ** (1 / 3)))
    small = {k: v[:: max(1, len(v) // per)][:per] for k, v in grid.items()}
    bt = FractionalBacktest(df, BtMomentum, cash=1_000_000, commission=0.001, fractional_unit=0.1,
                            trade_on_close=False, exclusive_orders=False, finalize_trades=True)
    n = math.prod(len(v) for v in small.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu, t = cpu_seconds(), time.perf_counter()
        stats = bt.optimize(**small, maximize="Sharpe Ratio", max_tries=None, return_heatmap=False)
        wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu  # the pool's workers are reaped by now
    return {"combos": n, "wall_s": wall, "cpu_s": cpu, "combos_per_s": n / wall, "best_trades": int(stats["# Trades"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--combos", type=int, default=1000, help="workbench grid size (rounded to a cube)")
    ap.add_argument("--bars", type=int, default=525_600, help="1-minute bars (525,600 = 365 days)")
    ap.add_argument("--bt-combos", type=int, default=4, help="backtesting.py grid size (0 = skip)")
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()

    from workbench.data import sample_bars

    days = math.ceil(args.bars / 1440)
    bars = sample_bars("BTC/USDT", days=days).iloc[: args.bars]
    grid = grid_for(args.combos)
    wb = run_workbench(bars, grid, args.chunk_size)
    per_wb = wb["wall_s"] / wb["combos"]
    print(f"bars: {len(bars):,} 1m BTC/USDT; grid {' x '.join(str(len(v)) for v in grid.values())}")
    print(f"workbench.sweep: {wb['combos']:,} combos in {wb['wall_s']:.2f} s "
          f"({wb['combos_per_s']:.1f} combos/s, {per_wb * 1e3:.1f} ms/combo; "
          f"CPU {wb['cpu_s'] / wb['combos'] * 1e3:.1f} ms/combo), peak memory {wb['peak_mib']:.0f} MiB, "
          f"kernel load/compile {wb['warmup_s']:.2f} s")
    best = wb["result"].best("sharpe_ratio")
    print("  best by Sharpe:", {k: best[k].item() if hasattr(best[k], "item") else best[k] for k in grid},
          f"sharpe={best['sharpe_ratio']:.3f}")
    out = {k: v for k, v in wb.items() if k != "result"}
    out = {"bars": len(bars), "workbench": out}
    ok = wb["wall_s"] * 1000 / max(wb["combos"], 1) < 60 and wb["peak_mib"] < 4096
    if args.bt_combos:
        bt = run_backtesting(bars, grid, args.bt_combos)
        per_bt = bt["wall_s"] / bt["combos"]
        ratio = per_bt / per_wb
        cpu_ratio = (bt["cpu_s"] / bt["combos"]) / (wb["cpu_s"] / wb["combos"])
        print(f"backtesting.py optimize: {bt['combos']} combos in {bt['wall_s']:.2f} s ({per_bt:.2f} s/combo; "
              f"CPU {bt['cpu_s'] / bt['combos']:.2f} s/combo)")
        print(f"per-combination speed-up: {ratio:,.0f}x wall (target >= 200x), {cpu_ratio:,.0f}x CPU time")
        out["backtesting"], out["ratio"], out["cpu_ratio"] = bt, ratio, cpu_ratio
        ok = ok and ratio >= 200
    print("targets (1,000 combos < 60 s scaled, peak < 4 GB, >= 200x):", "met" if ok else "NOT met")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
