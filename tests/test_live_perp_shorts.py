"""Live shorts on the loopback's USDⓈ-M perpetual, through real ccxt over real HTTP: the ticker monitor buys a
short back inside the bar once the price crosses its mirrored stop; a modelled borrow rate is not charged (the
exchange's funding is the carry)."""
from __future__ import annotations

import asyncio

import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import LoopbackExchange
from tests.kit import until
from tests.live_kit import ARMED, FAST, NEVER, S, feed_for, live_config, stop_flat
from workbench.engine import open_session
from workbench.engine.brokers.perps import Perpetuals
from workbench.engine.commands import CommandRejected
from workbench.execution.rules import reserved_cash, stop_levels

pytestmark = pytest.mark.live_battery

PERP = "BTC/USDT:USDT"
SHORT_NOW = {"window": 1, "entry_threshold": 10.0, "exit_threshold": 10.0}  # short at once (ROC < 10), never exit


def short_config(protective: str, risk: dict | None = None, **margin: float):
    return live_config(symbols=[PERP], direction="short", params=SHORT_NOW,
                       risk={"stop_loss": 0.02} if risk is None else risk, margin={"leverage": 2, **margin},
                       live={"protective": protective, "poll_seconds": 0.05})


@pytest.fixture
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", perps=(PERP,)) as ex:
        yield ex


async def _short(lx, store, config):
    """A running session on ``lx`` (a manual clock) that has opened its short; returns it and its client."""
    client = async_client(lx)
    s = open_session(config, store, exchange=client, arming=ARMED, resting_poll=0.05,
                     feed=feed_for(client, config, stale_bars=100_000), **FAST)
    s.start()
    await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1, timeout=60)
    lx.advance(1)  # a closed bar: the strategy's short entry
    await until(lambda: s.portfolio.quantity(PERP) < 0 and not s.broker.inflight, timeout=20)
    return s, client


def test_the_monitor_buys_a_short_back_intrabar_when_the_ticker_crosses_its_mirrored_stop(lx, store):
    async def go():
        s, client = await _short(lx, store, short_config("monitor"))
        try:
            await until(lambda: s.broker._watched.get(PERP))
            pos = s.portfolio.positions[PERP]
            reason, level, _ = stop_levels(pos.avg_price, pos.peak_price, 0.02, None, None, side=-1)
            (watched,) = s.broker._watched[PERP]
            assert (watched.reason, watched.price, watched.above) == (reason, pytest.approx(level), True)
            assert level > pos.avg_price  # a short's stop is above its entry
            bars, bar_open = s.bars_seen, lx.now()
            lx.trade("BTC/USDT", level * 0.999)  # near, not through: nothing happens
            await asyncio.sleep(0.3)
            assert s.portfolio.quantity(PERP) < 0
            lx.trade("BTC/USDT", level * 1.001)  # up through the stop inside the forming bar
            await until(lambda: s.portfolio.quantity(PERP) == 0 and not s.broker.inflight, timeout=5)
            assert s.bars_seen == bars and lx.now() == bar_open  # no bar closed meanwhile
            return s, level, await stop_flat(lx, s)
        finally:
            await client.close()

    s, level, final = asyncio.run(go())
    assert final is S.STOPPED and lx.perp_position(PERP) == (0.0, 0.0)
    (trade,) = s.portfolio.trade_log()
    assert trade["side"] == "short" and trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == pytest.approx(round(level * 1.001, 2))  # the intrabar price, not the bar's
    buys = [o for o in lx.perp.orders.values() if o.side == "BUY"]
    assert len(buys) == 1 and buys[0].reduce_only and buys[0].type == "MARKET"
    assert "protective_fired" in set(store.events(s.id)["kind"])


def test_a_modelled_borrow_rate_is_not_charged_on_a_live_perpetual_short(lx, store):
    config = short_config("off", risk={}, borrow_rate=5.0)  # 500 % a year: cents a minute on the short

    async def go():
        s, client = await _short(lx, store, config)
        try:
            for _ in range(3):  # held bars: a modelled interest would accrue at each
                n = s.bars_seen
                lx.advance(1)
                await until(lambda n=n: s.bars_seen > n)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    s, final = asyncio.run(go())
    assert final is S.STOPPED and lx.perp_position(PERP) == (0.0, 0.0)
    (trade,) = s.portfolio.trade_log()
    assert trade["side"] == "short" and trade["interest"] == 0.0
    assert s.portfolio.cash - config.initial_balance == pytest.approx(lx.perp_wallet() - 100_000, abs=1e-6)
    (ev,) = store.events(s.id, kinds=["carry_model_ignored"])["data"]
    assert ev["ignored"] == ["borrow_rate 5"]


def test_the_funding_watcher_ends_on_a_cancel_that_lands_with_a_bars_wake_up():
    async def go():
        p = Perpetuals()
        p._funding_due, p.reconcile_every = asyncio.Event(), 30.0
        booked = []

        async def book_funding() -> int:
            booked.append(1)
            return 0

        p.book_funding = p.book_liquidations = book_funding  # type: ignore[method-assign]
        task = asyncio.create_task(p._watch_funding())
        await asyncio.sleep(0.01)  # waiting for the next bar
        p._funding_due.set()  # a bar wakes it, and the run's end cancels it in the same moment: the wake-up
        await asyncio.sleep(0)  # is done, the watcher not resumed yet
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        return task in done and task.cancelled()

    assert asyncio.run(go())  # it waited 30 s for the next round before (Python 3.11's wait_for ate the cancel)


def test_an_operator_sell_from_flat_on_a_perpetual_opens_a_short_and_the_buy_back_closes_it(lx, store):
    config = live_config(symbols=[PERP], direction="both", params=NEVER, risk={}, margin={"leverage": 2},
                         live={"poll_seconds": 0.05})

    async def go():
        client = async_client(lx)
        s = open_session(config, store, exchange=client, arming=ARMED, resting_poll=0.05,
                         feed=feed_for(client, config, stale_bars=100_000), **FAST)
        s.start()
        try:
            await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1, timeout=60)
            s.place_order(PERP, "sell", 0.01)  # nothing held: a short
            await until(lambda: s.portfolio.quantity(PERP) < 0 and not s.broker.inflight, timeout=10)
            opened = lx.perp_position(PERP), s.portfolio.quantity(PERP)
            s.pause()
            await until(lambda: s.state is S.PAUSED)
            with pytest.raises(CommandRejected, match="paused"):  # adding to the short is an entry
                s.place_order(PERP, "sell", 0.01)
            s.place_order(PERP, "buy", 0.01)  # the buy back: an exit goes through while paused
            await until(lambda: s.portfolio.quantity(PERP) == 0 and not s.broker.inflight, timeout=10)
            return s, opened, await stop_flat(lx, s)
        finally:
            await client.close()

    s, ((amount, entry), held), final = asyncio.run(go())
    assert final is S.STOPPED and amount == pytest.approx(-0.01) and held == pytest.approx(-0.01)
    sell, buy = sorted(lx.perp.orders.values(), key=lambda o: o.order_id)
    assert (sell.side, sell.reduce_only, buy.side, buy.reduce_only) == ("SELL", False, "BUY", True)
    fills = store.fills(s.id)
    assert fills["side"].tolist() == ["sell", "buy"]
    assert fills["client_id"].tolist() == ["op1", "op3"]  # op2: the sell refused while paused
    (trade,) = s.portfolio.trade_log()
    assert trade["side"] == "short" and trade["entry_price"] == pytest.approx(entry)
    assert s.portfolio.cash - config.initial_balance == pytest.approx(lx.perp_wallet() - 100_000, abs=1e-6)


def test_on_a_perpetual_a_shorts_stop_and_take_profit_rest_on_the_exchange_and_the_stop_buys_it_back(lx, store):
    config = short_config("auto", risk={"stop_loss": 0.02, "take_profit": 0.03})

    async def go():
        s, client = await _short(lx, store, config)
        try:
            await until(lambda: len(lx.perp.algo.open_orders("loopback-key", None)) == 2, timeout=10)
            pos = s.portfolio.positions[PERP]
            _, stop, tp = stop_levels(pos.avg_price, pos.peak_price, 0.02, 0.03, None, side=-1)
            assert not s.broker._watched  # nothing left to the monitor
            reserved = reserved_cash(s.broker.open_orders(), config.commission)  # reduce-only: they lock no cash
            lx.trade("BTC/USDT", stop * 1.001)  # up through the stop inside the bar: the exchange buys it back
            await until(lambda: s.portfolio.quantity(PERP) == 0 and not s.broker.resting, timeout=10)
            return s, stop, tp, reserved, await stop_flat(lx, s)
        finally:
            await client.close()

    s, stop, tp, reserved, final = asyncio.run(go())
    assert reserved == 0.0  # a buy's cash is not kept from entries for the short's stop and take profit
    assert final is S.STOPPED and lx.perp_position(PERP) == (0.0, 0.0)
    algo = sorted(lx.perp.algo.orders.values(), key=lambda o: o.algo_id)
    assert [(o.type, o.side, o.reduce_only, o.status) for o in algo] == [
        ("STOP_MARKET", "BUY", True, "FINISHED"), ("TAKE_PROFIT_MARKET", "BUY", True, "CANCELED")]
    assert algo[0].trigger == pytest.approx(stop, abs=0.01) and algo[1].trigger == pytest.approx(tp, abs=0.01)
    (trade,) = s.portfolio.trade_log()
    assert trade["side"] == "short" and trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == pytest.approx(round(stop * 1.001, 2))
    buys = [o for o in lx.perp.orders.values() if o.side == "BUY"]
    assert len(buys) == 1 and buys[0].reduce_only  # the triggered one: no monitor sale, no second exit
    fills = store.fills(s.id)
    assert fills["client_id"].tolist()[1] == "protect:BTC/USDT:USDT:1"
    assert "protective_fired" not in set(store.events(s.id)["kind"])


def test_a_handed_back_perpetual_stop_is_adopted_not_placed_again_and_books_the_exit(lx, store):
    config = short_config("auto", risk={"stop_loss": 0.02, "take_profit": 0.03})

    async def go():
        s, client = await _short(lx, store, config)
        try:
            await until(lambda: len(lx.perp.algo.open_orders("loopback-key", None)) == 2 and not s.broker.inflight,
                        timeout=10)
            s.hand_back("host shut down: handed back, resumable")
            assert await asyncio.wait_for(s.wait(), 10) is S.ORPHANED
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED, resting_poll=0.05,
                             feed=feed_for(client, config, stale_bars=100_000), **FAST)
            r.start()
            await until(lambda: r.state is S.RUNNING and len(r.broker.protective(PERP)) == 2, timeout=20)
            await asyncio.sleep(0.5)  # protector rounds: it reads the adopted levels and keeps them
            adopted = sorted((o.client_id, o.stop_price) for o in r.broker.protective(PERP))
            lx.trade("BTC/USDT", lx.perp.algo.orders[min(lx.perp.algo.orders)].trigger * 1.001)
            await until(lambda: r.portfolio.quantity(PERP) == 0 and not r.broker.resting, timeout=10)
            return r, adopted, await stop_flat(lx, r)
        finally:
            await client.close()

    r, adopted, final = asyncio.run(go())
    assert final is S.STOPPED and lx.perp_position(PERP) == (0.0, 0.0)
    algo = sorted(lx.perp.algo.orders.values(), key=lambda o: o.algo_id)
    assert len(algo) == 2  # never placed twice
    assert adopted == [("protect:BTC/USDT:USDT:1", pytest.approx(algo[0].trigger)),
                       ("protect:BTC/USDT:USDT:2", pytest.approx(algo[1].trigger))]
    (trade,) = r.portfolio.trade_log()
    assert trade["exit_reason"] == "stop_loss"
    fills = store.fills(r.id)
    assert fills["fill_id"].is_unique and len(fills) == 2 == len(lx.perp_trades())


def test_the_exchanges_liquidation_of_a_short_is_booked_as_its_liquidation_exit(store):
    config = short_config("off", risk={}, leverage=10)  # the whole futures wallet is the session's: 1,000 USDT
    config = config.model_copy(update={"initial_balance": 1_000.0})

    async def go(lx):
        client = async_client(lx)
        s = open_session(config, store, exchange=client, arming=ARMED, reconcile_every=0.1,
                         feed=feed_for(client, config, stale_bars=100_000), **FAST)
        s.start()
        try:
            await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1, timeout=60)
            lx.advance(1)  # the short entry
            await until(lambda: s.portfolio.quantity(PERP) < 0 and not s.broker.inflight, timeout=20)
            _, entry = lx.perp_position(PERP)
            lx.trade("BTC/USDT", round(entry * 2.1, 2))  # inside the bar: margin gone, the exchange liquidates
            assert lx.perp_position(PERP) == (0.0, 0.0)
            await until(lambda: s.portfolio.quantity(PERP) == 0, timeout=10)
            await asyncio.sleep(0.3)  # reconciliation rounds after the booking
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", perps=(PERP,),
                          perp_balances={"USDT": 1_000.0}) as lx:
        s, final = asyncio.run(go(lx))
        (liq,) = [o for o in lx.perp.orders.values() if o.type == "LIQUIDATION"]
        wallet = lx.perp_wallet()
    assert final is S.STOPPED and liq.client_id.startswith("autoclose-")
    (trade,) = s.portfolio.trade_log()
    assert trade["side"] == "short" and trade["exit_reason"] == "liquidation"
    assert trade["exit_price"] == pytest.approx(liq.quote / liq.executed)
    ev = store.events(s.id)
    assert ev.kind.eq("liquidation").sum() == 1
    assert not ev.kind.isin(["balance_mismatch", "order_mismatch", "error"]).any(), ev[ev.kind.isin(
        ["balance_mismatch", "order_mismatch", "error"])].message.tolist()
    assert s.portfolio.cash - config.initial_balance == pytest.approx(wallet - 1_000, abs=1e-6)
