"""A live session with legs: real ccxt over HTTP to the loopback exchange, a real SQLite store. Each symbol
belongs to one leg (an exchange nets per symbol), so the column keys are the exchange's symbols."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import until
from tests.live_kit import ALWAYS_IN, NEVER, S, _start, assert_fills_match_exchange, live_config
from workbench.execution.legs import with_legs

pytestmark = pytest.mark.live_battery


def test_a_live_session_with_legs_sizes_each_by_its_allocation_and_pauses_one(lx, store):
    config = live_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"], risk={}, legs=[
        {"name": "btc", "strategy": "momentum", "params": ALWAYS_IN, "symbols": ["BTC/USDT"], "allocation": 0.3},
        {"name": "eth", "strategy": "momentum", "params": NEVER, "symbols": ["ETH/USDT"], "allocation": 0.5}],
        sizing={"mode": "percent_equity", "value": 1.0})

    async def go():
        s, client = await _start(lx, store, config=config)
        try:
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0)  # the btc leg entered at once
            assert s.pause_leg("btc") == "leg btc paused"
            s.close_all()  # its position closes; paused, it does not re-enter
            await until(lambda: s.portfolio.quantity("BTC/USDT") == 0 and not s.broker.inflight)
            n = len(store.orders(s.id))
            seen = s.bars_seen
            await until(lambda: s.bars_seen >= seen + 6)
            assert not (store.orders(s.id).iloc[n:]["side"] == "buy").any()
            s.stop()
            return await asyncio.wait_for(s.wait(), 10), s
        finally:
            await client.close()

    final, s = asyncio.run(go())
    assert final is S.STOPPED
    assert_fills_match_exchange(lx, store, s.id)
    first = store.fills(s.id).iloc[0]  # sized at 100 % of equity x the btc leg's 30 %
    assert first.symbol == "BTC/USDT" and first.quantity * first.price == pytest.approx(3000, rel=0.01)
    trades = with_legs(store.trades(s.id), config)
    assert set(trades["leg"]) == {"btc"} and set(trades["symbol"]) == {"BTC/USDT"}
