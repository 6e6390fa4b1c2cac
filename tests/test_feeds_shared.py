"""Shared replay bars: sessions replaying the same data hold one read-only copy, freed with its last user."""
from __future__ import annotations

import asyncio
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from tests.kit import paper_config
from workbench.config import DataConfig
from workbench.data import sample_bars
from workbench.engine.feeds import RELEASED_AT, SHARED, BarBlock, ReplayFeed, SharedBars, data_key, shared_bars
from workbench.engine.session import Session
from workbench.store import Store

SYMS = ["BTC/USDT", "ETH/USDT"]
DAY = ("2024-01-03", "2024-01-03 23:59")  # one day of 1m bars


def cfg(**kw):
    return paper_config(symbols=SYMS, start=DAY[0], end=DAY[1], **kw)


def ours(data=None):
    """Cache keys of the test's data still in the process-wide cache."""
    keys = [data_key(data or DataConfig(), s, *DAY) for s in SYMS]
    keys.append(("symbols", tuple(keys)))
    return [k for k in SHARED.keys() if k in keys]  # noqa: SIM118 (SharedBars is no dict)


async def collect(feed):
    return [b async for b in feed]


def test_two_feeds_over_the_same_data_share_one_block_and_replay_the_same_bars():
    data = DataConfig()
    loads = SHARED.loads
    a = ReplayFeed.shared(data, SYMS, *DAY)
    tracemalloc.start()
    try:
        b = ReplayFeed.shared(data, SYMS, *DAY)
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert a.block is b.block and SHARED.loads == loads + 3  # two symbols and their combined block, once
    assert all(x is y for x, y in zip(a.block.data, b.block.data))
    assert grown < 20_000 < a.block.nbytes  # the second feed is a cursor, not a copy
    assert not a.block.times.flags.writeable and not any(d.flags.writeable for d in a.block.data)
    # same symbols on one time axis: the combined block holds the symbols' own arrays
    assert a.block.data[0] is shared_bars(data, SYMS[:1], *DAY).data[0]
    frames = {s: sample_bars(s, days=3).loc[DAY[0]:DAY[1]] for s in SYMS}
    assert asyncio.run(collect(a)) == asyncio.run(collect(ReplayFeed(frames))) != []


def test_the_block_is_freed_when_its_last_feed_ends():
    a = ReplayFeed.shared(DataConfig(), SYMS, *DAY)
    b = ReplayFeed.shared(DataConfig(), SYMS, *DAY)
    assert len(ours()) == 3
    n = len(list(a.bars()))
    assert len(ours()) == 3  # b still holds it
    gen = b.bars()
    next(gen)
    gen.close()  # a consumer that stops early (a stopped session) lets go too
    assert ours() == [] and len(a) == len(b) == n == 1440
    again = list(a.bars())  # iterating again fetches the bars back
    assert len(again) == n and ours() == []


def test_disabled_cache_loads_a_copy_per_feed_and_unaligned_symbols_combine_like_frames():
    cache = SharedBars()
    cache.enabled = False
    one, two = (shared_bars(DataConfig(), SYMS, *DAY, cache=cache) for _ in range(2))
    assert one.data[0] is not two.data[0] and np.array_equal(one.data[0], two.data[0]) and cache.loads == 6
    a = sample_bars("BTC/USDT", days=1).iloc[:50]
    b = sample_bars("ETH/USDT", days=1).iloc[10:60:2]
    parts = [BarBlock.from_frames({"BTC/USDT": a}), BarBlock.from_frames({"ETH/USDT": b})]
    combined, direct = BarBlock.combine(parts), BarBlock.from_frames({"BTC/USDT": a, "ETH/USDT": b})
    assert np.array_equal(combined.times, direct.times)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(combined.data, direct.data))
    with pytest.raises(ValueError, match="symbols appear twice"):
        BarBlock.combine([parts[0], parts[0]])


def test_data_key_names_what_identifies_the_bars(tmp_path):
    path = tmp_path / "x.csv"
    sample_bars("XRP/USDT", days=1).iloc[:10].to_csv(path)
    csv = DataConfig(source="csv", csv_path=str(path))
    before = data_key(csv, "XRP/USDT")
    sample_bars("XRP/USDT", days=1).iloc[:20].to_csv(path)
    assert before is not None and data_key(csv, "XRP/USDT") != before  # a rewritten file is other data
    assert data_key(DataConfig(source="ccxt"), "BTC/USDT", "2024-01-01") is None  # open end: grows
    assert data_key(DataConfig(), "BTC/USDT", "2024-01-01") == data_key(DataConfig(), "BTC/USDT",
                                                                          pd.Timestamp("2024-01-01", tz="UTC"))


def test_sessions_replaying_the_same_config_share_it_trade_the_same_and_free_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wb.db'}")
    try:
        loads = SHARED.loads
        one, two = Session(cfg(), store), Session(cfg(), store)
        frames = {s: sample_bars(s, days=3).loc[DAY[0]:DAY[1]] for s in SYMS}
        ref = Session(cfg(), store, feed=ReplayFeed(frames))

        async def both():
            return await asyncio.gather(one.run(), two.run(), ref.run())

        assert [s.value for s in asyncio.run(both())] == ["completed"] * 3
        assert SHARED.loads == loads + 3 and ours() == []  # loaded once, freed when the runs ended
        assert one.bars_seen == two.bars_seen == ref.bars_seen == 1440
        trades = [store.trades(s.id).drop(columns=["session_id"], errors="ignore") for s in (one, two, ref)]
        assert trades[0].equals(trades[1]) and trades[0].equals(trades[2])
        assert one.portfolio.equity == two.portfolio.equity == ref.portfolio.equity
    finally:
        store.close()


def test_a_paced_feed_keeps_pace_after_a_late_consumer():
    a = sample_bars("BTC/USDT", days=1).iloc[:5]  # 60 s apart: 0.2 s per bar at 300x
    feed = ReplayFeed({"BTC/USDT": a}, 300.0)

    async def run():
        got, t0 = [], time.perf_counter()
        async for bars in feed:
            got.append(bars)
            assert RELEASED_AT.get() <= time.perf_counter()
            if len(got) == 1:
                time.sleep(0.6)  # a slow peer holds the loop for three bar times
                assert feed.due() - feed.released == 3  # behind by the bars it missed
        return got, time.perf_counter() - t0

    got, took = asyncio.run(run())
    assert len(got) == 5 and feed.released == 5
    assert 0.8 <= took < 1.15  # on the schedule (0.8 s), not 0.6 s late as with sleeps between bars


def test_iterating_a_long_replay_allocates_no_copy_of_its_times():
    feed = ReplayFeed.shared(DataConfig(), SYMS)  # 90 days: 129,600 bar times
    gen = feed.bars()
    tracemalloc.start()
    try:
        next(gen)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gen.close()
    assert len(feed) == 129_600 and peak < 100_000  # a chunk of Python ints, not 5 MB of them
