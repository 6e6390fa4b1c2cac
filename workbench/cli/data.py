"""``workbench data``: market data from a shell. ``workbench data record`` records L2 order books and bars of
symbols for a while into the data directory (the bars cache), for the depth model of backtests."""
from __future__ import annotations

import argparse
from typing import Any


def cmd_record(args: argparse.Namespace) -> int:
    from workbench.data.books import BookStore, record

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    store = BookStore(args.data_dir)
    print(f"workbench data record: {', '.join(symbols)} on {args.exchange} for {args.minutes:g} min, a book every "
          f"{args.every:g} s ({args.depth} levels) into {store.root} (Ctrl-C stops; what was recorded is kept)")
    try:
        out = record(args.exchange, symbols, args.minutes, timeframe=args.timeframe, every=args.every,
                     depth=args.depth, store=store)
    except KeyboardInterrupt:
        print("stopped; the snapshots written so far are kept")
        return 0
    for s in symbols:
        print(f"{s}: {out.snapshots[s]} book snapshots, {out.bars[s]} {args.timeframe} bars")
    return 0


def add_data_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("data", parents=[common], help="market data: record order books and bars")
    act = p.add_subparsers(dest="action", required=True)
    rec = act.add_parser("record", help="record L2 books and bars for N minutes (the depth model's data)")
    rec.add_argument("--exchange", default="binance", help="a ccxt exchange id (default: binance)")
    rec.add_argument("--symbols", required=True, help="comma-separated, e.g. BTC/USDT,ETH/USDT")
    rec.add_argument("--minutes", type=float, required=True, help="how long to record")
    rec.add_argument("--every", type=float, default=10.0, metavar="S", help="seconds between snapshots (default 10)")
    rec.add_argument("--depth", type=int, default=20, help="book levels per side (default 20)")
    rec.add_argument("--timeframe", default="1m", help="bars to cache for the span (default 1m)")
    rec.add_argument("--data-dir", default=None, metavar="DIR",
                     help="where to write (default: the data directory's bars cache)")
    rec.set_defaults(func=cmd_record)
