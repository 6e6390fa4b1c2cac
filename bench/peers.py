"""The peers of bench/backtest_vs_peers.py: backtesting.py and backtrader running the same SMA cross on
the same bars (see that script's docstring), each in its own child process, plus the helpers the
children share."""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYMBOL = "BTC/USDT"
FULL_BARS = 525_600
CASH = 1_000_000.0
QTY = 0.1  # BTC; below every bar's volume (min 0.22 BTC), so workbench's volume cap never binds
FEE = 0.001
ENGINES = ("workbench", "backtesting", "backtrader")


# ----------------------------------------------------------------------------- shared helpers


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _bars(n: int):
    from workbench.data import sample_bars

    days = max(1, math.ceil(n / 1440))
    bars = sample_bars(SYMBOL, timeframe="1m", days=days)
    return bars.iloc[:n]


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- backtesting.py child


def child_backtesting(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover

    t_import = time.perf_counter() - t0
    t = time.perf_counter()
    bars = _bars(args.bars)
    df = bars.rename(columns=str.capitalize)
    df.index = df.index.tz_localize(None)
    t_data = time.perf_counter() - t
    fast, slow = args.fast, args.slow

    close = df["Close"].to_numpy()  # unscaled (FractionalBacktest scales the data it shows the strategy)

    def sma(n):
        return pd.Series(close).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self):
            self.f = self.I(sma, fast)
            self.s = self.I(sma, slow)

        def next(self):
            if crossover(self.f, self.s):  # noqa: SIM102  (the peer strategy as its docs write it)
                if not self.position:
                    self.buy(size=1)  # one unit = QTY BTC (fractional_unit)
            elif crossover(self.s, self.f):  # noqa: SIM102
                if self.position:
                    self.position.close()

    # backtesting.py trades whole units; FractionalBacktest makes one unit = QTY BTC
    bt = FractionalBacktest(df, SmaCross, fractional_unit=QTY, cash=CASH, commission=FEE, trade_on_close=False,
                            exclusive_orders=True, finalize_trades=False)
    rss_before = _rss_mb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        stats = bt.run()
        t_run = time.perf_counter() - t
    strat = stats["_strategy"]
    closed = stats["_trades"]
    open_trades = list(strat.trades)
    entry_bars = closed["EntryBar"].astype(int).tolist() + [tr.entry_bar for tr in open_trades]
    return {
        "engine": "backtesting",
        "bars": len(df),
        "import_s": t_import,
        "data_s": t_data,
        "warm_s": t_run,
        "rss_before_run_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
        "trades": len(closed) + len(open_trades),
        "open_trades": len(open_trades),
        "final_equity": float(stats["Equity Final [$]"]),
        "entry_bars": sorted(int(b) for b in entry_bars),
        "version": __import__("backtesting").__version__,
        "_np": np.__version__,
    }


# ----------------------------------------------------------------------------- backtrader child


def child_backtrader(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    import backtrader as bt

    t_import = time.perf_counter() - t0
    t = time.perf_counter()
    bars = _bars(args.bars)
    df = bars.copy()
    df.index = df.index.tz_localize(None)
    t_data = time.perf_counter() - t
    fast, slow = args.fast, args.slow

    class SmaCross(bt.Strategy):
        def __init__(self):
            f = bt.ind.SMA(self.data.close, period=fast)
            s = bt.ind.SMA(self.data.close, period=slow)
            self.cross = bt.ind.CrossOver(f, s)
            self.entry_bars: list[int] = []

        def notify_order(self, order):
            if order.status == order.Completed and order.isbuy():
                self.entry_bars.append(len(self.data) - 1)  # the bar it filled on (its open)

        def next(self):
            if not self.position:
                if self.cross[0] > 0:
                    self.buy(size=QTY)
            elif self.cross[0] < 0:
                self.close()

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.adddata(bt.feeds.PandasData(dataname=df, openinterest=None))
    cerebro.addstrategy(SmaCross)
    rss_before = _rss_mb()
    t = time.perf_counter()
    strat = cerebro.run()[0]
    t_run = time.perf_counter() - t
    return {
        "engine": "backtrader",
        "bars": len(df),
        "import_s": t_import,
        "data_s": t_data,
        "warm_s": t_run,
        "rss_before_run_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
        "trades": len(strat.entry_bars),
        "final_equity": float(cerebro.broker.getvalue()),
        "entry_bars": strat.entry_bars,
        "version": bt.__version__,
    }
