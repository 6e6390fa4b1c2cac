"""The loopback perpetuals' conditional orders (tests/exchange/perp_algo.py) through real ccxt over real HTTP:
a reduce-only STOP_MARKET protecting a short, as ccxt sends it (``stopLossPrice`` on a linear swap goes to
Binance's algo-order API), is found by its client id, triggers on an intrabar trade through its trigger and
buys the short back there; a TAKE_PROFIT_MARKET rests beside it and is canceled; Binance's refusals."""
from __future__ import annotations

import ccxt
import pytest

from tests.exchange.server import LoopbackExchange
from tests.test_perp_exchange import run

PERP = "BTC/USDT:USDT"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=12, clock="2024-01-10 07:00", perps=(PERP,)) as ex:
        yield ex


def test_a_reduce_only_stop_market_buys_a_short_back_when_a_trade_crosses_it(lx):
    async def body(c):
        await c.load_markets()
        await c.create_order(PERP, "market", "sell", 0.05)
        px = lx.price("BTC/USDT")
        stop = float(c.price_to_precision(PERP, px * 1.02))
        tp = float(c.price_to_precision(PERP, px * 0.97))
        sl = await c.create_order(PERP, "market", "buy", 0.05, None,
                                  {"stopLossPrice": stop, "reduceOnly": True, "clientOrderId": "protect-1"})
        tpo = await c.create_order(PERP, "market", "buy", 0.05, None,
                                   {"takeProfitPrice": tp, "reduceOnly": True, "clientOrderId": "protect-2"})
        resting = await c.fetch_open_orders(PERP, params={"trigger": True})
        found = await c.fetch_order(None, PERP, {"clientOrderId": "protect-1", "trigger": True})
        lx.trade("BTC/USDT", stop * 0.999)  # near, not through
        before = lx.perp_position(PERP)
        lx.trade("BTC/USDT", stop * 1.001)  # through the stop inside the bar
        done = await c.fetch_order(sl["id"], PERP, {"trigger": True})
        canceled = await c.cancel_order(tpo["id"], PERP, {"trigger": True})
        return stop, sl, resting, found, before, done, canceled, await c.fetch_my_trades(PERP)

    stop, sl, resting, found, before, done, canceled, trades = run(lx, body)
    assert sl["clientOrderId"] == "protect-1" and sl["status"] == "open"
    assert sorted(o["clientOrderId"] for o in resting) == ["protect-1", "protect-2"]
    assert found["id"] == sl["id"] and found["triggerPrice"] == pytest.approx(stop)
    assert before == (pytest.approx(-0.05), pytest.approx(before[1]))  # not triggered near the stop
    assert done["info"]["algoStatus"] == "FINISHED" and done["info"]["actualOrderId"]
    assert lx.perp_position(PERP) == (0.0, 0.0)
    buy = trades[-1]
    assert buy["side"] == "buy" and buy["amount"] == 0.05 and buy["price"] == pytest.approx(round(stop * 1.001, 2))
    assert str(buy["order"]) == done["info"]["actualOrderId"]  # its fill is the triggered order's
    (actual,) = [o for o in lx.perp.orders.values() if str(o.order_id) == done["info"]["actualOrderId"]]
    assert actual.reduce_only and actual.type == "MARKET"
    assert lx.perp.algo.orders[int(canceled["id"])].status == "CANCELED"


def test_conditional_order_refusals_and_a_stop_with_nothing_to_reduce_expires(lx):
    async def body(c):
        await c.load_markets()
        px = lx.price("BTC/USDT")
        out = {}
        try:  # a buy stop below the price would trigger at once
            await c.create_order(PERP, "market", "buy", 0.05, None, {"stopLossPrice": px * 0.99, "reduceOnly": True})
        except ccxt.BaseError as e:
            out["immediate"] = f"{type(e).__name__}: {e}"
        # reduce-only with no position is accepted (checked when it triggers), then expires
        o = await c.create_order(PERP, "market", "buy", 0.05, None,
                                 {"stopLossPrice": float(c.price_to_precision(PERP, px * 1.01)), "reduceOnly": True})
        lx.trade("BTC/USDT", px * 1.02)
        out["expired"] = await c.fetch_order(o["id"], PERP, {"trigger": True})
        return out

    out = run(lx, body)
    assert "-2021" in out["immediate"] and "immediately trigger" in out["immediate"]
    assert out["expired"]["info"]["algoStatus"] == "EXPIRED" and lx.perp_position(PERP) == (0.0, 0.0)
    assert lx.perp_trades() == []
