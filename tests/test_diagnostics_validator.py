"""The market data validator on a frame with a known gap, duplicate, outlier, invalid bar and stale period,
and the live feed's REST vs websocket cross-check."""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from workbench.diagnostics.validator import cross_check, duplicates, gaps, outliers, stale_periods, validate
from workbench.engine.live_feed import LiveFeed

T0 = pd.Timestamp("2024-01-08 00:00", tz="UTC")
MIN = pd.Timedelta("1min")


def bars() -> pd.DataFrame:
    """80 one-minute bars; returns -0.1 %, 0, +0.1 % in turn, except: +5 % at bar 40 (a jump), bars 50-55 did
    not trade (flat, volume 0), bar 60's high is below its close; bars 10-12 are missing and bar 20 comes twice."""
    rows, close = [], 100.0
    for i in range(80):
        ret = 0.05 if i == 40 else 0.0 if 50 <= i <= 55 else 0.001 * ((i % 3) - 1)
        o, c = close, close * np.exp(ret)
        flat = 50 <= i <= 55
        h, lo = (c, c) if flat else (max(o, c) * 1.0005, min(o, c) * 0.9995)
        rows.append({"time": T0 + i * MIN, "open": o, "high": c * 0.999 if i == 60 else h, "low": lo, "close": c,
                     "volume": 0.0 if flat else 5.0})
        close = c
    frame = pd.DataFrame(rows).set_index("time")
    frame = frame.drop(index=[T0 + i * MIN for i in (10, 11, 12)])
    again = frame.loc[[T0 + 20 * MIN]].assign(volume=7.0)
    return pd.concat([frame, again])


def test_each_check_finds_what_was_planted():
    frame = bars()
    assert gaps(frame, "1m").to_dict("records") == [{"after": T0 + 9 * MIN, "before": T0 + 13 * MIN, "missing": 3}]
    assert duplicates(frame).to_dict("records") == [{"time": T0 + 20 * MIN, "count": 2, "differs": True}]
    found = outliers(frame)
    assert list(zip(found["time"], found["kind"])) == [(T0 + 40 * MIN, "jump"), (T0 + 60 * MIN, "invalid")]
    assert "+5.00%" in found["detail"][0]
    assert stale_periods(frame).to_dict("records") == [{"start": T0 + 50 * MIN, "end": T0 + 55 * MIN, "bars": 6}]
    assert stale_periods(frame, min_bars=7).empty
    report = validate(frame, "1m")
    assert report.summary == {"missing_bars": 3, "gaps": 1, "duplicates": 1, "outliers": 2, "stale_periods": 1}
    assert not report.clean and report.bars == 78


def test_clean_sample_bars_and_bad_input():
    from workbench.data import sample_bars

    report = validate(sample_bars("BTC/USDT", days=2), "1m")
    assert {k: v for k, v in report.summary.items() if k != "outliers"} == dict.fromkeys(
        ("missing_bars", "gaps", "duplicates", "stale_periods"), 0)
    assert (report.outliers["kind"] == "jump").all()  # the generator's bursts, no impossible bar
    assert validate(sample_bars("BTC/USDT", days=2), "1m", z=20).clean
    with pytest.raises(ValueError, match="missing volume"):
        gaps(bars().drop(columns="volume"), "1m")
    with pytest.raises(ValueError, match="DatetimeIndex"):
        outliers(bars().reset_index())


def test_cross_check_names_bars_one_side_lacks_and_values_that_differ():
    rest = bars().iloc[:30]
    ws = rest[~rest.index.duplicated()].copy()
    ws.loc[T0 + 5 * MIN, "close"] = 1.0
    ws = ws.drop(index=T0 + 7 * MIN)
    diff = cross_check(rest, ws)
    assert diff[["time", "what"]].values.tolist() == [[T0 + 5 * MIN, "close"], [T0 + 7 * MIN, "only_rest"]]
    assert diff["ws"][0] == 1.0
    assert cross_check(rest, rest).empty


class Exchange:
    """Enough of a ccxt.pro client: ``fetch_ohlcv`` returns the history up to now (the newest candle still
    forming), ``watch_ohlcv`` the candle that just started (one per call); the websocket's bar 6 has a wrong close."""

    has = {"watchOHLCV": True}

    def __init__(self) -> None:
        start = int(T0.timestamp() * 1000)
        self.rest = [[start + i * 60_000, 100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i, 10.0] for i in range(20)]
        self.ws = [list(r) for r in self.rest]
        self.ws[6][4] = 999.0
        self.now = 2

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
        rows = [r for r in self.rest[:self.now + 1] if since is None or r[0] >= since]
        return rows[-limit:] if limit else rows

    async def watch_ohlcv(self, symbol, timeframe="1m"):
        self.now += 1
        return [self.ws[self.now]]


def test_live_feed_keeps_what_it_closed_and_cross_checks_it_by_rest():
    async def run():
        ex = Exchange()
        feed = LiveFeed(ex, ["BTC/USDT"], "1m", max_bars=8)
        got = [bars async for bars in feed]
        return feed, got, await feed.cross_check("BTC/USDT")

    feed, got, diff = asyncio.run(run())
    assert [b["BTC/USDT"].time for b in got] == [T0 + i * MIN for i in range(1, 9)]
    seen = feed.watched("BTC/USDT")
    assert list(seen.index) == [T0 + i * MIN for i in range(1, 9)] and seen["close"][T0 + 6 * MIN] == 999.0
    assert len(feed.watched("BTC/USDT", "rest")) == 1  # the backfill's one closed bar
    assert diff[["time", "what", "rest", "ws"]].values.tolist() == [[T0 + 6 * MIN, "close", 107.0, 999.0]]
