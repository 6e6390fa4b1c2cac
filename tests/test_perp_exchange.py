"""The loopback exchange's USDⓈ-M perpetuals (tests/exchange/perp.py) through real ccxt over real HTTP:
Binance's rules for shorts, reduce-only orders, margin, leverage and funding, checked by hand."""
from __future__ import annotations

import asyncio

import ccxt
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.perp import FUNDING_MS, TAKER
from tests.exchange.server import LoopbackExchange

PERP = "BTC/USDT:USDT"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=12, clock="2024-01-10 07:58", perps=(PERP,)) as ex:
        yield ex


def run(lx, body):
    async def main():
        client = async_client(lx)
        try:
            return await body(client)
        finally:
            await client.close()
    return asyncio.run(main())


def test_short_pays_no_funding_but_receives_it_and_closes_reduce_only(lx):
    lx.set_funding_rate(PERP, 0.0003)

    async def body(c):
        m = (await c.load_markets())[PERP]
        assert m["swap"] and m["linear"] and m["settle"] == "USDT" and m["limits"]["cost"]["min"] == 100.0
        await c.set_leverage(5, PERP)
        sold = await c.create_order(PERP, "market", "sell", 0.05, None, {"clientOrderId": "short-1"})
        assert sold["status"] == "closed" and sold["filled"] == 0.05
        (pos,) = await c.fetch_positions([PERP])
        assert pos["side"] == "short" and pos["contracts"] == 0.05 and pos["leverage"] == 5
        lx.advance(2)  # 07:58 -> 08:00: a funding time
        funding = await c.fetch_funding_history(PERP)
        closed = await c.create_order(PERP, "market", "buy", 0.05, None, {"reduceOnly": True})
        return sold, funding, closed, await c.fetch_positions([PERP]), await c.fetch_balance({"type": "swap"})

    sold, funding, closed, after, balance = run(lx, body)
    mark_at_funding = lx.perp.price_at("BTCUSDT", 1704873600000)
    assert [f["timestamp"] for f in funding] == [1704873600000] and 1704873600000 % FUNDING_MS == 0
    assert funding[0]["amount"] == pytest.approx(0.05 * mark_at_funding * 0.0003)  # a short receives
    assert closed["filled"] == 0.05 and after == [] and lx.perp_position(PERP) == (0.0, 0.0)
    entry, exit_ = sold["average"], closed["average"]
    fees = 0.05 * (entry + exit_) * TAKER
    want = 100_000 + 0.05 * (entry - exit_) - fees + funding[0]["amount"]
    assert lx.perp_wallet() == pytest.approx(want)
    assert balance["USDT"]["total"] == pytest.approx(want)
    assert lx.balances()["USDT"] == 100_000  # the spot wallet is apart


def test_binance_refusals(lx):
    lx.set_max_leverage(PERP, 50)

    async def body(c):
        out = {}
        for name, call in [
            ("reduce_nothing", lambda: c.create_order(PERP, "market", "buy", 0.01, None, {"reduceOnly": True})),
            ("below_min_notional", lambda: c.create_order(PERP, "market", "sell", 0.001, None)),
            ("no_margin", lambda: c.create_order(PERP, "market", "sell", 60, None)),  # 60 BTC at 20x: > 100k
            ("leverage", lambda: c.set_leverage(60, PERP)),
        ]:
            try:
                await call()
                out[name] = None
            except ccxt.BaseError as e:
                out[name] = type(e)
        await c.create_order(PERP, "market", "sell", 0.01, None)
        grow = None
        try:
            await c.create_order(PERP, "market", "sell", 0.01, None, {"reduceOnly": True})
        except ccxt.InvalidOrder as e:
            grow = e
        small_close = await c.create_order(PERP, "market", "buy", 0.001, None, {"reduceOnly": True})  # exempt
        big_close = await c.create_order(PERP, "market", "buy", 0.05, None, {"reduceOnly": True})  # fills 0.009
        return out, grow, small_close, big_close

    out, grow, small_close, big_close = run(lx, body)
    assert out == {"reduce_nothing": ccxt.InvalidOrder, "below_min_notional": ccxt.InvalidOrder,
                   "no_margin": ccxt.InsufficientFunds, "leverage": ccxt.BadRequest}
    assert grow is not None and "-2022" in str(grow)
    assert small_close["filled"] == 0.001
    assert big_close["filled"] == pytest.approx(0.009) and lx.perp_position(PERP)[0] == 0.0


def test_funding_rate_history_endpoint(lx):
    async def body(c):
        await c.load_markets()
        latest = await c.fetch_funding_rate_history(PERP, limit=3)
        ranged = await c.fetch_funding_rate_history(PERP, since=1704067200000, limit=2)
        return latest, ranged

    latest, ranged = run(lx, body)
    assert [r["timestamp"] for r in latest] == [1704844800000 - k * FUNDING_MS for k in (2, 1, 0)]  # none after 07:58
    assert [r["timestamp"] for r in ranged] == [1704067200000, 1704067200000 + FUNDING_MS]
    assert [r["fundingRate"] for r in latest] == [lx.perp.rate("BTCUSDT", r["timestamp"]) for r in latest]
