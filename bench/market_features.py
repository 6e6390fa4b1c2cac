#!/usr/bin/env python
"""What issue 15's market realism costs a backtest: the same SMA-cross year of 1-minute bars with each
feature on, against the features off, same run.

    python bench/market_features.py                 # 525,600 seeded 1m BTC/USDT bars (365 days)
    python bench/market_features.py --bars 50000 --json out.json

The rows (each warm, median of ``--repeat`` ``run_backtest`` calls; the kernels are compiled first):

* ``off``: long only, spot, no latency (what ``backtest_vs_peers.py`` times);
* ``shorts``: ``direction='both'`` (a signal to the other side reverses the position);
* ``shorts+margin``: both sides, 3x leverage, a constant funding rate and borrow interest (every held bar
  carries a funding/interest row);
* ``shorts+margin+series``: the same with a funding-rate series (one rate per 8 h) instead of the constant;
* ``latency``: long only with a one-bar order latency;
* ``base currency``: ETH/BTC in a USDT session (bars converted through BTC/USDT before the walk).

Printed: seconds and the ratio to ``off``. Trades are printed too: the features change what is traded.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_BARS = 525_600


def _timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run(n_bars: int, repeat: int) -> list[dict[str, Any]]:
    import pandas as pd

    from workbench.backtest import run_backtest
    from workbench.config import make_config
    from workbench.data import sample_bars

    days = -(-n_bars // 1440)
    btc = sample_bars("BTC/USDT", "1m", days=days).iloc[:n_bars]
    eth_btc = sample_bars("ETH/BTC", "1m", days=days).iloc[:n_bars]
    base: dict[str, Any] = {
        "kind": "backtest", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbols": ["BTC/USDT"],
        "initial_balance": 1_000_000.0, "sizing": {"mode": "fixed_quantity", "value": 0.1},
        "commission": {"taker": 0.001, "maker": 0.001, "fixed": 0.0}, "slippage": {"model": "fixed", "bps": 0.0},
    }
    margin = {"leverage": 3.0, "maintenance": 0.05, "borrow_rate": 0.05, "funding_rate": 0.0001}
    funding = pd.Series(0.0001, index=pd.date_range(btc.index[0].floor("8h"), btc.index[-1], freq="8h"))
    cases: list[tuple[str, dict[str, Any], dict[str, pd.DataFrame], Any]] = [
        ("off", {}, {"BTC/USDT": btc}, None),
        ("shorts", {"direction": "both"}, {"BTC/USDT": btc}, None),
        ("shorts+margin", {"direction": "both", "margin": margin}, {"BTC/USDT": btc}, None),
        ("shorts+margin+series", {"direction": "both", "margin": margin}, {"BTC/USDT": btc}, funding),
        ("latency", {"latency": {"bars": 1}}, {"BTC/USDT": btc}, None),
        ("base currency", {"symbols": ["ETH/BTC"], "base_currency": "USDT", "sizing": {"mode": "fixed_quantity",
                                                                                         "value": 1.0}},
         {"ETH/BTC": eth_btc, "BTC/USDT": btc}, None),
    ]
    rows: list[dict[str, Any]] = []
    for name, changes, bars, series in cases:
        config = make_config(**{**base, **changes})
        kwargs = {} if series is None else {"funding": series}
        run_backtest(config, bars, **kwargs)  # warm: kernels compiled and loaded
        seconds, res = _timed(lambda c=config, b=bars, k=kwargs: run_backtest(c, b, **k), repeat)
        rows.append({"case": name, "seconds": seconds, "trades": len(res.trades)})
    off = rows[0]["seconds"]
    for r in rows:
        r["ratio_to_off"] = r["seconds"] / off
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=FULL_BARS)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    rows = run(a.bars, a.repeat)
    print(f"{'case':<24}{'seconds':>10}{'x off':>8}{'trades':>9}")
    for r in rows:
        print(f"{r['case']:<24}{r['seconds']:>10.3f}{r['ratio_to_off']:>8.2f}{r['trades']:>9}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
