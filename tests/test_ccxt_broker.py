"""CcxtBroker, the retrier and the live feed with a real ccxt.async_support.binance over real HTTP
against the loopback exchange (signed endpoints, matching engine, fault injection)."""
from __future__ import annotations

import asyncio
import time

import ccxt
import numpy as np
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import API_KEY, LoopbackExchange
from workbench.domain import Order, OrderType, Side
from workbench.engine.ccxt_broker import CcxtBroker, order_status
from workbench.engine.live_feed import LiveFeed
from workbench.retry import RetryPolicy, call_with_retry, is_transient, retry_async

ORDER = "/api/v3/order"
FAST = RetryPolicy(retries=8, base=0.02, cap=0.2)


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT", "ETH/USDT"), days=30, clock="2024-01-10") as ex:
        yield ex


def run(coro):
    return asyncio.run(coro)


async def _with_broker(lx, fn, session_id="abc123def456", **client):
    c = async_client(lx, **client)
    try:
        return await fn(CcxtBroker(c, session_id, policy=FAST))
    finally:
        await c.close()


def buy(cid="BTC/USDT:entry:1", q=0.01, symbol="BTC/USDT", **kw) -> Order:
    return Order(cid, symbol, Side.BUY, q, **kw)


# ---- the exchange checks requests like Binance -------------------------------------------------
def test_unknown_key_and_bad_signature_are_refused_with_binance_codes_and_not_retried(lx):
    async def go():
        for key, secret, code, status in (("nobody", "x", "-2015", 401), (API_KEY, "wrong-secret", "-1022", 400)):
            lx.clear_log()
            c = async_client(lx, key=key, secret=secret)
            try:
                b = CcxtBroker(c, "abc123def456", policy=FAST)
                with pytest.raises(ccxt.AuthenticationError, match=code):
                    await b.balances()
            finally:
                await c.close()
            assert [r.status for r in lx.requests("/api/v3/account")] == [status]

    run(go())


def test_client_order_id_is_unique_among_open_orders_only_like_binance(lx):
    """Binance's rule: a repeated newClientOrderId is refused while the earlier order is open, and is a new
    order once the earlier one is filled or canceled."""
    async def go():
        c = async_client(lx)
        try:
            await c.load_markets()
            low = round(lx.price("BTC/USDT") * 0.5, 2)
            resting = await c.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "rest-id"})
            with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
                await c.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "rest-id"})
            await c.cancel_order(resting["id"], "BTC/USDT")
            await c.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "rest-id"})  # canceled: ok
            await c.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "same-id"})
            await c.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "same-id"})  # filled: ok
        finally:
            await c.close()

    run(go())
    ids = [o["clientOrderId"] for o in lx.exchange_orders()]
    assert ids.count("rest-id") == 2 and ids.count("same-id") == 2 and len(lx.exchange_trades()) == 2


# ---- idempotent submission ----------------------------------------------------------------------
FAULTS = {
    "response lost": lambda lx: lx.lose_response_next(1),
    "connection dropped": lambda lx: lx.drop_next(1, path=ORDER),
    "http 503": lambda lx: lx.fail_next(2, 503, path=ORDER),
    "rate limited 429": lambda lx: lx.fail_next(1, 429, retry_after=0.2, path=ORDER),
    "latency past the timeout": lambda lx: lx.delay_next(1, 0.6, path=ORDER, method="POST"),
    "lost twice then 503": lambda lx: (lx.lose_response_next(1), lx.fail_next(1, 503, path=ORDER)),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_submit_under_a_fault_reaches_the_exchange_exactly_once(lx, fault):
    FAULTS[fault](lx)
    order = buy()

    async def go(b):
        res = await b.submit(order)
        fills = await b.fills(order, res)
        return res, fills

    res, fills = run(_with_broker(lx, go, timeout=400))
    if "latency" in fault:  # the client gave up on the original, which landed late: it was never resent
        assert [r.status for r in lx.requests(ORDER) if r.method == "POST"] == [200]
    mine = [o for o in lx.exchange_orders() if o["clientOrderId"].startswith("wbabc123def456-")]
    assert len(mine) == 1 and mine[0]["status"] == "FILLED"
    assert res["id"] == str(mine[0]["orderId"])
    trades = lx.exchange_trades()
    assert len(trades) == 1 and [f.fill_id for f in fills] == [f"binance:{trades[0]['id']}"]
    assert fills[0].quantity == pytest.approx(0.01) and fills[0].price == pytest.approx(float(trades[0]["price"]))
    assert lx.balances()["BTC"] == pytest.approx(0.01)


def test_refusals_are_raised_at_once_not_retried(lx):
    async def go(b):
        with pytest.raises(ccxt.InsufficientFunds):
            await b.submit(buy(q=1000.0))
        with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # Binance's -1013 filter failure
            await b.submit(Order("BTC/USDT:x:1", "BTC/USDT", Side.BUY, 0.0001))  # below min notional
        with pytest.raises(ccxt.InsufficientFunds):
            await b.submit(Order("BTC/USDT:x:2", "BTC/USDT", Side.SELL, 0.5))  # nothing to sell

    run(_with_broker(lx, go))
    assert [r.status for r in lx.requests(ORDER)] == [400, 400, 400] and lx.exchange_orders() == []


def test_client_order_id_is_deterministic_short_and_session_scoped():
    b1, b2 = CcxtBroker(None, "0123456789ab"), CcxtBroker(None, "ba9876543210")
    o = buy("ETH/USDT:stop_loss:1704067200")
    cid = b1.client_order_id(o)
    assert cid == b1.client_order_id(buy("ETH/USDT:stop_loss:1704067200")) and len(cid) <= 36
    assert cid.startswith("wb0123456789ab-") and b2.client_order_id(o) != cid
    assert b1.client_order_id(buy("ETH/USDT:stop_loss:1704067260")) != cid
    assert "0123456789ab" in repr(b1) and "secret" not in repr(b1).lower()


def test_limit_orders_rest_fill_when_price_crosses_and_cancel(lx):
    async def go(b):
        p = lx.price("BTC/USDT")
        far = Order("BTC/USDT:lim:1", "BTC/USDT", Side.BUY, 0.01, OrderType.LIMIT, limit_price=round(p * 0.5, 2))
        near = Order("BTC/USDT:lim:2", "BTC/USDT", Side.BUY, 0.01, OrderType.LIMIT, limit_price=round(p * 1.01, 2))
        r_far, r_near = await b.submit(far), await b.submit(near)
        assert order_status(r_far).value == "new"
        assert {o["id"] for o in await b.open_orders(["BTC/USDT"])} == {r_far["id"], r_near["id"]}
        lx.advance(1)  # the bar completes: its low is below 1.01 x the open
        got = await b.fetch(near, r_near)
        assert got["status"] == "closed" and got["average"] == pytest.approx(near.limit_price)
        assert (await b.fills(near, got))[0].price == pytest.approx(near.limit_price)
        canceled = await b.cancel_all(["BTC/USDT", "ETH/USDT"])
        assert [o["id"] for o in canceled] == [r_far["id"]] and await b.open_orders(["BTC/USDT"]) == []
        assert (await b.positions(["BTC/USDT", "ETH/USDT"])) == {"BTC/USDT": pytest.approx(0.01), "ETH/USDT": 0.0}
        assert await b.cancel(far, r_far) is None  # already canceled

    run(_with_broker(lx, go))


# ---- the one retrier ----------------------------------------------------------------------------
def test_retrier_classifies_errors():
    assert is_transient(ccxt.RequestTimeout("t")) and is_transient(ccxt.RateLimitExceeded("r"))
    assert is_transient(ccxt.ExchangeNotAvailable("x")) and is_transient(ccxt.NetworkError("n"))
    for e in (ccxt.InvalidOrder("i"), ccxt.InsufficientFunds("f"), ccxt.AuthenticationError("a"), ValueError("v")):
        assert not is_transient(e)
    p = RetryPolicy(retries=3, base=1.0, cap=5.0)
    assert [p.delay(i) for i in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="retries, base and cap"):
        RetryPolicy(retries=-1)


def test_retrier_honours_retry_after_and_gives_up(lx):
    client = lx.ccxt_client()
    lx.fail_next(1, 429, retry_after=0.3, path="/api/v3/exchangeInfo")
    t0 = time.perf_counter()
    call_with_retry(client, client.load_markets, policy=RetryPolicy(retries=2, base=0.01))
    assert time.perf_counter() - t0 >= 0.3
    calls = []

    async def failing():
        calls.append(1)
        raise ccxt.ExchangeNotAvailable("down")

    with pytest.raises(ccxt.ExchangeNotAvailable) as info:
        run(retry_async(None, failing, policy=RetryPolicy(retries=2, base=0.001)))
    assert len(calls) == 3 and "gave up after 2 retries" in "".join(info.value.__notes__)

    async def refused():
        calls.append(1)
        raise ccxt.InvalidOrder("no")

    calls.clear()
    with pytest.raises(ccxt.InvalidOrder):
        run(retry_async(None, refused, policy=RetryPolicy(retries=5, base=0.001)))
    assert len(calls) == 1


# ---- live feed ----------------------------------------------------------------------------------
def test_live_feed_passes_only_closed_bars_goes_stale_and_recovers(lx):
    statuses: list[tuple[bool, str]] = []

    async def go():
        c = async_client(lx)
        feed = LiveFeed(c, ["BTC/USDT", "ETH/USDT"], "1m", poll_seconds=0.01, bar_seconds=0.05, stale_bars=3,
                        on_status=lambda st, msg: statuses.append((st, msg)), max_bars=4)
        got = []
        try:
            it = feed.__aiter__()
            got.append(await it.__anext__())  # the newest closed bar at start
            lx.advance(1)
            got.append(await it.__anext__())
            await asyncio.sleep(0.3)  # no bar for > 3 intervals
            lx.fail_next(3, 503, path="/api/v3/klines")
            lx.advance(2)
            got.append(await it.__anext__())
            got.append(await it.__anext__())
        finally:
            await c.close()
        return got

    t0 = lx.now()
    got = run(go())
    times = [next(iter(b.values())).time for b in got]
    step = 60
    assert [int(t.timestamp()) for t in times] == [int(t0.timestamp()) + step * k for k in (-1, 0, 1, 2)]
    want = lx.bars("BTC/USDT").loc[times[1]]
    bar = got[1]["BTC/USDT"]
    assert (bar.open, bar.high, bar.low, bar.close) == pytest.approx(tuple(want[["open", "high", "low", "close"]]))
    assert set(got[0]) == {"BTC/USDT", "ETH/USDT"}
    assert [s for s, _ in statuses] == [True, False] and "stale" in statuses[0][1]


def test_live_feed_over_ccxt_pro_websockets_reconnects_and_backfills(lx):
    import ccxt.pro as ccxt_pro

    async def go():
        c = lx.point(ccxt_pro.binance({"enableRateLimit": False}))
        feed = LiveFeed(c, ["BTC/USDT", "ETH/USDT"], "1m", bar_seconds=0.05, stale_bars=100, max_bars=6)
        assert feed._use_ws()

        async def clock():
            for k in range(8):
                await asyncio.sleep(0.15)
                lx.advance(1)
                if k == 2:
                    assert lx.drop_websockets() == 1  # the connection dies mid-run

        ticker = asyncio.get_running_loop().create_task(clock())
        try:
            return [b async for b in feed]
        finally:
            await ticker
            await c.close()

    t0 = lx.now()
    got = asyncio.run(asyncio.wait_for(go(), 20))
    times = [next(iter(b.values())).time for b in got]
    minutes = [int((t - t0.to_pydatetime()).total_seconds()) // 60 for t in times]
    assert minutes == [-1, 0, 1, 2, 3, 4]  # no gap, no repeat
    for sym in ("BTC/USDT", "ETH/USDT"):
        want = lx.bars(sym).loc[times, ["open", "high", "low", "close", "volume"]].to_numpy()
        have = [[b[sym].open, b[sym].high, b[sym].low, b[sym].close, b[sym].volume] for b in got]
        np.testing.assert_allclose(have, want, rtol=1e-8)  # the final candles, not forming snapshots
    assert len([r for r in lx.requests() if r.path.startswith("/ws")]) >= 2  # it reconnected
