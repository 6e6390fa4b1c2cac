"""Partial fills end to end: the loopback exchange fills a resting limit order in parts (Binance's
PARTIALLY_FILLED, one trade per part) when a bar's liquidity is short of it; the live session books each
part once, and a cancel of the remainder leaves the session holding exactly what filled."""
from __future__ import annotations

import asyncio

import pytest

from tests.kit import until
from tests.live_kit import (
    _rows,
    assert_fills_match_exchange,
    assert_one_exchange_order_per_client_id,
    below_next_lows,
    manual_exchange,
    start_quiet,
    stop_flat,
)

pytestmark = pytest.mark.live_battery
BTC = "BTC/USDT"
SHARE = 0.1  # a bar fills at most 10 % of its volume of a resting order


def _through_with_volume(lx, limit, volume):
    """The forming bar trades through ``limit`` with ``volume`` traded, then completes: the resting buy fills
    up to SHARE x volume of it."""
    rows = _rows(lx)
    rows[lx.book.index, 2] = limit * 0.99
    rows[lx.book.index, 4] = volume
    lx.advance(1)


@pytest.fixture
def lx():
    with manual_exchange() as ex:
        ex.book.fill_share = SHARE
        yield ex


def test_a_limit_buy_filled_in_three_parts_is_booked_once_per_part(lx, store):
    async def go():
        s, client = await start_quiet(lx, store)
        try:
            limit = below_next_lows(lx, 4)
            s.place_order(BTC, "buy", 0.05, type="limit", limit_price=limit)
            await until(lambda: "op1" in s.broker.resting)
            seen = []
            for n in (1, 2, 3):  # 0.02, 0.02, then the last 0.01 of the 0.05
                _through_with_volume(lx, limit, 0.2)
                await until(lambda n=n: len(store.fills(s.id)) >= n)
                seen.append((lx.exchange_orders()[0]["status"], s.portfolio.quantity(BTC)))
            await until(lambda: "op1" not in s.broker.resting)
            for _ in range(3):  # more bars and watcher rounds apply nothing again
                lx.advance(1)
                await asyncio.sleep(0.1)
            assert await s.broker.sync_resting_orders() == 0
            cash = s.portfolio.cash
            return s, limit, seen, cash, await stop_flat(lx, s)
        finally:
            await client.close()

    s, limit, seen, cash, final = asyncio.run(go())
    assert seen == [("PARTIALLY_FILLED", pytest.approx(0.02)), ("PARTIALLY_FILLED", pytest.approx(0.04)),
                    ("FILLED", pytest.approx(0.05))]
    order_id = lx.exchange_orders()[0]["orderId"]
    parts = [t for t in lx.exchange_trades() if t["orderId"] == order_id]
    assert [float(t["qty"]) for t in parts] == pytest.approx([0.02, 0.02, 0.01])
    fills = store.fills(s.id)
    buys = fills[fills["client_id"] == "op1"]
    assert list(buys["quantity"]) == pytest.approx([0.02, 0.02, 0.01]) and buys["fill_id"].is_unique
    assert cash == pytest.approx(10_000.0 - 0.05 * limit * 1.001, rel=1e-9)  # each part with its 0.1 % fee
    row = store.orders(s.id).set_index("client_id").loc["op1"]
    assert row["status"] == "filled" and row["filled_quantity"] == pytest.approx(0.05)
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)
    assert final.value == "stopped"


def test_canceling_the_rest_of_a_partly_filled_buy_keeps_what_filled(lx, store):
    async def go():
        s, client = await start_quiet(lx, store)
        try:
            limit = below_next_lows(lx, 4)
            s.place_order(BTC, "buy", 0.05, type="limit", limit_price=limit)
            await until(lambda: "op1" in s.broker.resting)
            _through_with_volume(lx, limit, 0.2)  # 0.02 fills
            await until(lambda: len(store.fills(s.id)) >= 1)
            s.cancel_order("op1")
            await until(lambda: "op1" not in s.broker.resting)
            _through_with_volume(lx, limit, 0.2)  # canceled: nothing more fills
            await asyncio.sleep(0.2)
            held, cash = s.portfolio.quantity(BTC), s.portfolio.cash
            return s, limit, held, cash, await stop_flat(lx, s)
        finally:
            await client.close()

    s, limit, held, cash, final = asyncio.run(go())
    [o] = [o for o in lx.exchange_orders() if o["type"] == "LIMIT"]
    assert (o["status"], float(o["executedQty"])) == ("CANCELED", pytest.approx(0.02))
    assert held == pytest.approx(0.02) and cash == pytest.approx(10_000.0 - 0.02 * limit * 1.001, rel=1e-9)
    row = store.orders(s.id).set_index("client_id").loc["op1"]
    assert row["status"] == "canceled" and row["filled_quantity"] == pytest.approx(0.02)
    ev = store.events(s.id)
    assert ev[ev["kind"] == "order_canceled"]["message"].str.contains("0.02 of 0.05 filled").any()
    fills = store.fills(s.id)
    assert list(fills[fills["client_id"] == "op1"]["quantity"]) == pytest.approx([0.02])
    assert_fills_match_exchange(lx, store, s.id)
    assert final.value == "stopped"
