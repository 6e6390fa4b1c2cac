"""Operator orders in live sessions go to the (loopback) exchange: resting limit orders, cancels,
lost answers, fills made while the runner was down, and the end of a run."""
from __future__ import annotations

import asyncio

import pytest

from tests.exchange.fixtures import async_client
from tests.kit import until
from tests.live_kit import (
    ARMED,
    FAST,
    ORDER,
    S,
    assert_fills_match_exchange,
    assert_one_exchange_order_per_client_id,
    below_next_lows,
    feed_for,
    manual_exchange,
    quiet_config,
    start_quiet,
    stop_flat,
    trade_through,
)
from workbench.domain import Order, OrderType, Side
from workbench.engine import open_session
from workbench.engine.ccxt_broker import CcxtBroker

pytestmark = pytest.mark.live_battery


# ---- operator orders go to the exchange ---------------------------------------------------------
@pytest.fixture
def lx_manual():
    with manual_exchange() as ex:
        yield ex


def _buy_fills(store, sid, client_id):
    f = store.fills(sid)
    return f[f["client_id"] == client_id]


def test_operator_limit_buy_rests_on_the_exchange_and_fills_once_when_the_price_trades_through(lx_manual, store):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            limit = below_next_lows(lx, 4)
            msg = s.place_order("BTC/USDT", "buy", 0.05, type="limit", limit_price=limit)
            assert "op1 sent to binance" in msg and "resting on binance" in msg
            await until(lambda: "op1" in s.broker.resting)
            [o] = lx.exchange_orders()
            assert (o["status"], o["type"], float(o["price"])) == ("NEW", "LIMIT", limit)
            n_bars = s.bars_seen
            lx.advance(3)  # bars that stay above the limit: it keeps resting
            await until(lambda: s.bars_seen >= n_bars + 3)
            await asyncio.sleep(0.2)  # several watcher rounds
            assert store.fills(s.id).empty and s.portfolio.quantity("BTC/USDT") == 0.0
            assert lx.exchange_orders()[0]["status"] == "NEW" and "op1" in s.broker.resting
            trade_through(lx, limit)
            await until(lambda: len(store.fills(s.id)) >= 1)
            await until(lambda: "op1" not in s.broker.resting)
            for _ in range(3):  # more bars and polls: the fill is not applied again
                lx.advance(1)
                await asyncio.sleep(0.1)
            assert await s.broker.sync_resting_orders() == 0
            fills = store.fills(s.id)
            assert len(fills) == 1 and fills["client_id"].iloc[0] == "op1"
            assert fills["price"].iloc[0] == pytest.approx(limit) and fills["quantity"].iloc[0] == pytest.approx(0.05)
            assert s.portfolio.quantity("BTC/USDT") == pytest.approx(0.05)
            assert s.portfolio.cash == pytest.approx(10_000.0 - 0.05 * limit * 1.001, rel=1e-9)  # quote fee 0.1 %
            assert store.orders(s.id).set_index("client_id").loc["op1", "status"] == "filled"
            assert lx.exchange_orders()[0]["status"] == "FILLED"
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED and len(_buy_fills(store, s.id, "op1")) == 1
    assert_fills_match_exchange(lx, store, s.id)  # the buy and the stop's sell, once each
    assert_one_exchange_order_per_client_id(lx)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)
    assert store.orders(s.id, status=["new", "partially_filled"]).empty


def test_operator_limit_orders_are_canceled_on_the_exchange(lx_manual, store):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            far = round(lx.price("BTC/USDT") * 0.5, 2)
            s.place_order("BTC/USDT", "buy", 0.05, type="limit", limit_price=far)
            cmd = store.send_command(s.id, "place_order", {"symbol": "BTC/USDT", "side": "buy", "quantity": 0.02,
                                                           "type": "limit", "limit_price": far})
            await until(lambda: {"op1", f"cmd{cmd}"} <= set(s.broker.resting))
            assert [o["status"] for o in lx.exchange_orders()] == ["NEW", "NEW"]
            assert "canceling order op1" in s.cancel_order("op1")
            await until(lambda: "op1" not in s.broker.resting)
            by_cid = {o["clientOrderId"]: o["status"] for o in lx.exchange_orders()}
            assert by_cid[s.broker.client.client_order_id(Order("op1", "", Side.BUY, 0.0))] == "CANCELED"
            assert store.orders(s.id).set_index("client_id").loc["op1", "status"] == "canceled"
            with pytest.raises(ValueError, match="no resting order 'op1'; resting: cmd"):
                s.cancel_order("op1")
            bad = store.send_command(s.id, "place_order", {"symbol": "BTC/USDT", "side": "buy", "quantity": -1,
                                                           "type": "limit", "limit_price": far})
            c2 = store.send_command(s.id, "cancel_order", {"client_id": f"cmd{cmd}"})  # the store command path
            await until(lambda: store.get_command(c2)["status"] != "pending")
            assert store.get_command(bad)["status"] == "rejected"
            assert "quantity must be a positive number" in store.get_command(bad)["result"]
            await until(lambda: not s.broker.resting)
            assert [o["status"] for o in lx.exchange_orders()] == ["CANCELED", "CANCELED"]
            s.place_order("BTC/USDT", "buy", 0.01, type="limit", limit_price=far)  # left resting: stop cancels it
            await until(lambda: "op2" in s.broker.resting)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED and store.fills(s.id).empty and lx.exchange_trades() == []
    orders = store.orders(s.id)
    assert set(orders["status"]) == {"canceled"} and len(orders) == 3
    assert [o["status"] for o in lx.exchange_orders()] == ["CANCELED"] * 3
    ev = store.events(s.id)
    assert ev[ev["kind"] == "order_canceled"]["message"].str.contains("canceled on binance").sum() == 3


def test_operator_market_order_fills_once_when_the_exchange_answer_is_lost(lx_manual, store):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            lx.lose_response_next(1)  # the exchange takes the order, the answer never arrives
            assert "op1 sent to binance: buy 0.05 BTC/USDT market" in s.place_order("BTC/USDT", "buy", 0.05)
            await until(lambda: len(store.fills(s.id)) >= 1)
            await until(lambda: not s.broker.inflight)
            await asyncio.sleep(0.2)
            assert s.portfolio.quantity("BTC/USDT") == pytest.approx(0.05)
            assert len(lx.exchange_orders()) == 1 and len(lx.exchange_trades()) == 1
            assert "order_recovered" in set(store.events(s.id)["kind"])
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED and len(_buy_fills(store, s.id, "op1")) == 1
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)
    assert [r for r in lx.requests(ORDER) if r.method == "POST" and r.status == 0]  # the lost answer really happened


def test_resume_applies_a_limit_fill_made_while_down_once_and_follows_orders_still_resting(lx_manual, store):
    lx = lx_manual
    config = quiet_config()

    async def go():
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config), **FAST)
            # the runner had sent two operator limit buys, then died
            s._restore(s.runner_state())
            near, far = below_next_lows(lx, 1), round(lx.price("BTC/USDT") * 0.5, 2)
            o1 = Order("op1", "BTC/USDT", Side.BUY, 0.05, OrderType.LIMIT, near, reason="operator")
            o2 = Order("op2", "BTC/USDT", Side.BUY, 0.02, OrderType.LIMIT, far, reason="operator")
            b = CcxtBroker(client, s.id)
            for o in (o1, o2):
                store.upsert_order(s.id, o)
                await b.submit(o)
            store.save_runner_state(s.id, s.runner_state())
            store.set_state(s.id, S.ORPHANED, message="runner died")
            trade_through(lx, near)  # op1 fills while nobody is watching
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED,
                             feed=feed_for(client, config, stale_bars=100_000), resting_poll=0.05, **FAST)
            r.start()
            await until(lambda: r.state is S.RUNNING)
            assert r.portfolio.quantity("BTC/USDT") == pytest.approx(0.05) and list(r.broker.resting) == ["op2"]
            assert "op3 sent" in r.place_order("BTC/USDT", "buy", 0.01, type="limit", limit_price=far)  # no id reuse
            await until(lambda: "op3" in r.broker.resting)
            trade_through(lx, far)  # both far buys fill: followed by the resumed watcher
            await until(lambda: not r.broker.resting)
            await asyncio.sleep(0.2)
            assert await r.broker.sync_resting_orders() == 0
            return r, await stop_flat(lx, r)
        finally:
            await client.close()

    r, final = asyncio.run(go())
    assert final is S.STOPPED
    rec = store.events(r.id)
    reconciled = rec[rec["kind"] == "reconcile"]["message"]
    assert reconciled.str.contains("op1 is filled on the exchange; 1 fills applied").any()
    assert reconciled.str.contains("op2 is new on the exchange; 0 fills applied; resting").any()
    for cid in ("op1", "op2", "op3"):
        assert len(_buy_fills(store, r.id, cid)) == 1
    assert store.orders(r.id).set_index("client_id").loc[["op1", "op2", "op3"], "status"].tolist() == ["filled"] * 3
    assert_fills_match_exchange(lx, store, r.id)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)


def test_stop_cancels_a_resting_operator_sell_before_it_flattens(lx_manual, store):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            s.place_order("BTC/USDT", "buy", 0.05)
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0 and not s.broker.inflight)
            high = round(lx.price("BTC/USDT") * 2, 2)
            s.place_order("BTC/USDT", "sell", 0.03, type="limit", limit_price=high)  # locks 0.03 BTC on the exchange
            await until(lambda: "op2" in s.broker.resting)
            with pytest.raises(ValueError, match="cancel one first"):  # only 0.02 left, then nothing
                s.place_order("BTC/USDT", "sell", 0.02, type="limit", limit_price=high)
                await until(lambda: "op3" in s.broker.resting)
                s.place_order("BTC/USDT", "sell", 0.01, type="limit", limit_price=high)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED and lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)
    orders = store.orders(s.id).set_index("client_id")
    assert orders.loc[["op2", "op3"], "status"].tolist() == ["canceled", "canceled"]
    assert "order_rejected" not in set(store.events(s.id)["kind"])  # the exit was not refused for locked coins
    assert_fills_match_exchange(lx, store, s.id)


def test_the_end_of_a_run_cancels_operator_orders_still_resting_on_the_exchange(lx_manual, store):
    lx = lx_manual
    config = quiet_config()

    async def go():
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000, max_bars=2), **FAST)
            s.start()
            await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
            s.place_order("BTC/USDT", "buy", 0.01, type="limit", limit_price=round(lx.price("BTC/USDT") * 0.5, 2))
            await until(lambda: "op1" in s.broker.resting)
            lx.advance(2)  # the feed ends: the run completes
            return s, await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.COMPLETED and [o["status"] for o in lx.exchange_orders()] == ["CANCELED"]
    assert store.orders(s.id).set_index("client_id").loc["op1", "status"] == "canceled"
    assert store.events(s.id)["message"].str.contains("op1: canceled: the run ended").any()
