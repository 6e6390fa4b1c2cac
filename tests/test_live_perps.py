"""Live perpetuals through the broker layer: CcxtBroker and ExchangeBroker with a real
ccxt.async_support.binance over real HTTP against the loopback's USDⓈ-M perpetuals (tests/exchange/perp.py):
a short is a sell without holding the base, closes go reduce-only, positions come from fetch_positions
(signed), the wallet is the futures wallet, funding is the exchange's own payments."""
from __future__ import annotations

import asyncio

import ccxt
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.perp import FUNDING_MS
from tests.exchange.server import LoopbackExchange
from workbench.domain import Order, Side
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.retry import RetryPolicy

PERP = "BTC/USDT:USDT"
FAST = RetryPolicy(retries=8, base=0.02, cap=0.2)


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=12, clock="2024-01-10 07:58", perps=(PERP,)) as ex:
        yield ex


async def _with_broker(lx, fn):
    c = async_client(lx)
    b = CcxtBroker(c, "perp12345678", policy=FAST)
    b.perps = [PERP]
    try:
        return await fn(b)
    finally:
        await c.close()


def test_ccxt_broker_shorts_closes_reduce_only_and_reads_funding(lx):
    short = Order("BTC/USDT:USDT:short:1", PERP, Side.SELL, 0.05)
    cover = Order("BTC/USDT:USDT:cover:1", PERP, Side.BUY, 0.05)

    async def go(b):
        assert await b.set_leverage(PERP, 2.5) == 3  # whole numbers, rounded up
        res = await b.submit(short)
        fills = await b.fills(short, res)
        held = (await b.positions([PERP]))[PERP]
        wallet = await b.balances()
        assert not b.reduce_only(short, held) and b.reduce_only(cover, held)
        assert not b.reduce_only(Order("x", PERP, Side.BUY, 0.06), held)  # would flip to long: not reduce-only
        lx.advance(2)  # through 08:00, a funding time
        funding = await b.funding_payments(PERP, int(fills[0].time.timestamp() * 1000))
        closed = await b.submit(cover, params={"reduceOnly": True})
        with pytest.raises(ccxt.InvalidOrder):  # nothing left to reduce: Binance refuses (-2022)
            await b.submit(Order("BTC/USDT:USDT:cover:2", PERP, Side.BUY, 0.01), params={"reduceOnly": True})
        return fills, held, wallet, funding, closed, await b.positions([PERP]), await b.balances()

    fills, held, wallet, funding, closed, after, wallet_after = asyncio.run(_with_broker(lx, go))
    assert lx.perp.lev("loopback-key", "BTCUSDT") == 3
    (trade,) = [t for t in lx.perp_trades() if t["side"] == "SELL"]
    assert [(f.side, f.quantity, f.fill_id) for f in fills] == [(Side.SELL, 0.05, f"binance:{trade['id']}")]
    assert fills[0].commission == pytest.approx(float(trade["commission"]))
    assert held == pytest.approx(-0.05) and wallet[PERP] == pytest.approx(-0.05)
    assert wallet["USDT"] == pytest.approx(100_000 - float(trade["commission"]))  # wallet balance: no unrealized
    (pay,) = funding
    assert pay["time"] % FUNDING_MS == 0 and pay["amount"] == pytest.approx(
        float(lx.perp_income("FUNDING_FEE")[0]["income"])) and pay["amount"] > 0  # a short receives
    assert closed["filled"] == 0.05 and after == {PERP: 0.0} and PERP not in wallet_after
    assert wallet_after["USDT"] == pytest.approx(lx.perp_wallet())


def test_a_live_session_trades_spot_or_perpetuals_not_both(store):
    from tests.live_kit import live_config
    from workbench.engine.brokers.exchange import ExchangeBroker

    with pytest.raises(ValueError, match="not both.*two sessions"):
        ExchangeBroker(CcxtBroker(None), live_config(symbols=["BTC/USDT", PERP]), store)
    broker = ExchangeBroker(CcxtBroker(None), live_config(symbols=[PERP]), store)
    assert broker.client.perps == [PERP] and broker.books_funding
    assert not ExchangeBroker(CcxtBroker(None), live_config(), store).books_funding
