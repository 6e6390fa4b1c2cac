"""Sample-data generation speed: a year of 1-minute bars for one symbol, from a cold generator cache.

    python bench/sample_data.py                # 365 days of BNB/USDT, best of 3 cold runs
    python bench/sample_data.py --days 90 --repeat 5

Target: well under 3 s for 525,600 bars on 2 cores (measured ~0.3 s). Exits 1 above ``--limit``.
(The matching correctness checks live in tests/test_data_sample.py.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.data import sample_bars  # noqa: E402
from workbench.data.sample import _minute_path, _sample  # noqa: E402


def cold_seconds(symbol: str, days: int) -> float:
    """Seconds to generate ``days`` days of 1m bars with the generator's caches emptied first."""
    _sample.cache_clear()
    _minute_path.cache_clear()
    t0 = time.perf_counter()
    bars = sample_bars(symbol, days=days)
    elapsed = time.perf_counter() - t0
    assert len(bars) == days * 1440, len(bars)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbol", default="BNB/USDT")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=float, default=3.0, help="fail (exit 1) if the best run is slower (seconds)")
    args = ap.parse_args()
    best = min(cold_seconds(args.symbol, args.days) for _ in range(args.repeat))
    bars = args.days * 1440
    print(f"{args.symbol}: {bars:,} bars in {best:.3f} s (best of {args.repeat}), {bars / best:,.0f} bars/s")
    return 0 if best <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
