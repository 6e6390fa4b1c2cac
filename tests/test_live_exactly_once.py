"""Exactly-once orders under Binance's real client-id rule (a repeated newClientOrderId is a NEW order
once the earlier one is filled), with real ccxt over real HTTP to the loopback exchange: a late original
that lands after the client timed out and a lost response on market orders give one exchange order per
client id and book its fill once; a naive resend double-fills against the same loopback (so these tests
would catch it); and a resume does not call an order "never reached" while it may still land."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.exchange.fixtures import TEST_RECV_WINDOW_MS, async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import until
from tests.live_kit import ARMED, FAST, ORDER, S, assert_fills_match_exchange, feed_for, live_config, live_exchange
from workbench.domain import Order, Side
from workbench.engine import open_session
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.engine.trader import warm_up_strategies
from workbench.retry import RetryPolicy

pytestmark = pytest.mark.live_battery

POLICY = RetryPolicy(retries=8, base=0.02, cap=0.2)
SID = "abc123def456"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as ex:
        yield ex


class NaiveBroker(CcxtBroker):
    """What a broker that trusts the old, stricter loopback does: it resends as soon as the order is not
    found, without waiting for recvWindow (``lookups=False``: without even looking)."""

    def __init__(self, *a: Any, lookups: bool = True, **kw: Any):
        super().__init__(*a, **kw)
        self.lookups = lookups

    async def lookup(self, order: Order, policy: RetryPolicy | None = None) -> dict[str, Any] | None:
        return await super().lookup(order, policy) if self.lookups else None

    async def _look_after_landing(self, order: Order, stamp: int, error: BaseException,
                                  policy: RetryPolicy | None = None) -> dict[str, Any] | None:
        return None


FAULTS = {
    # the POST is processed after the client's 400 ms timeout, still inside recvWindow: the original lands late
    "late original after the client timed out": (lambda lx: lx.delay_next(1, 0.8, path=ORDER, method="POST"), True),
    "lost response": (lambda lx: lx.lose_response_next(1), False),
}


def _submit(lx, broker_cls, fault, **kw):
    events: list[tuple[str, str]] = []
    FAULTS[fault][0](lx)

    async def go():
        c = async_client(lx, timeout=400)
        try:
            b = broker_cls(c, SID, policy=POLICY, on_event=lambda k, m, d: events.append((k, m)), **kw)
            order = Order("BTC/USDT:entry:1", "BTC/USDT", Side.BUY, 0.01)
            res = await b.submit(order)
            await asyncio.sleep(1.0)  # a late original has landed by now (or was refused: -1021)
            return res, await b.fills(order, res)
        finally:
            await c.close()

    res, fills = asyncio.run(go())
    return res, fills, events


@pytest.mark.parametrize("fault", list(FAULTS))
def test_market_order_under_a_late_original_or_lost_response_is_one_exchange_order_filled_once(lx, fault):
    res, fills, events = _submit(lx, CcxtBroker, fault)
    orders, trades = lx.exchange_orders(), lx.exchange_trades()
    assert len(orders) == 1 and orders[0]["status"] == "FILLED" and res["id"] == str(orders[0]["orderId"])
    assert len(trades) == 1 and [f.fill_id for f in fills] == [f"binance:{trades[0]['id']}"]
    assert lx.balances()["BTC"] == pytest.approx(0.01)
    posts = [r for r in lx.requests(ORDER) if r.method == "POST"]
    assert len(posts) == 1  # never resent
    kinds = [k for k, _ in events]
    assert "order_recovered" in kinds
    if FAULTS[fault][1]:  # not found at first: it waited out recvWindow before looking again
        assert "order_unknown" in kinds and "recvWindow" in dict(events)["order_unknown"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_naive_resend_double_fills_on_this_loopback(lx, fault):
    """The loopback follows Binance's rule, so the tests above catch a broker that resends too early."""
    _submit(lx, NaiveBroker, fault, lookups=FAULTS[fault][1])
    ids = [o["clientOrderId"] for o in lx.exchange_orders()]
    assert len(ids) == 2 and len(set(ids)) == 1  # the same client id, two exchange orders
    assert len(lx.exchange_trades()) == 2 and lx.balances()["BTC"] == pytest.approx(0.02)


def test_landing_deadline_is_recv_window_plus_the_measured_offset(lx):
    async def go():
        c = async_client(lx)
        try:
            b = CcxtBroker(c, SID)
            unmeasured = b.landing_deadline(0)
            lx.set_clock_offset(-2.0)  # the exchange runs 2 s behind this host
            await b.sync_time()
            return unmeasured, b.landing_deadline(0), b.clock_offset_ms, b.clock_error_ms, c.options
        finally:
            await c.close()

    unmeasured, measured, offset, err, options = asyncio.run(go())
    assert unmeasured == TEST_RECV_WINDOW_MS + 1000 + 250  # before any sync: Binance's 1 s ahead tolerance
    assert err < 500  # half the round trip of the measurement
    assert offset == pytest.approx(-2000, abs=err + 20) and options["timeDifference"] == round(-offset)
    assert measured == pytest.approx(TEST_RECV_WINDOW_MS + 2000 + 250 + err, abs=err + 20)  # + the host's lead


def test_resume_does_not_call_an_order_never_reached_while_it_may_still_land(store):
    """A runner sends a market buy, the POST takes 1 s, the runner dies meanwhile and the next one
    resumes at once: the order is not on the exchange yet, so it stays in flight until recvWindow has
    passed, then is found FILLED and its fill booked once; a written-ahead order never sent is marked
    canceled only then."""
    config = live_config(risk={})

    async def go():
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config), **FAST)
            s._restore(s.runner_state())
            late = Order("BTC/USDT:entry:1704844800", "BTC/USDT", Side.BUY, 0.05, reason="entry")
            ghost = Order("BTC/USDT:entry:1704844860", "BTC/USDT", Side.BUY, 0.05, reason="entry")
            store.upsert_order(s.id, late)
            store.upsert_order(s.id, ghost)  # written ahead, never sent
            store.save_runner_state(s.id, s.runner_state())
            lx.delay_next(1, 1.0, path=ORDER, method="POST")
            dying = CcxtBroker(async_client(lx), s.id)
            await dying.load_markets()
            sending = asyncio.get_running_loop().create_task(dying.submit(late))
            await asyncio.sleep(0.2)  # the POST is on its way; the runner dies
            sending.cancel()
            await dying.close()
            store.set_state(s.id, S.ORPHANED, message="runner died")
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED,
                             feed=feed_for(client, config, max_bars=1_000_000), **FAST)
            r._start_paused = True  # no new entries: only reconciliation acts
            r.start()
            await until(lambda: r.state is S.PAUSED)  # reconciled
            assert "BTC/USDT:entry:1704844800" in r.broker.inflight  # not "never reached": it may still land
            assert r.broker.busy("BTC/USDT")
            await until(lambda: not r.broker.inflight, timeout=10)
            r.stop()
            await asyncio.wait_for(r.wait(), 10)
        finally:
            await client.close()
        return r

    with live_exchange() as lx:
        r = asyncio.run(go())
    rec = store.events(r.id)
    msgs = rec[rec["kind"] == "reconcile"]["message"].tolist()
    assert any("BTC/USDT:entry:1704844800 is filled on the exchange; 1 fills applied (it landed late)" in m
               for m in msgs)
    assert not any("1704844800 never reached" in m for m in msgs)
    assert any("1704844860 never reached the exchange" in m for m in msgs)
    orders = store.orders(r.id).set_index("client_id")
    assert orders.loc["BTC/USDT:entry:1704844800", "status"] == "filled"
    assert orders.loc["BTC/USDT:entry:1704844860", "status"] == "canceled"
    assert [o["side"] for o in lx.exchange_orders()] == ["BUY", "SELL"]  # the late buy once; the stop's sell
    assert_fills_match_exchange(lx, store, r.id)


RUNNER = """
import asyncio, sys
from tests.exchange.fixtures import async_client
from tests.kit import until
from tests.live_kit import ARMED, FAST, feed_for, quiet_config
from workbench.engine import open_session
from workbench.store import Store

store_url, exchange_url, window = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    client = async_client(exchange_url, options={"recvWindow": window})
    config = quiet_config()
    s = open_session(config, Store(store_url), exchange=client, arming=ARMED, lease_seconds=0.5,
                     feed=feed_for(client, config, stale_bars=100_000), **FAST)
    s.start()
    await until(lambda: s.bars_seen >= 1)
    s.place_order("BTC/USDT", "buy", 0.05)
    print(s.id, flush=True)
    await asyncio.sleep(60)  # killed long before

asyncio.run(main())
"""
WINDOW = 5000  # Binance's default recvWindow: the 2 s delayed POST is still inside it when it lands


def test_sigkill_while_an_order_post_is_delayed_then_a_quick_resume_books_it_filled(store_url, store):
    """The runner's market buy takes 2 s to reach the matching engine; the runner is killed (SIGKILL) while
    it waits and a new runner resumes within 0.5 s: it must not call the order "never reached" (it lands
    after the resume's first lookup), and ends with it FILLED in the store, its fill booked once."""
    from tests.kit import lease_expired, wait_until
    from tests.live_kit import manual_exchange, quiet_config, stop_flat

    warm_up_strategies()  # the resuming runner's start is not spent compiling kernels

    with manual_exchange() as lx:
        lx.delay_next(1, 2.0, path=ORDER, method="POST")
        root = str(Path(__file__).parents[1])
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, store_url, lx.url, str(WINDOW)],
                                stdout=subprocess.PIPE, text=True, cwd=root)
        try:
            sid = proc.stdout.readline().strip() if proc.stdout else ""
            assert sid, "the runner printed no session id"
            wait_until(lambda: lx.pending_faults() == 0, timeout=10, message="the POST reaching the exchange")
            proc.kill()  # SIGKILL while the exchange holds the POST
            killed = time.monotonic()
        finally:
            proc.kill()
            proc.wait()
        wait_until(lambda: lease_expired(store, sid), timeout=5, message="the killed runner's lease expired")
        config = quiet_config()

        async def go():
            client = async_client(lx, options={"recvWindow": WINDOW})
            try:
                r = open_session(config, store, resume=sid, exchange=client, arming=ARMED,
                                 feed=feed_for(client, config, stale_bars=100_000), **FAST)
                r.start()
                resumed_after = time.monotonic() - killed
                await until(lambda: r.bars_seen >= 1)
                assert lx.exchange_orders() == []  # the POST is still held: the resume did not find the order
                await until(lambda: r.portfolio.quantity("BTC/USDT") > 0 and not r.broker.inflight, timeout=15)
                return r, resumed_after, await stop_flat(lx, r)
            finally:
                await client.close()

        r, resumed_after, final = asyncio.run(go())
        assert resumed_after < 1.5  # the lease's 0.5 s and the start; above all before the POST lands (2 s)
        assert final is S.STOPPED
        ev = store.events(sid)
        msgs = ev[ev["kind"] == "reconcile"]["message"].tolist()
        assert not any("never reached" in m for m in msgs)
        assert any("may still land" in m for m in msgs) and any("(it landed late)" in m for m in msgs)
        buys = store.orders(sid)
        assert buys[buys["side"] == "buy"]["status"].tolist() == ["filled"]
        assert [o["side"] for o in lx.exchange_orders()] == ["BUY", "SELL"]
        assert_fills_match_exchange(lx, store, sid)


def test_live_clients_sign_with_binances_default_recv_window_unless_configured():
    from workbench.engine.ccxt_broker import DEFAULT_RECV_WINDOW_MS, make_async_exchange

    async def go():
        clients = [make_async_exchange("binance"), make_async_exchange("binance", options={"recvWindow": 1500})]
        try:
            return [CcxtBroker(c).recv_window_ms for c in clients]
        finally:
            for c in clients:
                await c.close()

    assert asyncio.run(go()) == [DEFAULT_RECV_WINDOW_MS, 1500] and DEFAULT_RECV_WINDOW_MS == 5000
