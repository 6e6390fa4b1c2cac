"""Shared by the live-session tests: the armed live config, the loopback exchange fixture, a fast
live feed, session start-up, a loopback whose clock the test moves (:func:`manual_exchange`) with a
session that never trades by itself (:func:`start_quiet`) and prices to drive through a limit, and the
checks that every exchange fill is in the store exactly once."""
from __future__ import annotations

import asyncio

import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import until
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


NEVER = {"window": 1, "entry_threshold": 10.0, "exit_threshold": -1.0}  # the strategy never trades


def live_config(**kw):
    """The live test config; protective orders off (closed-bar stops, as these tests were written) unless
    ``live={"protective": ...}`` says otherwise (tests/test_live_protect.py)."""
    kw["live"] = {"protective": "off", **kw.get("live", {})}
    base = dict(kind="live", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"], initial_balance=10_000.0,
                data={"source": "ccxt", "exchange": "binance"}, risk={"stop_loss": 0.0015, "trailing_stop": 0.001})
    return make_config(**{**base, **kw})


ORDER = "/api/v3/order"  # the exchange's order endpoint (fault injection targets it)


def live_exchange() -> LoopbackExchange:
    """The loopback exchange the live tests run against (enter it as a context manager)."""
    return LoopbackExchange(symbols=("BTC/USDT", "ETH/USDT"), days=30, clock="2024-01-10", bar_seconds=BAR)


def manual_exchange() -> LoopbackExchange:
    """A loopback exchange whose clock moves only when the test calls ``advance`` (enter it as a context
    manager)."""
    return LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10")


def quiet_config():
    """A live config whose strategy never trades and with no stops: only the operator's orders."""
    return live_config(params=NEVER, risk={})


def _rows(lx, symbol="BTC/USDT"):
    rows = lx.book.prices[lx._market_id(symbol)][1]
    rows.flags.writeable = True
    return rows


def below_next_lows(lx, bars, factor=0.995, symbol="BTC/USDT"):
    """A limit price below the lows of the forming bar and the ``bars - 1`` after it (and below the price)."""
    i = lx.book.index
    return round(min(float(_rows(lx, symbol)[i:i + bars, 2].min()), lx.price(symbol)) * factor, 2)


def trade_through(lx, limit, symbol="BTC/USDT"):
    """Move the loopback's price through ``limit``: the forming bar's low goes below it, then it completes."""
    _rows(lx, symbol)[lx.book.index, 2] = limit * 0.99
    lx.advance(1)


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


async def start_quiet(lx, store, **kw):
    """A running :func:`quiet_config` session on ``lx`` (a manual clock) that has seen a bar; returns it
    and its client (close it after use)."""
    config = quiet_config()
    client = async_client(lx)
    s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config, stale_bars=100_000),
                     resting_poll=0.05, **{**FAST, **kw})
    s.start()
    await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
    return s, client


async def stop_flat(lx, s):
    """Stop ``s`` (on a manual clock): wait until it is flat, then complete a bar so that its loop ends."""
    s.stop()
    await until(lambda: not s._open_symbols() and not s.broker.inflight)
    waiting = asyncio.ensure_future(s.wait())
    for _ in range(20):  # the loop ends at the next bar once flat; a bar per try (under load the stop can
        lx.advance(1)  # land after the bar it was meant for, which left the run waiting for one more)
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        if done:
            break
    return await asyncio.wait_for(waiting, 10)
