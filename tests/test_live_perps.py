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

pytestmark = pytest.mark.live_battery
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


def test_reconciliation_compares_the_short_and_the_wallet_and_sees_a_manual_trade(lx, store):
    """An exchange broker holding a short agrees with the exchange round after round (position signed, the
    wallet against the cash at entry prices); a trade made on the account by hand is reported both ways."""
    from tests.exchange.server import API_KEY
    from tests.live_kit import live_config
    from workbench.engine.brokers.exchange import ExchangeBroker
    from workbench.execution.ledger import Portfolio

    config = live_config(symbols=[PERP], direction="short", risk={})
    sid = store.create_session(config)

    async def go(cb):
        b = ExchangeBroker(cb, config, store, mismatch_trip=None)
        pf = Portfolio(config.initial_balance, shorts=True)
        b.attach(sid, pf)
        b.on_fill = lambda f, o: pf.apply_fill(f)
        order = Order("BTC/USDT:USDT:entry:1", PERP, Side.SELL, 0.05)
        b.apply_fills(order, await cb.fills(order, await cb.submit(order)))
        rounds = [await b.reconcile_once() for _ in range(2)]  # the baseline, then agreement
        lx.advance(3)  # prices move (unrealized P&L, which neither side counts) and 08:00 funding is paid
        before_funding = await b.reconcile_once()  # books the funding first: still no difference
        lx.perp.create(API_KEY, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.02"})
        return pf, rounds, before_funding, await b.reconcile_once()

    pf, rounds, after_funding, manual = asyncio.run(_with_broker(lx, go))
    assert rounds == [[], []] and after_funding == []
    assert pf.positions[PERP].extra["funding"] == pytest.approx(float(lx.perp_income("FUNDING_FEE")[0]["income"]))
    by_asset = {d["asset"]: d for d in manual}
    assert by_asset[PERP]["direction"] == "exchange_more" and by_asset[PERP]["difference"] == pytest.approx(0.02)
    hand = lx.perp_trades()[-1]  # the wallet moved by its realized P&L and fee, the session's cash did not
    assert by_asset["USDT"]["difference"] == pytest.approx(float(hand["realizedPnl"]) - float(hand["commission"]))
