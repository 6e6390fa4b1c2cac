"""``python -m tests.exchange [--port-file F] [--bar-seconds S]``: run the loopback exchange for a manual demo."""
from __future__ import annotations

import argparse
import time

from .server import API_KEY, API_SECRET, LoopbackExchange


def main() -> None:
    ap = argparse.ArgumentParser(description="Run the loopback Binance-compatible exchange on 127.0.0.1.")
    ap.add_argument("--clock", default="2024-01-15", help="start of the virtual clock (default 2024-01-15)")
    ap.add_argument("--bar-seconds", type=float, default=1.0, help="real seconds per 1-minute bar (default 1)")
    args = ap.parse_args()
    with LoopbackExchange(clock=args.clock, bar_seconds=args.bar_seconds) as ex:
        print(f"loopback exchange at {ex.url} (key {API_KEY!r}, secret {API_SECRET!r}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
