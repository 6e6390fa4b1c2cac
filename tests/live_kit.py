"""Shared by the live-session tests: the armed live config, the loopback exchange fixture, a fast
live feed, session start-up and the checks that every exchange fill is in the store exactly once."""
from __future__ import annotations

import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from workbench.config import make_config
from workbench.domain import SessionState
from workbench.engine import open_session
from workbench.engine.live import LiveSession
from workbench.engine.live_feed import LiveFeed
from workbench.retry import RetryPolicy

S = SessionState
ARMED = {"allow_live": True, "confirmation": "binance:main"}
BAR = 0.05  # real seconds per 1-minute bar of the loopback's clock
ALWAYS_IN = {"window": 1, "entry_threshold": -1.0, "exit_threshold": -1.0}  # enter at once, exit only on stops
FAST = dict(order_policy=RetryPolicy(retries=None, base=0.02, cap=0.1),
            broker_policy=RetryPolicy(retries=20, base=0.02, cap=0.1),
            poll_interval=0.05)


def live_config(**kw):
    base = dict(kind="live", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"], initial_balance=10_000.0,
                data={"source": "ccxt", "exchange": "binance"}, risk={"stop_loss": 0.0015, "trailing_stop": 0.001})
    return make_config(**{**base, **kw})


ORDER = "/api/v3/order"  # the exchange's order endpoint (fault injection targets it)


def live_exchange() -> LoopbackExchange:
    """The loopback exchange the live tests run against (enter it as a context manager)."""
    return LoopbackExchange(symbols=("BTC/USDT", "ETH/USDT"), days=30, clock="2024-01-10", bar_seconds=BAR)


def feed_for(client, config, **kw):
    return LiveFeed(client, config.symbols, config.data.timeframe, poll_seconds=0.01, bar_seconds=BAR,
                    stale_bars=kw.pop("stale_bars", 20), **kw)


def assert_fills_match_exchange(lx, store, sid):
    """Every exchange fill of the session appears once in the store, and nothing else does."""
    fills = store.fills(sid)
    trades = lx.exchange_trades()
    assert sorted(fills["fill_id"]) == sorted(f"binance:{t['id']}" for t in trades)
    assert fills["fill_id"].is_unique
    by_id = {f"binance:{t['id']}": t for t in trades}
    for r in fills.itertuples():
        t = by_id[r.fill_id]
        assert r.quantity == pytest.approx(float(t["qty"])) and r.price == pytest.approx(float(t["price"]))


def assert_one_exchange_order_per_client_id(lx):
    ids = [o["clientOrderId"] for o in lx.exchange_orders()]
    assert len(ids) == len(set(ids))


async def _start(lx, store, config=None, client_kw=None, **kw):
    config = config or live_config()
    client = async_client(lx, **(client_kw or {}))
    s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config), **{**FAST, **kw})
    assert isinstance(s, LiveSession)
    return s.start(), client
