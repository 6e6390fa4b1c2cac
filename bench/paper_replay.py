"""Paper session replay benchmark: one symbol, 525,600 1-minute bars, as fast as possible.

    python bench/paper_replay.py                      # 525,600 seeded 1m BTC/USDT bars (365 days)
    python bench/paper_replay.py --bars 50000 --strategy momentum --json out.json

The whole session path runs: ReplayFeed -> Session -> Trader step (strategy ``last_signal``, risk
engine, paper broker, portfolio) -> store (a real SQLite file in a temp dir: fills, orders, positions, equity points
and runner state written at checkpoints, heartbeats and command polls on the side task). Prints:

* bars/s over the loop (first bar in to last bar done, checkpoints and polls included) and over the
  whole ``run()`` (with start-up and the final bookkeeping: trades, metrics over the stored curve);
* per-bar decision latency p50/p99/p99.9/max: bar in -> orders out (``Session._on_bar``: the trader
  step and the session's equity point);
* RSS at 10 %, 50 % and 100 % of the bars (flat memory: no growth with bars beyond the store);
* a parity check: the same trades as the vectorized backtest of the same bars and config.
Targets (issues 3 and 10): >= 40,000 bars/s, p99 < 1 ms, flat memory. The machine may be shared: the
bars per CPU-second figure is the one less sensitive to other load.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_BARS = 525_600
SYMBOL = "BTC/USDT"
PARAMS = {"sma_cross": {"fast": 10, "slow": 30}, "momentum": {"window": 60, "entry_threshold": 0.004},
          "mean_reversion": {"window": 60, "entry_z": 2.0}, "pump_detection": {}}


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_bars: int, strategy: str, check: bool = True) -> dict[str, Any]:
    from workbench.backtest import run_backtest
    from workbench.config import make_config
    from workbench.data import sample_bars
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.session import Session
    from workbench.store import Store

    bars = sample_bars(SYMBOL, timeframe="1m", days=math.ceil(n_bars / 1440)).iloc[:n_bars]
    config = make_config(kind="paper", strategy=strategy, params=PARAMS[strategy], symbols=[SYMBOL],
                         initial_balance=100_000,
                         sizing={"mode": "fixed_quantity", "value": 0.1}, commission={"taker": 0.001},
                         risk={"stop_loss": 0.01, "take_profit": 0.02, "trailing_stop": 0.008})
    marks = {max(1, round(n_bars * f)): f"{int(f * 100)}%" for f in (0.1, 0.5, 1.0)}
    lat = np.zeros(n_bars, dtype=np.int64)
    rss: dict[str, float] = {}
    clock = time.perf_counter_ns

    class TimedSession(Session):
        """Session whose per-bar step is timed: bar in -> orders out."""

        def _on_bar(self, b: dict) -> None:
            t0 = clock()
            super()._on_bar(b)
            i = self.bars_seen - 1
            lat[i] = clock() - t0
            if i == 0:
                self.loop_start, self.cpu_start = t0, time.process_time()
            if self.bars_seen in marks:
                rss[marks[self.bars_seen]] = round(rss_mb(), 1)

        def _final_bookkeeping(self) -> None:
            self.loop_end, self.cpu_end = clock(), time.process_time()  # the feed ended: bookkeeping follows
            super()._final_bookkeeping()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        feed = ReplayFeed({SYMBOL: bars}, None)
        session = TimedSession(config, store, feed=feed, poll_interval=0.5)
        rss_before = rss_mb()
        t0 = time.perf_counter()
        state = asyncio.run(session.run())
        wall = time.perf_counter() - t0
        n = session.bars_seen
        loop_s = (session.loop_end - session.loop_start) / 1e9
        fills = store.fills(session.id)
        eq_points = len(store.equity(session.id))
        db_mb = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 2**20  # with the WAL
        store.close()
    if state.value != "completed":
        raise SystemExit(f"session ended {state.value}: {session.error}")
    pf = session.portfolio
    out: dict[str, Any] = {
        "bars": n, "strategy": strategy, "loop_cpu_s": round(session.cpu_end - session.cpu_start, 3),
        "load_avg": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "wall_s": round(wall, 3), "loop_s": round(loop_s, 3),
        "bars_per_s_loop": round(n / loop_s), "bars_per_s_run": round(n / wall),
        "latency_us": {k: round(float(np.percentile(lat[:n], q)) / 1e3, 2)
                       for k, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9), ("max", 100))},
        "rss_mb": {"before": round(rss_before, 1), **rss}, "trades": len(pf.trades), "fills": len(fills),
        "equity_points": eq_points, "db_mb": round(db_mb, 1), "final_equity": pf.equity,
    }
    assert fills.fill_id.is_unique and len(fills) == 2 * len(pf.trades) + len(pf.trade_log()) - len(pf.trades)
    if check:
        bt = run_backtest(config, {SYMBOL: bars})
        got, want = pd.DataFrame(pf.trade_log()), bt.trades
        out["same_trades_as_backtest"] = bool(
            len(got) == len(want)
            and (pd.to_datetime(got.entry_time, utc=True).to_numpy() == want.entry_time.to_numpy()).all()
            and _ns_times(got.exit_time).equals(_ns_times(want.exit_time))
            and got.exit_reason.fillna("").tolist() == want.exit_reason.fillna("").tolist()
            and np.allclose(got.quantity, want.quantity, rtol=1e-9)
            and np.allclose(got.exit_price, want.exit_price, rtol=1e-9))
    return out


def _ns_times(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).dt.as_unit("ns").reset_index(drop=True)


def report(r: dict[str, Any]) -> str:
    lat, rss = r["latency_us"], r["rss_mb"]
    lines = [
        f"paper replay, {r['strategy']}, {r['bars']:,} 1m bars of {SYMBOL}, SQLite store"
        f" (1-min load average {r['load_avg']})",
        f"  loop      {r['loop_s']:.2f} s   {r['bars_per_s_loop']:,} bars/s   (target >= 40,000)",
        f"  loop CPU  {r['loop_cpu_s']:.2f} s   {round(r['bars'] / r['loop_cpu_s']):,} bars per CPU-second"
        "   (this process, all threads: less sensitive to other load on the machine)",
        f"  run()     {r['wall_s']:.2f} s   {r['bars_per_s_run']:,} bars/s   (with start-up and final bookkeeping)",
        f"  latency   p50 {lat['p50']} us   p99 {lat['p99']} us   p99.9 {lat['p99.9']} us   max {lat['max']} us"
        "   (bar in -> orders out; target p99 < 1000 us)",
        "  RSS MiB   " + "   ".join(f"{k} {v}" for k, v in rss.items()),
        f"  store     {r['fills']:,} fills, {r['equity_points']:,} equity points, {r['db_mb']} MiB;"
        f" {r['trades']:,} closed trades; final equity {r['final_equity']:.2f}",
    ]
    if "same_trades_as_backtest" in r:
        lines.append(f"  parity    same trades as the vectorized backtest: {r['same_trades_as_backtest']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bars", type=int, default=FULL_BARS, help="number of 1m bars (default 525600 = 365 days)")
    p.add_argument("--strategy", default="sma_cross", choices=sorted(PARAMS))
    p.add_argument("--no-check", action="store_true", help="skip the backtest parity check")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    if a.bars < 100:
        p.error(f"--bars must be at least 100 (got {a.bars})")
    r = run(a.bars, a.strategy, check=not a.no_check)
    print(report(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
