"""The loopback spot exchange takes what Binance takes (tests/exchange/matching.py, stops.py), through real ccxt
over real HTTP: a market buy sized by the quote to spend (``quoteOrderQty``, what ccxt sends for a market buy
given a price or ``cost``), a post-only ``LIMIT_MAKER`` (refused only when it would take), the market stops
``STOP_LOSS`` / ``TAKE_PROFIT`` that its exchangeInfo now lists as Binance's BTCUSDT does, and trailing stops
(``trailingDelta``, ccxt's ``trailingPercent``) as Binance's trailing stop FAQ describes them."""
from __future__ import annotations

import asyncio

import ccxt
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange

SYM = "BTC/USDT"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=(SYM,), days=12, clock="2024-01-10 07:00") as ex:
        yield ex


def run(lx, body):
    async def main():
        c = async_client(lx)
        try:
            await c.load_markets()
            return await body(c)
        finally:
            await c.close()
    return asyncio.run(main())


def test_a_market_buy_by_quote_amount_spends_that_much(lx):
    async def body(c):
        spent = await c.create_order(SYM, "market", "buy", None, None, {"cost": 1000})
        return spent, await c.fetch_balance()

    spent, bal = run(lx, body)
    px = lx.price(SYM)
    assert spent["status"] == "closed" and spent["filled"] == pytest.approx(0.00001 * (1000 / px // 0.00001))
    assert 1000 - px * 0.00001 < spent["cost"] <= 1000  # the lot rounds it down, never up
    assert bal["BTC"]["total"] == pytest.approx(spent["filled"])


def test_a_post_only_limit_rests_unless_it_would_take(lx):
    async def body(c):
        px = lx.price(SYM)
        maker = await c.create_order(SYM, "limit", "buy", 0.01, round(px * 0.99, 2), {"postOnly": True})
        try:
            await c.create_order(SYM, "limit", "buy", 0.01, round(px * 1.01, 2), {"postOnly": True})
        except ccxt.BaseError as e:
            return maker, f"{type(e).__name__}: {e}"
        return maker, "accepted"

    maker, taker = run(lx, body)
    assert maker["status"] == "open" and maker["info"]["type"] == "LIMIT_MAKER"
    assert taker.startswith("OrderImmediatelyFillable") and "immediately match" in taker  # ccxt reads the -2010 text


def test_market_stops_rest_then_sell_or_buy_at_market_when_the_price_crosses(lx):
    async def body(c):
        await c.create_order(SYM, "market", "buy", 0.02)
        px = lx.price(SYM)
        sl = await c.create_order(SYM, "market", "sell", 0.01, None, {"stopLossPrice": round(px * 0.98, 2)})
        tp = await c.create_order(SYM, "market", "sell", 0.01, None, {"takeProfitPrice": round(px * 1.03, 2)})
        free = (await c.fetch_balance())["BTC"]["free"]
        lx.trade(SYM, px * 0.97)  # through the stop loss: sells at this trade
        lx.trade(SYM, px * 1.04)  # through the take profit
        return (px, sl, tp, free, await c.fetch_order(sl["id"], SYM), await c.fetch_order(tp["id"], SYM),
                await c.fetch_balance())

    px, sl, tp, free, sl_done, tp_done, bal = run(lx, body)
    assert sl["info"]["type"] == "STOP_LOSS" and tp["info"]["type"] == "TAKE_PROFIT" and sl["status"] == "open"
    assert free == pytest.approx(0.0, abs=1e-9)  # both lock the coins they sell
    assert sl_done["status"] == "closed" and sl_done["average"] == pytest.approx(px * 0.97)
    assert tp_done["status"] == "closed" and tp_done["average"] == pytest.approx(px * 1.04)
    assert bal["BTC"]["total"] == pytest.approx(0.0, abs=1e-9)


def test_a_trailing_stop_loss_follows_the_high_from_placement_and_sells_at_market(lx):
    async def body(c):
        await c.create_order(SYM, "market", "buy", 0.01)
        px = lx.price(SYM)
        o = await c.create_order(SYM, "market", "sell", 0.01, None,
                                 {"trailingPercent": 1, "stopLossOrTakeProfit": "stopLoss"})
        lx.trade(SYM, px * 1.02)  # a new high
        lx.trade(SYM, px * 1.02 * 0.995)  # 0.5 % off it
        waiting = await c.fetch_order(o["id"], SYM)
        lx.trade(SYM, px * 1.02 * 0.989)  # 1.1 % off: sells at this trade
        return px, o, waiting, await c.fetch_order(o["id"], SYM)

    px, o, waiting, done = run(lx, body)
    assert o["info"]["type"] == "STOP_LOSS" and o["info"]["trailingDelta"] == 100 and waiting["status"] == "open"
    assert done["status"] == "closed" and done["average"] == pytest.approx(px * 1.02 * 0.989)


def test_a_trailing_stop_limit_with_a_stop_price_tracks_only_once_the_price_meets_it(lx):
    async def body(c):
        await c.create_order(SYM, "market", "buy", 0.01)
        px = lx.price(SYM)
        o = await c.create_order(SYM, "limit", "sell", 0.01, round(px * 0.95, 2), {
            "trailingPercent": 2, "trailingTriggerPrice": round(px * 0.99, 2), "stopLossOrTakeProfit": "stopLoss"})
        lx.trade(SYM, px * 1.03)
        lx.trade(SYM, px * 0.995)  # 3.4 % off that high, but the stop (0.99 px) was never met: no tracking yet
        untouched = await c.fetch_order(o["id"], SYM)
        lx.trade(SYM, px * 0.985)  # meets the stop: tracking starts here
        lx.trade(SYM, px)  # the high since
        lx.trade(SYM, px * 0.985)  # 1.5 % off it
        tracking = await c.fetch_order(o["id"], SYM)
        lx.trade(SYM, px * 0.979)  # 2.1 % off: triggers; its limit (0.95 px) is marketable, so it sells here
        bad = None
        try:
            await c.create_order(SYM, "market", "sell", 0.001, None,
                                 {"trailingPercent": 0.05, "stopLossOrTakeProfit": "stopLoss"})
        except ccxt.BaseError as e:
            bad = f"{type(e).__name__}: {e}"
        return px, o, untouched, tracking, await c.fetch_order(o["id"], SYM), bad

    px, o, untouched, tracking, done, bad = run(lx, body)
    assert o["info"]["type"] == "STOP_LOSS_LIMIT" and o["triggerPrice"] == pytest.approx(round(px * 0.99, 2))
    assert untouched["status"] == "open" and tracking["status"] == "open"
    assert done["status"] == "closed" and done["average"] == pytest.approx(px * 0.979)
    assert "TRAILING_DELTA" in bad  # 5 BIPS is below the filter's 10


def test_order_history_and_any_depth_limit_as_binance_serves_them(lx):
    async def body(c):
        px = lx.price(SYM)
        first = await c.create_order(SYM, "market", "buy", 0.01)
        rest = await c.create_order(SYM, "limit", "buy", 0.01, round(px * 0.9, 2))
        await c.cancel_order(rest["id"], SYM)
        return (first, rest, await c.fetch_orders(SYM), await c.fetch_orders(SYM, params={"orderId": rest["id"]}),
                await c.fetch_order_book(SYM, 25), await c.fetch_order_book(SYM, 6000))

    first, rest, orders, later, book25, book_max = run(lx, body)
    assert [(o["id"], o["status"]) for o in orders] == [(first["id"], "closed"), (rest["id"], "canceled")]
    assert [o["id"] for o in later] == [rest["id"]]  # from that id on
    assert len(book25["bids"]) == 25 and len(book_max["asks"]) == 5000  # any limit; above 5000 cut to 5000


def test_perpetual_order_history_cancel_all_conditional_depth_and_the_algo_only_types():
    perp = "BTC/USDT:USDT"
    with LoopbackExchange(symbols=(SYM,), days=12, clock="2024-01-10 07:00", perps=(perp,)) as ex:
        async def body(c):
            await c.create_order(perp, "market", "sell", 0.01)
            px = ex.price(SYM)
            stops = [await c.create_order(perp, "market", "buy", 0.01, None, {"stopLossPrice": round(px * k, 2),
                                                                           "reduceOnly": True}) for k in (1.02, 1.03)]
            await c.cancel_all_orders(perp, {"trigger": True})  # DELETE /fapi/v1/algoOpenOrders
            try:  # a conditional type sent to /fapi/v1/order, as older clients do
                await c.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_MARKET",
                                              "quantity": "0.01", "stopPrice": str(round(px * 1.02, 2))})
                moved = "accepted"
            except ccxt.BaseError as e:
                moved = f"{type(e).__name__}: {e}"
            return (stops, await c.fetch_orders(perp), await c.fetch_orders(perp, params={"trigger": True}),
                    await c.fetch_open_orders(perp, params={"trigger": True}), await c.fetch_order_book(perp, 5),
                    moved)

        c = async_client(ex)

        async def main():
            try:
                await c.load_markets()
                return await body(c)
            finally:
                await c.close()

        stops, orders, algo, still_open, book, moved = asyncio.run(main())
    assert [o["status"] for o in orders] == ["closed"]
    assert sorted(o["id"] for o in algo) == sorted(o["id"] for o in stops)
    assert {o["info"]["algoStatus"] for o in algo} == {"CANCELED"} and still_open == []
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
    assert moved.startswith("InvalidOrder") and "Algo Order API" in moved


def test_tickers_of_every_market_or_of_a_list_without_a_symbol(lx):
    async def body(c):
        return await c.fetch_tickers(), await c.fetch_tickers([SYM]), await c.fetch_ticker(SYM)

    every, listed, one = run(lx, body)
    assert SYM in every and list(listed) == [SYM]
    assert every[SYM]["last"] == listed[SYM]["last"] == one["last"] == pytest.approx(lx.price(SYM))


def test_weekly_klines_open_on_mondays_as_binance_serves_them(lx):
    async def body(c):
        return await c.fetch_ohlcv(SYM, "1w", limit=2)

    weeks = run(lx, body)
    assert len(weeks) == 1 and weeks[0][0] == 1704067200000  # Monday 2024-01-01 (12 days of sample: one week)
