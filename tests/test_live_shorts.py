"""A live session shorting on the loopback's USDⓈ-M perpetual through real ccxt over real HTTP: it sets its
leverage, opens a short by selling what it does not hold, books the funding the exchange pays it at 08:00,
dies without any cleanup, and the next runner adopts the open short (positions and wallet reconciled, the
funding booked once) and closes it reduce-only."""
from __future__ import annotations

import asyncio
import threading

import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import lease_expired, until, wait_until
from tests.live_kit import ARMED, FAST, feed_for, live_config, stop_flat
from workbench.domain import SessionState as S
from workbench.engine import open_session

pytestmark = pytest.mark.live_battery  # ~2-3 s (it was ~15 s while every run's end waited 10 s for the funding watcher)
PERP = "BTC/USDT:USDT"
SHORT_NOW = {"window": 1, "entry_threshold": 10.0, "exit_threshold": 10.0}  # short at once (ROC < 10), never exit


def perp_config():
    # a modelled funding rate too: the Trader must leave funding to the exchange's own payments (books_funding)
    return live_config(symbols=[PERP], direction="short", params=SHORT_NOW, risk={},
                       margin={"leverage": 2, "funding_rate": 0.001})


def _die_later(lx, store, config, box):
    """Runner 1 on its own event loop in a thread; ``box["loop"].stop()`` kills it: nothing of it runs again."""
    loop = asyncio.new_event_loop()
    box["loop"] = loop

    async def main():
        client = async_client(lx)
        s = open_session(config, store, exchange=client, arming=ARMED, lease_seconds=1.0, reconcile_every=0.2,
                         feed=feed_for(client, config, stale_bars=100_000), **FAST)
        box["s"] = s
        s.start()

    loop.create_task(main())
    loop.run_forever()


def perp_fills_match_exchange(lx, store, sid):
    fills = store.fills(sid)
    trades = {f"binance:{t['id']}": t for t in lx.perp_trades()}
    assert sorted(fills["fill_id"]) == sorted(trades) and fills["fill_id"].is_unique
    for r in fills.itertuples():
        assert r.quantity == pytest.approx(float(trades[r.fill_id]["qty"]))


def test_live_short_funding_crash_and_resume_on_perpetuals(store):
    config = perp_config()
    with LoopbackExchange(symbols=("BTC/USDT",), days=12, clock="2024-01-10 07:57", perps=(PERP,)) as lx:
        box: dict = {}
        thread = threading.Thread(target=_die_later, args=(lx, store, config, box), daemon=True)
        thread.start()
        wait_until(lambda: "s" in box and box["s"].state is S.RUNNING and box["s"].bars_seen >= 1, 60)  # numba
        s = box["s"]
        lx.advance(1)  # a closed bar: the strategy's short entry
        wait_until(lambda: lx.perp_position(PERP)[0] < 0 and s.portfolio.quantity(PERP) < 0, 20)
        assert lx.perp.lev("loopback-key", "BTCUSDT") == 2  # margin.leverage set on the exchange
        lx.advance(2)  # 08:00 opens: the exchange pays the short its funding
        wait_until(lambda: store.events(s.id).kind.eq("funding").any(), 20)
        box["loop"].call_soon_threadsafe(box["loop"].stop)  # the runner dies: no cleanup, no last checkpoint
        thread.join(10)
        wait_until(lambda: lease_expired(store, s.id), 10)
        store.set_state(s.id, S.ORPHANED, message="runner died")
        short, _ = lx.perp_position(PERP)
        (income,) = lx.perp_income("FUNDING_FEE")

        async def resume():
            client = async_client(lx)
            try:
                r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED, reconcile_every=0.2,
                                 feed=feed_for(client, config, stale_bars=100_000), **FAST)
                r.start()
                await until(lambda: r.state is S.RUNNING and r.bars_seen >= 1, 20)
                lx.advance(1)
                await asyncio.sleep(0.6)  # reconciliation rounds (every 0.2 s) compare wallet and position
                adopted = (r.portfolio.quantity(PERP), r.portfolio.positions[PERP].extra.get("funding"))
                return r, adopted, await stop_flat(lx, r)
            finally:
                await client.close()

        r, adopted, final = asyncio.run(resume())

    assert adopted == (pytest.approx(short), pytest.approx(float(income["income"])))  # booked once
    assert final is S.STOPPED and lx.perp_position(PERP) == (0.0, 0.0)
    closes = [o for o in lx.perp.orders.values() if o.side == "BUY"]
    assert len(closes) == 1 and closes[0].reduce_only
    ev = store.events(r.id)
    assert ev.kind.eq("funding").sum() == 1
    assert not ev.kind.isin(["balance_mismatch", "order_mismatch", "error"]).any(), ev[ev.kind.isin(
        ["balance_mismatch", "order_mismatch", "error"])].message.tolist()
    perp_fills_match_exchange(lx, store, r.id)
    (trade,) = r.portfolio.trade_log()
    assert trade["side"] == "short" and trade["funding"] == pytest.approx(float(income["income"]))
    # the session's cash moved exactly as the exchange's futures wallet did
    assert r.portfolio.cash - config.initial_balance == pytest.approx(lx.perp_wallet() - 100_000, abs=1e-6)
