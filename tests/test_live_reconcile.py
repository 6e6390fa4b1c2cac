"""Continuous two-way reconciliation of a running live session with the (loopback) exchange account:
a manual fill made directly on the account shows within one reconcile interval as a mismatch event in
both directions (after a manual buy the exchange holds more of the coin and the session thinks it holds
more cash; after a manual sell, the session thinks it holds more of the coin), an open order of the
session unknown to it is reported, and a difference above ``mismatch_trip`` trips the circuit breaker."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.kit import until
from tests.live_kit import S, manual_exchange, start_quiet, stop_flat
from workbench.engine.risk import TradingState

pytestmark = pytest.mark.live_battery

EVERY = 0.2  # reconcile interval (s)


@pytest.fixture
def lx():
    with manual_exchange() as ex:
        yield ex


def _mismatches(store, sid):
    ev = store.events(sid)
    ev = ev[ev["kind"].isin(["balance_mismatch", "order_mismatch"])]
    return [(r.kind, r.data["direction"], r.data.get("asset")) for r in ev.itertuples()]


async def _within_one_interval(store, sid, want, since):
    await until(lambda: want in _mismatches(store, sid), timeout=5)
    return time.monotonic() - since


def test_a_manual_fill_on_the_account_is_a_mismatch_both_ways_within_one_interval(lx, store):
    async def go():
        s, client = await start_quiet(lx, store, reconcile_every=EVERY, mismatch_trip=None)
        try:
            s.place_order("BTC/USDT", "buy", 0.05)
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0 and not s.broker.inflight)
            await asyncio.sleep(3 * EVERY)  # clean rounds: the session's own fill is no difference
            assert _mismatches(store, s.id) == []
            t0 = time.monotonic()
            lx.manual_order("BTC/USDT", "buy", 0.02)  # someone buys on the same account
            took = await _within_one_interval(store, s.id, ("balance_mismatch", "exchange_more", "BTC"), t0)
            await until(lambda: ("balance_mismatch", "session_more", "USDT") in _mismatches(store, s.id))
            t1 = time.monotonic()
            lx.manual_order("BTC/USDT", "sell", 0.05)  # and sells more than they bought
            took_back = await _within_one_interval(store, s.id, ("balance_mismatch", "session_more", "BTC"), t1)
            assert s.risk.state is TradingState.RUNNING  # no threshold: events only
            lx.manual_order("BTC/USDT", "buy", 0.03)  # put the coins back: the session can sell its own
            await until(lambda: "balance_mismatch_cleared" in set(store.events(s.id)["kind"]))
            return s, await stop_flat(lx, s), took, took_back
        finally:
            await client.close()

    s, final, took, took_back = asyncio.run(go())
    assert final is S.STOPPED
    assert max(took, took_back) < EVERY + 1.0  # one interval plus a round's requests on a loaded machine
    ev = store.events(s.id)
    btc = ev[(ev["kind"] == "balance_mismatch") & ev["message"].str.startswith("BTC")]
    first = btc.iloc[0]
    assert first["data"]["difference"] == pytest.approx(0.02) and first["data"]["session"] == pytest.approx(0.05)
    assert "the exchange holds 0.02 more" in first["message"]
    assert "the session thinks it holds 0.03 more" in btc.iloc[1]["message"]
    assert "balance_mismatch_cleared" in set(ev["kind"])  # the coins put back: they agree again


def test_a_difference_above_the_threshold_trips_the_circuit_breaker(lx, store):
    async def go():
        s, client = await start_quiet(lx, store, reconcile_every=EVERY, mismatch_trip=0.01)
        try:
            await asyncio.sleep(2 * EVERY)
            lx.manual_order("BTC/USDT", "buy", 0.001)  # ~40 USDT: below 1 % of the 10 000 balance
            await until(lambda: len(_mismatches(store, s.id)) >= 2)
            assert s.risk.state is TradingState.RUNNING
            lx.manual_order("BTC/USDT", "buy", 0.01)  # ~400 USDT more: above it
            await until(lambda: s.risk.state is TradingState.HALTED)
            lx.manual_order("BTC/USDT", "sell", 0.011)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    ev = store.events(s.id)
    tripped = ev[ev["kind"] == "circuit_breaker_tripped"]
    assert len(tripped) == 1 and "reconcile" in tripped.iloc[0]["message"]
    assert (ev[ev["kind"] == "control"]["message"].str.contains("trip_breaker applied")).any()


def test_an_open_order_of_the_session_unknown_to_it_is_reported(lx, store):
    async def go():
        s, client = await start_quiet(lx, store, reconcile_every=EVERY, mismatch_trip=None)
        try:
            await asyncio.sleep(2 * EVERY)
            stray = s.broker.client.prefix + "0123456789abcdef"  # e.g. left by a runner whose store was lost
            await client.create_order("BTC/USDT", "limit", "buy", 0.01, round(lx.price("BTC/USDT") * 0.5, 2),
                                      {"clientOrderId": stray})
            await until(lambda: ("order_mismatch", "exchange_more", None) in _mismatches(store, s.id))
            await client.cancel_order(None, "BTC/USDT", {"clientOrderId": stray})
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    ev = store.events(s.id)
    assert ev[ev["kind"] == "order_mismatch"]["message"].str.contains("not in the session").any()
