"""Live bars kept for the fidelity twin: a live feed stores the closed bars it hands its session, and the
twin backtests exactly those instead of downloading them again."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pandas as pd

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import both_backends, until
from tests.live_kit import ALWAYS_IN, BAR
from workbench.config import make_config
from workbench.engine import open_session
from workbench.store.session_bars import append_session_bars, last_session_bar, session_bars
from workbench.twin import fidelity


@both_backends
def test_a_bar_stored_again_replaces_the_first(store):
    sid = store.create_session(make_config(kind="paper"))
    t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert append_session_bars(store, sid, [("BTC/USDT", t, 1, 2, 0.5, 1.5, 10)]) == 1
    append_session_bars(store, sid, [("BTC/USDT", t, 1, 3, 0.5, 2.5, 11)])  # delivered again after a resume
    kept = session_bars(store, sid, "BTC/USDT")
    assert kept.index.tolist() == [pd.Timestamp(t)] and kept["close"].tolist() == [2.5]
    assert session_bars(store, sid, "ETH/USDT").empty
    assert last_session_bar(store, sid) == t and last_session_bar(store, "nosuchsession") is None


def test_the_twin_of_a_session_on_live_bars_uses_the_bars_it_was_handed(store, monkeypatch):
    config = make_config(kind="paper", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"],
                         data={"source": "ccxt", "live": True}, risk={"stop_loss": 0.0015, "trailing_stop": 0.001})

    async def go(lx):
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, poll_interval=0.05)
            s._feed.poll_seconds, s._feed.bar_seconds = 0.01, BAR
            s.start()
            await until(lambda: s.bars_seen >= 1)
            for n in range(2, 40):
                lx.advance(1)
                await until(lambda n=n: s.bars_seen >= n)
            s.stop()
            lx.advance(2)
            await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s

    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as lx:
        s = asyncio.run(go(lx))
        served = lx.book.prices[lx._market_id("BTC/USDT")]
    kept = session_bars(store, s.id, "BTC/USDT")
    assert len(kept) == s.bars_seen >= 39  # every bar the session processed, stored as it closed
    times = pd.to_datetime(served[0], unit="ms", utc=True).rename("time")
    exchange = pd.DataFrame(served[1][:, :5], index=times, columns=kept.columns).loc[kept.index]
    pd.testing.assert_frame_equal(kept, exchange, check_freq=False, check_index_type=False)

    def no_download(*a, **k):
        raise AssertionError("the twin downloaded bars the session had stored")

    monkeypatch.setattr("workbench.data.load_bars", no_download)
    twin = fidelity(s.id, store)
    twin_bars = twin.twin.bars["BTC/USDT"][kept.columns].loc[kept.index[0]:]
    pd.testing.assert_frame_equal(twin_bars, kept.loc[:twin.upto], check_freq=False, check_index_type=False)
    s_ = twin.summary  # same bars, same trades; only the operator's stop at the end exits elsewhere
    assert s_["matched"] >= 2 and s_["missing"] == s_["extra"] == 0 and s_["entry_bps"] == 0, twin.text()
    assert (twin.trades["exit_bps"].iloc[:-1] == 0).all(), twin.trades
