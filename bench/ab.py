#!/usr/bin/env python
"""A/B speed: 8 variants over a year of 1-minute bars in one backtest A/B vs one backtest, same run.

    python bench/ab.py                        # 525,600 seeded 1m BTC/USDT bars (365 days)
    python bench/ab.py --bars 50000 --json out.json

Strategy sma_cross (as bench/backtest_vs_peers.py: 0.1 BTC per entry, 0.1 % fee, no slippage). The
8 variants are 4 parameter sets x 2 risk settings (no stop / a 2 % stop loss): what an A/B of
"which windows, and does a stop help" runs; variants with the same params share their signals.
Timed warm (kernels compiled and loaded first), median of ``--repeat``:

* one backtest: ``run_backtest(config, bars)``;
* the A/B: ``workbench.ab.ab_backtest(config, variants, bars=bars)`` (8 full results and the verdict;
  the variants run in parallel threads, as many as numba's);
* the 8 variants as 8 separate ``run_backtest`` calls (what the sharing saves);
* both again with the bars read from a CSV file by the config's data loader, as ``workbench backtest``
  and ``workbench ab`` do (the A/B reads them once).

Wall and CPU seconds are both printed (the machine may be shared; CPU seconds move less with load, and
count every thread: the parallel walks save wall time, not CPU time).
Target (issue 13): the A/B costs under 3x one backtest. The ratio printed first is with bars in memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_BARS = 525_600
SYMBOL = "BTC/USDT"
PARAMS = [{"fast": 10, "slow": 30}, {"fast": 5, "slow": 20}, {"fast": 20, "slow": 60}, {"fast": 15, "slow": 45}]
RISK = [{}, {"risk.stop_loss": 0.02}]


def variants() -> list[dict[str, Any]]:
    return [{**p, **r} for p in PARAMS for r in RISK]


def _lanes() -> int:
    import numba

    return int(numba.get_num_threads())


def timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """(median wall seconds, median CPU seconds of this process, last value) of ``repeat`` calls."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def run(n_bars: int, repeat: int) -> dict[str, Any]:
    from workbench.ab import ab_backtest, make_variants
    from workbench.backtest import run_backtest
    from workbench.config import make_config
    from workbench.data import sample_bars

    days = -(-n_bars // 1440)
    bars = {SYMBOL: sample_bars(SYMBOL, "1m", days=days).iloc[:n_bars]}
    fields: dict[str, Any] = {
        "kind": "backtest", "strategy": "sma_cross", "params": PARAMS[0], "symbols": [SYMBOL],
        "initial_balance": 1_000_000.0, "sizing": {"mode": "fixed_quantity", "value": 0.1},
        "commission": {"taker": 0.001, "maker": 0.001, "fixed": 0.0}, "slippage": {"model": "fixed", "bps": 0.0},
    }
    config = make_config(**fields)
    arms = variants()
    run_backtest(config, bars)  # warm: kernels loaded, pages touched
    ab_backtest(config, arms, bars=bars)
    one, one_cpu, _ = timed(lambda: run_backtest(config, bars), repeat)
    ab, ab_cpu, res = timed(lambda: ab_backtest(config, arms, bars=bars), repeat)
    separate = [v.config for v in make_variants(config, arms)]
    each, each_cpu, _ = timed(lambda: [run_backtest(c, bars) for c in separate], repeat)

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "btc.csv"
        frame = bars[SYMBOL].rename_axis("time").reset_index()
        frame["time"] = frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        frame.to_csv(csv, index=False)
        from_file = make_config(**{**fields, "data": {"source": "csv", "csv_path": str(csv), "timeframe": "1m"}})
        one_file, _, _ = timed(lambda: run_backtest(from_file), repeat)
        ab_file, _, _ = timed(lambda: ab_backtest(from_file, arms), repeat)
    return {
        "bars": n_bars, "variants": len(arms), "distinct_signals": len(PARAMS), "repeat": repeat,
        "one_backtest_s": one, "ab_s": ab, "ratio": ab / one, "per_variant_s": ab / len(arms),
        "one_backtest_cpu_s": one_cpu, "ab_cpu_s": ab_cpu, "cpu_ratio": ab_cpu / one_cpu,
        "lanes": _lanes(),
        "separate_backtests_s": each, "separate_backtests_cpu_s": each_cpu,
        "one_backtest_from_csv_s": one_file, "ab_from_csv_s": ab_file, "ratio_from_csv": ab_file / one_file,
        "winner": res.winner, "verdict": res.verdict.text, "target_ratio": 3.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", type=int, default=FULL_BARS, help=f"1-minute bars (default {FULL_BARS:,}: a year)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls of each, median reported (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.bars < 2000:
        print(f"bench/ab.py: --bars must be at least 2000 (got {args.bars})", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print(f"bench/ab.py: --repeat must be at least 1 (got {args.repeat})", file=sys.stderr)
        return 2
    r = run(args.bars, args.repeat)
    print(f"{r['bars']:,} bars, {r['variants']} variants ({r['distinct_signals']} distinct signal sets), "
          f"median of {r['repeat']}")
    print(f"  one backtest        {r['one_backtest_s']:.3f} s")
    print(f"  A/B of {r['variants']}            {r['ab_s']:.3f} s   ratio {r['ratio']:.2f}x (target < 3x)")
    print(f"  CPU seconds: one {r['one_backtest_cpu_s']:.3f}, A/B {r['ab_cpu_s']:.3f}, ratio {r['cpu_ratio']:.2f}x "
          f"(what load on a shared machine barely moves; the A/B's walks run in {r['lanes']} threads)")
    print(f"  the {r['variants']} variants as separate backtests: {r['separate_backtests_s']:.3f} s, "
          f"CPU {r['separate_backtests_cpu_s']:.3f} s")
    print(f"  from a CSV file: one {r['one_backtest_from_csv_s']:.3f} s, A/B {r['ab_from_csv_s']:.3f} s, "
          f"ratio {r['ratio_from_csv']:.2f}x")
    print(f"  verdict: {r['verdict']}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
