"""Protective orders of live sessions on the (loopback) exchange, with real ccxt: a position's stop rests on
the exchange as a STOP_LOSS_LIMIT at the risk engine's level, moves with tighten-stops, is canceled by the
session's own exit (which then sells once); a stop filled on the exchange while the runner was dead
(SIGKILL) is found on resume and booked as the exit, once; on a market without stop order types the
monitor sells intrabar, on the ticker, before the bar closes."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.exchange.fixtures import async_client
from tests.kit import lease_expired, until, wait_until
from tests.live_kit import (
    ARMED,
    FAST,
    NEVER,
    S,
    _rows,
    assert_fills_match_exchange,
    assert_one_exchange_order_per_client_id,
    feed_for,
    live_config,
    manual_exchange,
    stop_flat,
)
from workbench.engine import open_session
from workbench.execution.rules import stop_levels

pytestmark = pytest.mark.live_battery

SYMBOL = "BTC/USDT"


def protected_config():
    """Never trades by itself (the operator buys); a 2 % stop; protective orders where the market has them."""
    return live_config(params=NEVER, risk={"stop_loss": 0.02}, live={"protective": "auto", "poll_seconds": 0.05})


@pytest.fixture
def lx():
    with manual_exchange() as ex:
        yield ex


async def _start(lx, store, config):
    client = async_client(lx)
    s = open_session(config, store, exchange=client, arming=ARMED, resting_poll=0.05,
                     feed=feed_for(client, config, stale_bars=100_000), **FAST)
    s.start()
    await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
    return s, client


def _stops(lx, status="NEW"):
    return [o for o in lx.exchange_orders() if o["type"] == "STOP_LOSS_LIMIT" and o["status"] == status]


def _level(s, stop_loss):
    pos = s.portfolio.positions[SYMBOL]
    reason, stop, _ = stop_levels(pos.avg_price, pos.peak_price, stop_loss, None, None)
    assert reason == "stop_loss"
    return float(s.broker.client.exchange.price_to_precision(SYMBOL, stop))


def test_a_stop_rests_on_the_exchange_moves_with_tighten_stops_and_the_sessions_exit_cancels_it(lx, store):
    async def go():
        s, client = await _start(lx, store, protected_config())
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: len(_stops(lx)) == 1)
            first = _stops(lx)[0]
            assert float(first["stopPrice"]) == pytest.approx(_level(s, 0.02))
            assert float(first["origQty"]) == pytest.approx(0.05)
            assert float(first["price"]) < float(first["stopPrice"])  # a sell limit below its trigger
            assert lx.balances()["BTC"] == pytest.approx(0.05)  # locked, not sold
            s.tighten_stops(0.01)  # 2 % -> 1 %
            await until(lambda: _stops(lx) and _stops(lx)[0]["orderId"] != first["orderId"]
                        and not s.broker.inflight)  # placed and recorded
            assert float(_stops(lx)[0]["stopPrice"]) == pytest.approx(_level(s, 0.01))
            assert [o["orderId"] for o in _stops(lx, "CANCELED")] == [first["orderId"]]
            lx.advance(1)
            await asyncio.sleep(0.3)  # bars and protector rounds: nothing moves without a reason
            assert len(_stops(lx)) == 1 and len(_stops(lx, "CANCELED")) == 1
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED
    assert _stops(lx) == [] and len(_stops(lx, "CANCELED")) == 2  # the exit canceled the stop first
    sells = [o for o in lx.exchange_orders() if o["side"] == "SELL" and o["status"] == "FILLED"]
    assert len(sells) == 1 and sells[0]["type"] == "MARKET"  # then sold once
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-12)
    orders = store.orders(s.id).set_index("client_id")
    assert orders.loc[["protect:BTC/USDT:1", "protect:BTC/USDT:2"], "status"].tolist() == ["canceled", "canceled"]
    assert set(store.events(s.id)["kind"]) >= {"protective_placed", "stops_tightened"}
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)


def test_a_trailing_peak_moves_the_stop_on_the_exchange(lx, store):
    config = live_config(params=NEVER, risk={"stop_loss": 0.02, "trailing_stop": 0.03},
                         live={"protective": "exchange", "poll_seconds": 0.05})

    async def go():
        s, client = await _start(lx, store, config)
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: len(_stops(lx)) == 1)
            (first,) = _stops(lx)
            p, i, rows = lx.price(SYMBOL), lx.book.index, _rows(lx)
            rows[i, 1] = p * 1.05  # the forming bar trades up to +5 %
            rows[i + 1, :4] = (p * 1.04, p * 1.041, p * 1.039, p * 1.04)  # and the next one opens above the stop
            lx.advance(1)
            await until(lambda: _stops(lx) and _stops(lx)[0]["orderId"] != first["orderId"]
                        and not s.broker.inflight)  # placed and recorded
            (moved,) = _stops(lx)
            peak = s.portfolio.positions[SYMBOL].peak_price
            assert peak == pytest.approx(p * 1.05)
            reason, level, _ = stop_levels(s.portfolio.positions[SYMBOL].avg_price, peak, 0.02, None, 0.03)
            assert reason == "trailing_stop"
            assert float(moved["stopPrice"]) == pytest.approx(float(s.broker.client.exchange.price_to_precision(
                SYMBOL, level)))
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED
    orders = store.orders(s.id).set_index("client_id")
    assert orders.loc["protect:BTC/USDT:2", "reason"] == "trailing_stop"
    assert_fills_match_exchange(lx, store, s.id)


RUNNER = """
import asyncio, sys
from tests.exchange.fixtures import async_client
from tests.kit import until
from tests.live_kit import ARMED, FAST, feed_for
from tests.test_live_protect import protected_config
from workbench.engine import open_session
from workbench.store import Store

store_url, exchange_url = sys.argv[1], sys.argv[2]

async def main():
    client = async_client(exchange_url)
    config = protected_config()
    s = open_session(config, Store(store_url), exchange=client, arming=ARMED, lease_seconds=0.5, resting_poll=0.05,
                     feed=feed_for(client, config, stale_bars=100_000), **FAST)
    s.start()
    await until(lambda: s.bars_seen >= 1, timeout=30)
    s.place_order("BTC/USDT", "buy", 0.05)
    await until(lambda: s.broker.protective("BTC/USDT"), timeout=30)
    print(s.id, flush=True)
    await asyncio.sleep(60)  # killed long before

asyncio.run(main())
"""


def test_a_stop_filled_on_the_exchange_while_the_runner_was_dead_is_booked_as_the_exit_once_on_resume(
        store_url, store):
    with manual_exchange() as lx:
        root = str(Path(__file__).parents[1])
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, store_url, lx.url], stdout=subprocess.PIPE,
                                text=True, cwd=root)
        try:
            sid = proc.stdout.readline().strip() if proc.stdout else ""
            assert sid, "the runner printed no session id"
        finally:
            proc.kill()  # SIGKILL: nothing of the runner's shutdown runs
            proc.wait()
        (stop,) = _stops(lx)
        lx.trade(SYMBOL, float(stop["stopPrice"]) * 0.999)  # no runner: the price falls through the stop
        (filled,) = _stops(lx, "FILLED")
        assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-12)
        wait_until(lambda: lease_expired(store, sid), timeout=5, message="the killed runner's lease expired")
        config = protected_config()

        async def go():
            client = async_client(lx)
            try:
                r = open_session(config, store, resume=sid, exchange=client, arming=ARMED, resting_poll=0.05,
                                 feed=feed_for(client, config, stale_bars=100_000), **FAST)
                r._start_paused = True  # no new entries: only the reconciliation and the protector act
                r.start()
                await until(lambda: r.state is S.PAUSED)  # reconciled
                assert r.portfolio.quantity(SYMBOL) == pytest.approx(0.0, abs=1e-12)
                lx.advance(1)
                await asyncio.sleep(0.3)  # a bar and protector rounds: nothing placed or sold again
                return r, await stop_flat(lx, r)
            finally:
                await client.close()

        r, final = asyncio.run(go())
        assert final is S.STOPPED
        fills = store.fills(sid)
        assert fills["side"].tolist() == ["buy", "sell"]
        assert fills["client_id"].iloc[1] == "protect:BTC/USDT:1"
        assert fills["price"].iloc[1] == pytest.approx(float(filled["stopPrice"]) * 0.999)  # where it traded through
        (trade,) = r.portfolio.trade_log()
        assert trade["exit_reason"] == "stop_loss"
        assert store.orders(sid).set_index("client_id").loc["protect:BTC/USDT:1", "status"] == "filled"
        ev = store.events(sid)
        assert ev[ev["kind"] == "reconcile"]["message"].str.contains("protect:BTC/USDT:1 is filled").any()
        assert [o["side"] for o in lx.exchange_orders()] == ["BUY", "SELL"]  # one sell: the stop
        assert_fills_match_exchange(lx, store, sid)


def test_on_a_market_without_stop_orders_the_monitor_sells_intrabar_when_the_ticker_crosses_the_stop(lx, store):
    lx.without_stops(SYMBOL)

    async def go():
        s, client = await _start(lx, store, protected_config())
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: s.broker._watched.get(SYMBOL))
            level = _level(s, 0.02)
            assert [o["type"] for o in lx.exchange_orders()] == ["MARKET"]  # nothing rests on the exchange
            bars, bar_open = s.bars_seen, lx.now()
            lx.trade(SYMBOL, level * 1.001)  # near, not through: nothing happens
            await asyncio.sleep(0.3)
            assert s.portfolio.quantity(SYMBOL) == pytest.approx(0.05)
            lx.trade(SYMBOL, level * 0.999)  # through the stop inside the forming bar
            await until(lambda: s.portfolio.quantity(SYMBOL) == 0 and not s.broker.inflight, timeout=5)
            assert s.bars_seen == bars and lx.now() == bar_open  # no bar closed meanwhile
            return s, level, await stop_flat(lx, s)
        finally:
            await client.close()

    s, level, final = asyncio.run(go())
    assert final is S.STOPPED
    (trade,) = s.portfolio.trade_log()
    assert trade["exit_reason"] == "stop_loss"
    sells = [o for o in lx.exchange_orders() if o["side"] == "SELL"]
    assert len(sells) == 1 and sells[0]["status"] == "FILLED"
    fills = store.fills(s.id)
    assert fills["price"].iloc[1] == pytest.approx(level * 0.999)  # at the intrabar price, not the bar's
    assert "protective_fired" in set(store.events(s.id)["kind"])
    assert_fills_match_exchange(lx, store, s.id)


def test_with_both_levels_the_exchange_holds_the_stop_and_the_monitor_takes_profit_intrabar(lx, store):
    config = live_config(params=NEVER, risk={"stop_loss": 0.02, "take_profit": 0.01},
                         live={"protective": "auto", "poll_seconds": 0.05})

    async def go():
        s, client = await _start(lx, store, config)
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: len(_stops(lx)) == 1 and s.broker._watched.get(SYMBOL))
            (watched,) = s.broker._watched[SYMBOL]
            assert watched.reason == "take_profit" and watched.above
            lx.trade(SYMBOL, watched.price * 1.001)  # up through the take profit, inside the bar
            await until(lambda: s.portfolio.quantity(SYMBOL) == 0 and not s.broker.inflight, timeout=5)
            return s, watched.price, await stop_flat(lx, s)
        finally:
            await client.close()

    s, level, final = asyncio.run(go())
    assert final is S.STOPPED
    (trade,) = s.portfolio.trade_log()
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == pytest.approx(level * 1.001)
    assert len(_stops(lx, "CANCELED")) == 1  # the stop was canceled before the sell (its coins were locked)
    assert [o["type"] for o in lx.exchange_orders() if o["side"] == "SELL"] == ["STOP_LOSS_LIMIT", "MARKET"]
    assert_fills_match_exchange(lx, store, s.id)


def test_a_handed_back_stop_is_adopted_by_the_next_runner_not_placed_again(lx, store):
    config = protected_config()

    async def go():
        s, client = await _start(lx, store, config)
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: len(_stops(lx)) == 1 and not s.broker.inflight)
            s.hand_back("host shut down: handed back, resumable")
            assert await asyncio.wait_for(s.wait(), 10) is S.ORPHANED
            assert len(_stops(lx)) == 1  # still protecting the position while no runner runs
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000), **FAST)
            r.start()
            await until(lambda: r.state is S.RUNNING)
            await until(lambda: r.broker.protective(SYMBOL))
            await asyncio.sleep(0.5)  # protector rounds: it reads the adopted stop's level and keeps it
            (adopted,) = r.broker.protective(SYMBOL)
            assert adopted.client_id == "protect:BTC/USDT:1"
            assert adopted.stop_price == pytest.approx(_level(r, 0.02))
            return r, await stop_flat(lx, r)
        finally:
            await client.close()

    r, final = asyncio.run(go())
    assert final is S.STOPPED
    assert len([o for o in lx.exchange_orders() if o["type"] == "STOP_LOSS_LIMIT"]) == 1  # never placed twice
    assert_one_exchange_order_per_client_id(lx)
    assert_fills_match_exchange(lx, store, r.id)


def test_operator_sells_take_coins_from_the_stop_which_then_protects_what_is_left(lx, store):
    async def go():
        s, client = await _start(lx, store, protected_config())
        try:
            s.place_order(SYMBOL, "buy", 0.05)
            await until(lambda: len(_stops(lx)) == 1 and not s.broker.inflight)
            s.place_order(SYMBOL, "sell", 0.02)  # the stop locks all 0.05: it makes room, then protects 0.03
            await until(lambda: s.portfolio.quantity(SYMBOL) == pytest.approx(0.03) and len(_stops(lx)) == 1
                        and float(_stops(lx)[0]["origQty"]) == pytest.approx(0.03))
            s.place_order(SYMBOL, "sell", 0.01, type="limit", limit_price=round(lx.price(SYMBOL) * 2, 2))
            await until(lambda: len(_stops(lx)) == 1 and float(_stops(lx)[0]["origQty"]) == pytest.approx(0.02)
                        and not s.broker.inflight)  # the resting limit offers 0.01: the stop covers the rest
            assert lx.balances()["BTC"] == pytest.approx(0.03)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED
    assert _stops(lx) == [] and lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-12)
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)
