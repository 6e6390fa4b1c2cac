"""A live session handed back (a host shutting down) keeps its resting orders on the (loopback) exchange,
and the session resumed from it adopts them: fills made while no runner ran are booked once, orders
canceled on the exchange meanwhile are recorded as canceled, nothing is sent twice. A paper session's
resting orders stay in its checkpoint."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from tests.exchange.fixtures import async_client
from tests.kit import paper_config, until
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
from workbench.engine import open_session
from workbench.engine.host import request_session, run_host
from workbench.engine.session import Session

pytestmark = pytest.mark.live_battery

HANDED_BACK = "host shut down: handed back, resumable"


@pytest.fixture
def lx_manual():
    with manual_exchange() as ex:
        yield ex


def _sent(lx, method):
    """Order requests of ``method`` the exchange answered (POST: placed, DELETE: canceled)."""
    return [r for r in lx.requests(ORDER) if r.method == method and r.status == 200]


def _status(store, sid, client_id):
    return store.orders(sid).set_index("client_id").loc[client_id, "status"]


def _assert_kept(lx, store, sid, resting):
    """ORPHANED with no runner, and the ``resting`` orders still open on the exchange and in the store."""
    row = store.get_session(sid)
    assert row["state"] == "orphaned" and row["runner"] is None
    assert all(_status(store, sid, c) == "new" for c in resting)
    open_there = {o["clientOrderId"] for o in lx.exchange_orders() if o["status"] == "NEW"}
    assert len(open_there) == len(resting)
    assert not _sent(lx, "DELETE")  # nothing canceled
    ev = store.events(sid)
    assert not ev["kind"].isin(["order_canceled", "orders_canceled"]).any()
    assert not ev["message"].str.contains("killed|the run ended").any()
    kept = ev[ev["kind"] == "handed_back"]
    assert len(kept) == 1 and sorted(kept["data"].iloc[0]["client_ids"]) == sorted(resting)


def test_a_handed_back_session_leaves_its_limit_order_resting_and_the_resumed_one_books_its_fill_once(
        lx_manual, store):
    lx = lx_manual
    config = quiet_config()

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            s.place_order("BTC/USDT", "buy", 0.02)  # a position to keep
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0 and not s.broker.inflight)
            limit = below_next_lows(lx, 3)
            s.place_order("BTC/USDT", "buy", 0.05, type="limit", limit_price=limit)
            await until(lambda: "op2" in s.broker.resting)
            s.hand_back(HANDED_BACK)
            assert await asyncio.wait_for(s.wait(), 10) is S.ORPHANED
            _assert_kept(lx, store, s.id, ["op2"])
            assert store.load_runner_state(s.id)["portfolio"]["positions"]["BTC/USDT"]["quantity"] == \
                pytest.approx(0.02)
            lx.advance(2)  # no runner: bars above the limit, then one through it
            trade_through(lx, limit)
            assert [o["status"] for o in lx.exchange_orders()] == ["FILLED", "FILLED"]

            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000), **FAST)
            r.start()
            await until(lambda: r.state is S.RUNNING)
            assert not r.broker.resting and _status(store, r.id, "op2") == "filled"
            assert r.portfolio.quantity("BTC/USDT") == pytest.approx(0.07)
            assert lx.balances()["BTC"] == pytest.approx(r.portfolio.quantity("BTC/USDT"), rel=1e-12)
            lx.advance(1)
            await asyncio.sleep(0.2)  # watcher rounds and a bar: nothing applied twice
            assert await r.broker.sync_resting_orders() == 0
            fills = store.fills(r.id)
            assert fills["client_id"].tolist() == ["op1", "op2"]
            assert fills["price"].iloc[1] == pytest.approx(limit)
            assert len(_sent(lx, "POST")) == 2 and not _sent(lx, "DELETE")  # nothing sent again
            assert "op3 sent" in r.place_order("BTC/USDT", "sell", 0.01, type="limit",
                                               limit_price=round(lx.price("BTC/USDT") * 2, 2))  # no id reuse
            await until(lambda: "op3" in r.broker.resting)
            return r, await stop_flat(lx, r)
        finally:
            await client.close()

    r, final = asyncio.run(go())
    assert final is S.STOPPED and _status(store, r.id, "op3") == "canceled"  # a stop still cancels
    ev = store.events(r.id)
    assert ev[ev["kind"] == "reconcile"]["message"].str.contains("op2 is filled on the exchange; 1 fills").any()
    assert_fills_match_exchange(lx, store, r.id)  # both buys and the stop's sell, once each
    assert_one_exchange_order_per_client_id(lx)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)


def test_a_cancelled_host_hands_its_live_session_back_and_the_next_host_adopts_the_orders_left_resting(
        lx_manual, store_url, store):
    lx = lx_manual
    config = quiet_config()
    sid = request_session(store, config, arming=ARMED)

    def host(client, **kw):
        kwargs = dict(exchange=client, arming=ARMED, resting_poll=0.05,
                      feed=feed_for(client, config, stale_bars=100_000), **FAST)
        return asyncio.get_running_loop().create_task(run_host(store_url, poll=0.05, session_kwargs=kwargs, **kw))

    def place(limit, quantity):
        cmd = store.send_command(sid, "place_order", {"symbol": "BTC/USDT", "side": "buy", "quantity": quantity,
                                                      "type": "limit", "limit_price": limit})
        return cmd, f"cmd{cmd}"

    async def shut_down(task):
        task.cancel()  # Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    async def go():
        client = async_client(lx)
        try:
            first = host(client)
            await until(lambda: store.get_session(sid)["state"] == "running", timeout=10)
            near, far = below_next_lows(lx, 1), round(lx.price("BTC/USDT") * 0.5, 2)
            (c1, filled), (c2, canceled) = place(near, 0.05), place(far, 0.02)
            await until(lambda: {store.get_command(c)["status"] for c in (c1, c2)} == {"applied"}
                        and len(lx.exchange_orders()) == 2)
            await shut_down(first)
            _assert_kept(lx, store, sid, [filled, canceled])

            trade_through(lx, near)  # while no runner runs: one fills, the other is canceled by hand
            other = async_client(lx)
            try:
                await other.cancel_order(store.orders(sid).set_index("client_id").loc[canceled, "exchange_id"],
                                         "BTC/USDT")
            finally:
                await other.close()

            second = host(client, resume_orphans=True)
            await until(lambda: store.get_session(sid)["state"] == "running"
                        and _status(store, sid, canceled) == "canceled" and len(store.fills(sid)) == 1, timeout=10)
            lx.advance(1)
            await asyncio.sleep(0.3)  # watcher rounds and a bar: nothing applied twice
            await shut_down(second)
            return filled, canceled
        finally:
            await client.close()

    filled, canceled = asyncio.run(go())
    row = store.get_session(sid)
    assert row["state"] == "orphaned" and row["runner"] is None  # handed back again, not ended
    assert _status(store, sid, filled) == "filled" and _status(store, sid, canceled) == "canceled"
    assert store.fills(sid)["client_id"].tolist() == [filled]
    positions = store.positions(sid).set_index("symbol")
    assert positions.loc["BTC/USDT", "quantity"] == pytest.approx(0.05)
    assert lx.balances()["BTC"] == pytest.approx(0.05, rel=1e-12)  # the session holds what the exchange says
    ev = store.events(sid)
    reconciled = ev[ev["kind"] == "reconcile"]["message"]
    assert reconciled.str.contains(f"{filled} is filled on the exchange; 1 fills applied").any()
    assert reconciled.str.contains(f"{canceled} is canceled on the exchange; 0 fills applied").any()
    assert ev[ev["kind"] == "order_canceled"]["message"].str.contains(f"{canceled} canceled on binance").sum() == 1
    assert_fills_match_exchange(lx, store, sid)
    assert_one_exchange_order_per_client_id(lx)
    assert len(_sent(lx, "POST")) == 2 and len(_sent(lx, "DELETE")) == 1  # only the hand cancel


def test_a_handed_back_paper_session_keeps_its_resting_order_in_the_checkpoint(store):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    config = paper_config(start=start, end=start + timedelta(hours=8))

    async def go():
        s = Session(config, store, replay_speed=600.0).start()
        await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
        s.place_order("BTC/USDT", "buy", 0.01, type="limit", limit_price=1.0)  # never fills
        s.hand_back(HANDED_BACK)
        assert await asyncio.wait_for(s.wait(), 10) is S.ORPHANED
        r = Session.resume(s.id, store)
        return s, r

    s, r = asyncio.run(go())
    assert [o["client_id"] for o in store.load_runner_state(s.id)["orders"]] == ["op1"]
    assert [o.client_id for o in r.broker.open_orders()] == ["op1"]
    assert not store.events(s.id)["kind"].isin(["orders_canceled", "order_canceled"]).any()


def test_a_hand_back_while_an_ended_run_settles_its_last_order_lets_the_fill_be_booked(lx_manual, store):
    lx = lx_manual
    config = quiet_config()

    async def go():
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000, max_bars=2), **FAST)
            s.start()
            await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
            lx.delay_next(1, 1.0, path=ORDER, method="POST")  # the buy is still in flight when the feed ends
            s.place_order("BTC/USDT", "buy", 0.01)
            lx.advance(2)
            await until(lambda: s.state is S.COMPLETED)
            assert s.broker.inflight  # the broker's finish is waiting for it
            s.hand_back(HANDED_BACK)  # the host shuts down meanwhile
            return s, await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.COMPLETED and s.portfolio.quantity("BTC/USDT") == pytest.approx(0.01)
    assert_fills_match_exchange(lx, store, s.id)  # the late fill is in the store, once
    assert (store.events(s.id)["kind"] == "late_fills").any()


def test_an_order_in_flight_at_the_hand_back_settles_and_is_checkpointed(lx_manual, store):
    lx = lx_manual
    config = quiet_config()

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            lx.delay_next(1, 0.5, path=ORDER, method="POST")
            s.place_order("BTC/USDT", "buy", 0.01)
            await until(lambda: s.broker.inflight)
            s.hand_back(HANDED_BACK)
            final = await asyncio.wait_for(s.wait(), 10)
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000), **FAST)
            return s, final, r
        finally:
            await client.close()

    s, final, r = asyncio.run(go())
    assert final is S.ORPHANED and not s.broker.inflight
    assert store.orders(s.id)["status"].tolist() == ["filled"]
    assert_fills_match_exchange(lx, store, s.id)
    assert store.load_runner_state(s.id)["portfolio"]["positions"]["BTC/USDT"]["quantity"] == pytest.approx(0.01)
    assert r.portfolio.quantity("BTC/USDT") == pytest.approx(0.01) == lx.balances()["BTC"]
