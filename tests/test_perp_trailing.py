"""The loopback perpetuals' TRAILING_STOP_MARKET (tests/exchange/perp_algo.py, trail.py) as Binance documents
it, through real ccxt over real HTTP (``params={'trailingPercent': r, 'trailingTriggerPrice': p}`` on a linear
swap: ccxt sends it to the algo-order API as ``callbackRate`` / ``activatePrice``), and the trail's walk of a
bar."""
from __future__ import annotations

import ccxt
import pytest

from tests.exchange.server import LoopbackExchange
from tests.exchange.trail import Trail
from tests.test_perp_exchange import run

PERP = "BTC/USDT:USDT"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=12, clock="2024-01-10 07:00", perps=(PERP,)) as ex:
        yield ex


def test_a_trailing_sell_activates_then_follows_the_high_and_sells_at_the_callback(lx):
    async def body(c):
        await c.load_markets()
        await c.create_order(PERP, "market", "buy", 0.05)
        px = lx.price("BTC/USDT")
        act = float(c.price_to_precision(PERP, px * 1.01))
        o = await c.create_order(PERP, "market", "sell", 0.05, None, {
            "trailingPercent": 1, "trailingTriggerPrice": act, "reduceOnly": True, "clientOrderId": "trail-1"})
        resting = await c.fetch_open_orders(PERP, params={"trigger": True})
        lx.trade("BTC/USDT", px * 1.005)  # below the activation price: not trailing yet
        lx.trade("BTC/USDT", px * 0.98)  # 2.5 % off that high, but never activated
        before = lx.perp_position(PERP)
        lx.trade("BTC/USDT", px * 1.02)  # activated; the high is 1.02 px
        lx.trade("BTC/USDT", px * 1.02 * 0.995)  # 0.5 % off the high: no
        lx.trade("BTC/USDT", px * 1.03)  # a new high
        lx.trade("BTC/USDT", px * 1.03 * 0.995)
        held = lx.perp_position(PERP)
        lx.trade("BTC/USDT", px * 1.03 * 0.989)  # 1.1 % off the high: sells here
        done = await c.fetch_order(o["id"], PERP, {"trigger": True})
        return px, act, o, resting, before, held, done, await c.fetch_my_trades(PERP)

    px, act, o, resting, before, held, done, trades = run(lx, body)
    assert o["status"] == "open" and o["clientOrderId"] == "trail-1"
    assert o["info"]["orderType"] == "TRAILING_STOP_MARKET" and o["info"]["callbackRate"] == "1"
    assert float(o["info"]["activatePrice"]) == pytest.approx(act)
    assert [r["clientOrderId"] for r in resting] == ["trail-1"]
    assert before[0] == pytest.approx(0.05) and held[0] == pytest.approx(0.05)
    assert done["info"]["algoStatus"] == "FINISHED" and lx.perp_position(PERP) == (0.0, 0.0)
    sell = trades[-1]
    assert sell["side"] == "sell" and sell["amount"] == 0.05
    assert sell["price"] == pytest.approx(round(px * 1.03 * 0.989, 2))
    assert str(sell["order"]) == done["info"]["actualOrderId"]


def test_a_trailing_buy_covers_a_short_on_completed_bars_at_its_level(lx):
    async def body(c):
        await c.load_markets()
        await c.create_order(PERP, "market", "sell", 0.05)
        placed = lx.price("BTC/USDT")
        o = await c.create_order(PERP, "market", "buy", 0.05, None, {"trailingPercent": 0.1, "reduceOnly": True})
        for _ in range(240):  # a 0.1 % trail: a few minutes of bars
            lx.advance()
            if lx.perp_position(PERP)[0] == 0.0:
                break
        return placed, o, await c.fetch_order(o["id"], PERP, {"trigger": True}), await c.fetch_my_trades(PERP)

    placed, o, done, trades = run(lx, body)
    assert done["info"]["algoStatus"] == "FINISHED" and lx.perp_position(PERP) == (0.0, 0.0)
    trail = lx.perp.algo.orders[int(o["id"])].trail
    buy = trades[-1]
    assert buy["side"] == "buy" and trail.best <= placed  # the low since it was placed
    bars = lx.bars("BTC/USDT")
    bar = bars[bars.index < lx.now()].iloc[-1]  # the bar that triggered it
    # inside the bar at its level (the lowest price x 1.001), or at its open if it gapped through
    assert buy["price"] in (pytest.approx(round(trail.best * 1.001, 2)), pytest.approx(round(bar["open"], 2)))
    assert bar["low"] - 0.01 <= buy["price"] <= bar["high"] + 0.01


def test_trailing_stop_refusals_follow_binance(lx):
    async def body(c):
        await c.load_markets()
        px = lx.price("BTC/USDT")
        out = {}
        for name, params in (
                ("low rate", {"trailingPercent": 0.05}),
                ("high rate", {"trailingPercent": 25}),
                ("activation below", {"trailingPercent": 1, "trailingTriggerPrice": px * 0.99}),
                ("close position", {"trailingPercent": 1, "closePosition": True})):
            try:
                await c.create_order(PERP, "market", "sell", 0.05, None, params)
            except ccxt.BaseError as e:
                out[name] = f"{type(e).__name__}: {e}"
        widest = await c.create_order(PERP, "market", "sell", 0.05, None, {"trailingPercent": 20, "reduceOnly": True})
        canceled = await c.cancel_order(widest["id"], PERP, {"trigger": True})
        lone = await c.create_order(PERP, "market", "buy", 0.05, None, {"trailingPercent": 0.5, "reduceOnly": True})
        lx.trade("BTC/USDT", px * 1.01)  # triggers; reduce-only with no position: expires
        return out, canceled, await c.fetch_order(lone["id"], PERP, {"trigger": True})

    out, canceled, lone = run(lx, body)
    assert "-1130" in out["low rate"] and "callbackRate" in out["low rate"]
    assert "-1130" in out["high rate"]
    assert "-2021" in out["activation below"]
    assert "-4136" in out["close position"] and out["close position"].startswith("InvalidOrder")
    assert lx.perp.algo.orders[int(canceled["id"])].status == "CANCELED"
    assert lone["info"]["algoStatus"] == "EXPIRED" and lx.perp_trades() == []


def test_the_trail_walks_a_bar_low_high_if_it_rose_and_triggers_at_its_level_or_a_gapped_open():
    up = Trail.place("SELL", 0.01, None, 100.0)
    assert up.bar(100.0, 103.0, 99.5, 102.0) is None  # rose: low (99.5 > 99) first, then the high
    assert up.best == 103.0
    assert up.bar(102.5, 103.0, 101.0, 101.5) == pytest.approx(101.97)  # fell: 103 x 0.99, inside the bar
    down = Trail.place("SELL", 0.01, None, 100.0)
    assert down.bar(104.5, 105.0, 103.9, 104.0) == pytest.approx(103.95)  # fell: high 105 first, then the low
    gap = Trail.place("BUY", 0.01, None, 100.0)
    assert gap.bar(98.0, 98.0, 97.0, 97.5) is None and gap.best == 97.0  # fell to 97, closed below 97.97
    assert gap.bar(99.0, 99.5, 98.9, 99.2) == 99.0  # opened above 97 x 1.01 = 97.97: at the open
    waits = Trail.place("BUY", 0.02, 95.0, 100.0)  # activates once the low reaches 95
    assert waits.bar(100.0, 100.0, 96.0, 99.9) is None and not waits.active  # 96 x 1.02 crossed, not active
    assert waits.bar(99.9, 99.9, 94.0, 95.0) is None and waits.active
    assert waits.bar(95.0, 96.0, 94.5, 95.9) == pytest.approx(95.88)  # 94 x 1.02
