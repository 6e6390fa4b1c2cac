"""Time sync with real ccxt against the loopback exchange, whose clock can run ahead of or behind this
host's and which refuses signed requests outside recvWindow with -1021 like Binance. Skews: this host
3 s ahead of the exchange (beyond Binance's 1 s tolerance for requests from the future) and 12 s
behind (beyond ccxt's 10 s recvWindow); with the offset measured at start, appearing mid-run (a
``clock_skew`` event, a resync, the call goes through) and with the resync failing for a while
(entries refused meanwhile, the exit goes through once the resync succeeds)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import ccxt
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import until
from tests.live_kit import ORDER, S, assert_fills_match_exchange, manual_exchange, start_quiet, stop_flat
from workbench.domain import Order, OrderStatus, Side
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.engine.commands import CommandRejected
from workbench.execution import Bar
from workbench.retry import RetryPolicy

pytestmark = pytest.mark.live_battery

SKEWS = {"host 3 s ahead": 3.0, "host 12 s behind": -12.0}  # this host's clock minus the exchange's
CCXT_WINDOW = {"options": {"recvWindow": 10_000}}  # ccxt's default for binance
ACCOUNT = "/api/v3/account"


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as ex:
        yield ex


def _broker(lx, events, **kw):
    return CcxtBroker(async_client(lx, **CCXT_WINDOW), "abc123def456",
                      policy=kw.pop("policy", RetryPolicy(retries=3, base=0.01, cap=0.05)),
                      on_event=lambda k, m, d: events.append(k), **kw)


@pytest.mark.parametrize("skew", list(SKEWS))
def test_the_loopback_refuses_a_skewed_clock_with_1021_like_binance(lx, skew):
    lx.set_clock_offset(-SKEWS[skew])

    async def go():
        c = async_client(lx, **CCXT_WINDOW)
        try:
            with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                await c.fetch_balance()
            t0 = c.milliseconds()
            server = await c.fetch_time() + SKEWS[skew] * 1000  # /api/v3/time answers with the offset clock
            assert t0 - 5 <= server <= c.milliseconds() + 5
        finally:
            await c.close()

    asyncio.run(go())


@pytest.mark.parametrize("skew", list(SKEWS))
def test_an_offset_measured_at_start_is_never_refused(lx, skew):
    lx.set_clock_offset(-SKEWS[skew])
    events: list[str] = []

    async def go():
        b = _broker(lx, events)
        try:
            offset = await b.sync_time()
            await b.balances()
            return offset, b.clock_error_ms
        finally:
            await b.close()

    offset, err = asyncio.run(go())
    assert offset == pytest.approx(-SKEWS[skew] * 1000, abs=err + 50)
    assert [r.status for r in lx.requests(ACCOUNT)] == [200] and "clock_skew" not in events


@pytest.mark.parametrize("skew", list(SKEWS))
def test_a_clock_jump_mid_run_is_a_clock_skew_event_then_a_resync(lx, skew):
    events: list[str] = []

    async def go():
        b = _broker(lx, events)
        try:
            await b.sync_time()
            await b.balances()
            lx.set_clock_offset(-SKEWS[skew])  # the clocks drift apart
            await b.balances()  # refused once (-1021), resynced, sent again
            return b.clock_ok
        finally:
            await b.close()

    assert asyncio.run(go()) is True
    assert [r.status for r in lx.requests(ACCOUNT)] == [200, 400, 200]
    assert events == ["clock_skew", "clock_resynced"]


@pytest.mark.parametrize("skew", list(SKEWS))
def test_without_a_resync_the_call_fails_and_entries_stay_paused(lx, skew):
    events: list[str] = []

    async def go():
        b = _broker(lx, events)
        try:
            await b.sync_time()
            lx.set_clock_offset(-SKEWS[skew])
            lx.fail_next(10, 503, path="/api/v3/time")  # the exchange's time endpoint is down
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await b.balances()
            paused = b.clock_ok
            lx.clear_faults()
            await b.balances()  # refused again, and this time the resync works
            return paused, b.clock_ok
        finally:
            await b.close()

    assert asyncio.run(go()) == (False, True)
    assert [r.status for r in lx.requests(ACCOUNT)] == [400, 400, 200]
    assert events.count("clock_skew") == 2 and events[-1] == "clock_resynced"


@pytest.fixture
def lx_manual():
    with manual_exchange() as ex:
        yield ex


@pytest.mark.parametrize("resync", ["resync at once", "resync fails for a while"])
@pytest.mark.parametrize("skew", list(SKEWS))
def test_live_session_pauses_entries_on_1021_and_its_exit_goes_through_after_the_resync(lx_manual, store, skew,
                                                                                      resync):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store)
        try:
            s.place_order("BTC/USDT", "buy", 0.05)
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0 and not s.broker.inflight)
            assert "clock_synced" in set(store.events(s.id)["kind"])  # measured at start
            lx.set_clock_offset(-SKEWS[skew])
            down = resync != "resync at once"
            if down:
                lx.fail_next(100_000, 503, path="/api/v3/time")
            s.place_order("BTC/USDT", "sell", 0.05)  # an exit: refused (-1021), then sent after the resync
            if down:
                await until(lambda: not s.broker.client.clock_ok)
                with pytest.raises(CommandRejected, match="entry paused"):
                    s.place_order("BTC/USDT", "buy", 0.01)
                bar = Bar(datetime.now(timezone.utc), 1.0, 1.0, 1.0, 1.0, 1.0)
                entry = s.broker.submit(Order("BTC/USDT:entry:1", "BTC/USDT", Side.BUY, 0.01, reason="entry"), bar)
                assert entry.status is OrderStatus.REJECTED and "BTC/USDT:entry:1" not in s.broker.inflight
                await asyncio.sleep(0.2)
                assert s.portfolio.quantity("BTC/USDT") == pytest.approx(0.05)  # the exit waits for the resync
                lx.clear_faults()
            await until(lambda: s.portfolio.quantity("BTC/USDT") == 0.0 and not s.broker.inflight)
            assert s.broker.client.clock_ok
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED
    kinds = list(store.events(s.id)["kind"])
    assert kinds.index("clock_skew") < kinds.index("clock_resynced")
    assert ("entry_paused" in kinds) is (resync != "resync at once")
    posts = [r.status for r in lx.requests(ORDER) if r.method == "POST"]
    assert posts.count(400) >= 1 and posts.count(200) == 2  # the -1021 refusal, then the buy and the sell
    assert_fills_match_exchange(lx, store, s.id)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)


def test_the_clock_is_resynced_periodically_so_a_drift_is_never_refused(lx_manual, store):
    lx = lx_manual

    async def go():
        s, client = await start_quiet(lx, store, time_sync_every=0.1, reconcile_every=1000.0)
        try:
            await asyncio.sleep(0.3)  # the first reconciliation round is done: no signed request until the order
            lx.set_clock_offset(5.0)  # the exchange's clock drifts 5 s ahead
            await until(lambda: abs((s.broker.client.clock_offset_ms or 0.0) - 5000) < 500)
            s.place_order("BTC/USDT", "buy", 0.01)
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0 and not s.broker.inflight)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    kinds = list(store.events(s.id)["kind"])
    assert final is S.STOPPED and "clock_skew" not in kinds and kinds.count("clock_synced") >= 2
    assert 400 not in [r.status for r in lx.requests(ORDER)]
