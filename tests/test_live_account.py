"""Account truth of live sessions against the loopback exchange (real ccxt over HTTP, a real SQLite store):
the budget against the account's free balance at start, slippage against the decision price (and live
acting at the bar paper fills at), fees paid in BNB, exchange refusals feeding the circuit breaker, and
resting buys reserving cash (paper and live alike)."""
from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone

import pandas as pd
import pytest

from tests.exchange.fixtures import async_client
from tests.exchange.server import API_KEY, LoopbackExchange
from tests.kit import until
from tests.live_kit import (
    ARMED,
    FAST,
    S,
    _rows,
    assert_fills_match_exchange,
    below_next_lows,
    feed_for,
    live_config,
    manual_exchange,
    quiet_config,
    start_quiet,
    stop_flat,
)
from workbench.config import make_config
from workbench.domain import Order, OrderType, Side
from workbench.engine import open_session
from workbench.engine.brokers import PaperBroker
from workbench.engine.brokers.account import budget, budget_problem
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.engine.trader import Trader, replay
from workbench.execution import Bar

pytestmark = pytest.mark.live_battery
BTC = "BTC/USDT"


def _run(coro):
    return asyncio.run(coro)


# ---- 1. the budget against the free balance --------------------------------------------------------
def test_budget_rule_names_the_numbers_and_what_to_do():
    assert budget_problem(9_000.0, 9_000.0, {}, "USDT") is None
    assert budget_problem(5_000.0, 12_000.0, {"a1": 3_000.0, "b2": 4_000.0}, "USDT") is None
    msg = budget_problem(10_000.0, 12_000.0, {"a1": 3_000.0}, "USDT", "binance:main")
    assert msg is not None
    for part in ("initial_balance 10,000.00 USDT", "binance:main", "12,000.00 USDT free", "3,000.00 is held by 1",
                 "a1", "leaving 9,000.00", "Lower initial_balance to at most 9,000.00", "deposit 1,000.00 USDT"):
        assert part in msg


def test_a_live_session_over_the_free_balance_refuses_to_start(store):
    """12,000 USDT free, another running live session on the account holds 3,000: 10,000 does not fit."""
    other = store.create_session(live_config(initial_balance=3_000.0), state="running")
    store.create_session(live_config(initial_balance=50_000.0), state="stopped")  # ended: holds nothing
    store.create_session(live_config(initial_balance=50_000.0, live={"account": "other"}), state="running")
    config = live_config()

    async def go(lx):
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config), **FAST)
            s.start()
            final = await asyncio.wait_for(s.wait(), 10)
            other_client = CcxtBroker(async_client(lx))
            try:
                b = await budget(other_client, config, store)  # what `workbench preflight` can reuse
            finally:
                await other_client.close()
            return s, final, b
        finally:
            await client.close()

    with LoopbackExchange(symbols=(BTC,), days=30, clock="2024-01-10", balances={"USDT": 12_000.0}) as lx:
        s, final, b = _run(go(lx))
        assert lx.exchange_orders() == []
    assert final is S.FAILED
    ev = store.events(s.id)
    [msg] = ev[ev["kind"] == "budget_exceeded"]["message"]
    assert "initial_balance 10,000.00 USDT" in msg and "12,000.00 USDT free" in msg and other in msg
    assert "Lower initial_balance to at most 9,000.00" in msg
    assert "BudgetExceeded" in (store.get_session(s.id)["error"] or "")
    assert (b.free, b.others, b.available) == (12_000.0, {other: 3_000.0}, 9_000.0)
    assert store.orders(s.id).empty


def test_a_live_session_within_the_free_balance_starts_and_says_so(store):
    with manual_exchange() as lx:  # 100,000 USDT free

        async def go():
            s, client = await start_quiet(lx, store)
            try:
                return s, await stop_flat(lx, s)
            finally:
                await client.close()

        s, final = _run(go())
    assert final is S.STOPPED
    ev = store.events(s.id)
    [msg] = ev[ev["kind"] == "budget_checked"]["message"]
    assert "10,000.00 USDT fits: 100,000.00 free on binance:main" in msg


# ---- 2. slippage vs the decision price; live acts at the bar paper fills at -------------------------
def test_live_enters_at_the_bar_paper_fills_at_with_slippage_against_the_decision_price(store):
    """Every bar opens 0.2 % above the previous close (the decision price): the entry's slippage is
    q x (fill - close of the signal bar), and the order goes out at the bar a paper session fills it at."""
    config = live_config(risk={})

    async def go(lx):
        client = async_client(lx)
        s = open_session(config, store, exchange=client, arming=ARMED,
                         feed=feed_for(client, config, stale_bars=100_000), **FAST)
        rows = _rows(lx)
        rows[lx.book.index + 1:, 0] = rows[lx.book.index:-1, 3] * 1.002  # gaps up by 0.2 % at every open
        rows[:, 1] = rows[:, [0, 1, 3]].max(axis=1)
        s.start()
        try:
            for _ in range(50):
                if not store.fills(s.id).empty:
                    break
                seen = s.bars_seen
                lx.advance(1)
                await until(lambda seen=seen: s.bars_seen > seen or s.state.is_final)
                await asyncio.sleep(0.05)
            await until(lambda: not store.fills(s.id).empty)
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    with manual_exchange() as lx:
        s, final = _run(go(lx))
        rows = _rows(lx)
        times = pd.to_datetime(next(iter(lx.book.prices.values()))[0], unit="ms", utc=True)
        frame = pd.DataFrame(rows[:, :5], index=times, columns=["open", "high", "low", "close", "volume"])
    assert final is S.STOPPED
    fill = store.fills(s.id).iloc[0]
    t = pd.Timestamp(fill["time"])
    k = frame.index.get_loc(t)
    decision = frame["close"].iloc[k - 1]  # the close of the signal bar
    assert fill["price"] == pytest.approx(frame["open"].iloc[k]) == pytest.approx(decision * 1.002)
    assert fill["slippage"] == pytest.approx(fill["quantity"] * (fill["price"] - decision), rel=1e-9)
    assert fill["slippage"] > 0
    exit_fill = store.fills(s.id).iloc[1]  # the stop's sell, decided at the last mark (the last close)
    k2 = frame.index.get_loc(pd.Timestamp(exit_fill["time"]))
    assert exit_fill["slippage"] == pytest.approx(
        exit_fill["quantity"] * (frame["close"].iloc[k2 - 1] - exit_fill["price"]), rel=1e-9)
    [trade] = store.trades(s.id).itertuples()
    assert trade.slippage == pytest.approx(fill["slippage"] + exit_fill["slippage"])  # the trade carries both
    order = store.orders(s.id).iloc[0]
    assert order["client_id"] == f"{BTC}:entry:{int(t.timestamp())}"  # sent at the bar after the signal bar
    # a paper session on the same bars (from the first bar the live one saw) fills its entry at that bar too
    first = store.equity(s.id).index[0]
    paper_config = make_config(**{**config.model_dump(), "kind": "paper"})
    paper = replay(paper_config, {BTC: frame.loc[first:t + pd.Timedelta("5min")]}, include_open=True)
    assert pd.Timestamp(paper["entry_time"].iloc[0]) == t


# ---- 3. fees paid in BNB -----------------------------------------------------------------------------
def test_a_fee_paid_in_bnb_is_booked_in_quote_at_the_fill_time_price(store):
    with LoopbackExchange(symbols=(BTC, "BNB/USDT"), days=30, clock="2024-01-10",
                          balances={"USDT": 100_000.0, "BNB": 10.0}) as lx:
        lx.book.bnb_burn.add(API_KEY)

        async def go():
            s, client = await start_quiet(lx, store)
            try:
                p, bnb = lx.price(BTC), lx.price("BNB/USDT")
                s.place_order(BTC, "buy", 0.05, type="market")
                await until(lambda: not store.fills(s.id).empty)
                await until(lambda: not s.broker.inflight)
                diffs = await s.broker.reconcile_once()
                cash = s.portfolio.cash
                return s, p, bnb, diffs, cash, await stop_flat(lx, s)
            finally:
                await client.close()

        s, p, bnb, diffs, cash, final = _run(go())
        [trade] = [t for t in lx.exchange_trades() if t["isBuyer"]]
        balances = lx.balances()
    assert final is S.STOPPED
    fee_bnb = 0.05 * p * 0.001 * 0.75 / bnb  # 0.1 % less Binance's 25 % BNB discount, in BNB at its price
    assert trade["commissionAsset"] == "BNB" and float(trade["commission"]) == pytest.approx(fee_bnb, rel=1e-6)
    fill = store.fills(s.id).iloc[0]
    assert fill["commission"] == pytest.approx(0.05 * p * 0.00075, rel=1e-6)  # = fee_bnb x the BNB price then
    assert cash == pytest.approx(10_000.0 - 0.05 * p - 0.05 * p * 0.00075, rel=1e-9)
    assert balances["BNB"] < 10.0 - fee_bnb * 0.999
    assert diffs == []  # reconciliation expects the fee out of BNB, not out of USDT


# ---- 5. exchange refusals count toward the breaker ---------------------------------------------------
def test_exchange_refusals_trip_the_breakers_rejection_rule(store):
    """Two orders the exchange refuses (-1013 NOTIONAL: under 5 USDT; -2010 insufficient balance) trip a
    breaker with max_rejections=2, like two risk rejections would."""
    config = make_config(**{**quiet_config().model_dump(),
                            "risk": {"circuit_breaker": {"max_rejections": 2, "rejection_window_s": 3600}}})

    async def go(lx):
        client = async_client(lx)
        s = open_session(config, store, exchange=client, arming=ARMED,
                         feed=feed_for(client, config, stale_bars=100_000), resting_poll=0.05, **FAST)
        s.start()
        try:
            await until(lambda: s.state is S.RUNNING and s.bars_seen >= 1)
            s.place_order(BTC, "buy", 0.0001, type="market")  # ~4.3 USDT: under the exchange's minimum notional
            await until(lambda: (store.events(s.id)["kind"] == "order_rejected").sum() >= 1)
            assert s.risk.state.value == "running"
            lx.book.account(API_KEY)["USDT"] = 1.0  # the account is emptied elsewhere
            s.place_order(BTC, "buy", 0.01, type="market")
            await until(lambda: "circuit_breaker_tripped" in set(store.events(s.id)["kind"]))
            return s, await stop_flat(lx, s)
        finally:
            await client.close()

    with manual_exchange() as lx:
        s, final = _run(go(lx))
    ev = store.events(s.id)
    rejected = ev[ev["kind"] == "order_rejected"]["message"]
    assert rejected.str.contains(r"refused by binance \(BadRequest\).*-1013.*NOTIONAL").sum() == 1
    assert rejected.str.contains(r"refused by binance \(InsufficientFunds\)").sum() == 1
    [trip] = ev[ev["kind"] == "circuit_breaker_tripped"]["data"]
    assert trip["reason"] == "rejections" and trip["rejections"] == 2
    assert final is S.STOPPED and s.risk.state.value == "halted"


# ---- 6. resting buys reserve cash --------------------------------------------------------------------
def _bar(t: datetime, price: float) -> Bar:
    return Bar(t, price, price, price, price, 1e9)


def test_paper_entries_do_not_spend_the_cash_a_resting_buy_holds():
    """10,000 cash, a resting limit buy of 0.2 @ 40,000 holds 8,008 (with the 0.1 % maker fee): an entry
    sized at 50 % of equity (5,000) gets only what is left."""
    config = make_config(kind="paper", strategy="momentum", symbols=[BTC], initial_balance=10_000.0,
                         sizing={"mode": "percent_equity", "value": 0.5},
                         commission={"maker": 0.001, "taker": 0.001, "fixed": 0.0}, slippage={"bps": 0.0})
    broker = PaperBroker(config)
    trader = Trader(config, broker)
    t = datetime(2024, 1, 10, tzinfo=timezone.utc)
    broker.rest(Order("op1", BTC, Side.BUY, 0.2, OrderType.LIMIT, 40_000.0, created_at=t))
    trader.pending[BTC] = (True, False)
    fills = []
    trader.on_fill = lambda f, o: fills.append(f)
    trader.step({BTC: _bar(t, 50_000.0)})  # above the limit: the resting buy keeps resting
    [entry] = [f for f in fills if f.reason == "entry"]
    reserved = 0.2 * 40_000.0 * 1.001
    assert entry.quantity * entry.price * 1.001 == pytest.approx(10_000.0 - reserved, rel=1e-6)
    assert math.isclose(trader.portfolio.cash, 10_000.0 - 10_000.0 + reserved, rel_tol=1e-6)


def test_live_entries_do_not_spend_the_cash_a_resting_buy_holds(store):
    with manual_exchange() as lx:

        async def go():
            s, client = await start_quiet(lx, store)
            try:
                limit = below_next_lows(lx, 3)
                q = round(9_000.0 / limit, 5)
                s.place_order(BTC, "buy", q, type="limit", limit_price=limit)
                await until(lambda: "op1" in s.broker.resting)
                p = s.portfolio.marks[BTC]
                s.place_order(BTC, "buy", 0.05, type="market")  # ~2,150 USDT wanted; ~990 left
                await until(lambda: not store.fills(s.id).empty)
                await until(lambda: not s.broker.inflight)
                return s, q, limit, p, await stop_flat(lx, s)
            finally:
                await client.close()

        s, q, limit, p, final = _run(go())
        assert_fills_match_exchange(lx, store, s.id)
    assert final is S.STOPPED
    fills = store.fills(s.id)
    [fill] = fills[fills["client_id"] == "op2"].itertuples()
    left = 10_000.0 - q * limit * 1.001  # what the resting buy does not hold (maker fee 0.1 %)
    assert fill.quantity * fill.price * 1.001 <= left * (1 + 1e-6)
    assert fill.quantity < 0.05 and fill.quantity * fill.price > left * 0.95
    ev = store.events(s.id)
    assert not ev[ev["kind"] == "order_rejected"]["message"].str.contains("InsufficientFunds").any()
    assert p > 0


def test_other_sessions_claim_their_checkpoint_cash_less_their_open_buys(store):
    from workbench.engine.brokers.account import other_claims

    sid = store.create_session(live_config(initial_balance=3_000.0), state="paused")
    store.save_runner_state(sid, {"portfolio": {"cash": 2_500.0}})
    store.upsert_order(sid, Order("op1", BTC, Side.BUY, 0.01, OrderType.LIMIT, 40_000.0))  # locks 400 on the exchange
    store.upsert_order(sid, Order("op2", BTC, Side.SELL, 0.01, OrderType.LIMIT, 50_000.0))  # a sell locks coins
    assert other_claims(store, live_config()) == {sid: pytest.approx(2_500.0 - 400.0)}
    assert other_claims(store, live_config(), session_id=sid) == {}
