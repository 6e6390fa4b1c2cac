"""Live sessions end to end: a real ccxt.async_support.binance over real HTTP to the loopback exchange
(virtual clock, signed endpoints, matching engine), a real SQLite store, the real runner."""
from __future__ import annotations

import asyncio
import logging
import pickle
import time

import pytest

from tests.exchange.fixtures import TEST_RECV_WINDOW_MS, async_client
from tests.exchange.server import API_KEY, LoopbackExchange
from tests.kit import until
from tests.live_kit import (
    ALWAYS_IN,
    ARMED,
    BAR,
    FAST,
    ORDER,
    S,
    _start,
    assert_fills_match_exchange,
    assert_one_exchange_order_per_client_id,
    feed_for,
    live_config,
)
from workbench.config import ConfigError, make_config
from workbench.domain import Order, OrderType, SessionKind, Side
from workbench.engine import open_session
from workbench.engine.ccxt_broker import CcxtBroker, make_async_exchange
from workbench.engine.live import LiveNotArmed, LiveSession, arming_problem
from workbench.engine.live_feed import LiveFeed
from workbench.engine.session import Session
from workbench.retry import RetryPolicy
from workbench.secrets import MissingCredentials, load_credentials
from workbench.store import Store

pytestmark = pytest.mark.live_battery


# ---- end to end ---------------------------------------------------------------------------------
def test_live_session_orders_fills_stop_loss_pause_resume_stop(lx, store):
    async def go():
        s, client = await _start(lx, store)
        try:
            await until(lambda: len(store.fills(s.id)) >= 1)  # entered
            await until(lambda: store.fills(s.id)["client_id"].str.contains("stop").any(), timeout=20)  # a stop tripped
            s.pause()
            await asyncio.sleep(0.1)  # let an in-flight order settle
            n_paused = len(store.orders(s.id))
            await asyncio.sleep(12 * BAR)
            paused_new = store.orders(s.id).iloc[n_paused:]
            assert not (paused_new["side"] == "buy").any()  # no new entries while paused
            s.resume_trading()
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0)
            s.stop()
            final = await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s, final

    s, final = asyncio.run(go())
    assert final is S.STOPPED and s._open_symbols() == []
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)  # flattened on the exchange
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)
    reasons = set(store.orders(s.id)["reason"])
    assert {"entry", "end"} <= reasons and reasons & {"stop_loss", "trailing_stop"}
    kinds = list(store.events(s.id)["kind"])
    assert "reconciled" in kinds
    states = [m for k, m in zip(store.events(s.id)["kind"], store.events(s.id)["message"]) if k == "state"]
    assert any("paused" in m for m in states) and any("resumed" in m for m in states)
    # the portfolio's cash matches the exchange's quote balance change
    spent = 100_000.0 - lx.balances()["USDT"]
    assert s.portfolio.cash == pytest.approx(10_000.0 - spent, rel=1e-9)


# ---- fault battery ------------------------------------------------------------------------------
BATTERY = {  # fault -> (inject it, client settings)
    "response lost": (lambda lx: lx.lose_response_next(2), {}),
    "connection dropped": (lambda lx: lx.drop_next(2, path=ORDER), {}),
    "http 5xx": (lambda lx: lx.fail_next(4, 502, path=ORDER), {}),
    "429 retry-after": (lambda lx: lx.fail_next(2, 429, retry_after=0.05, path=ORDER), {}),
    "latency": (lambda lx: lx.delay_next(2, 0.2, path=ORDER, method="POST"), {}),
    "latency past the client timeout": (lambda lx: lx.delay_next(2, 0.5, path=ORDER, method="POST"), {"timeout": 300}),
    "trades endpoint 503": (lambda lx: lx.fail_next(3, 503, path="/api/v3/myTrades"), {}),
}


@pytest.mark.parametrize("fault", list(BATTERY))
def test_fault_during_order_flow_loses_and_duplicates_no_fill(lx, store, fault):
    inject, client_kw = BATTERY[fault]

    async def go():
        s, client = await _start(lx, store, client_kw=client_kw)
        try:
            await until(lambda: s.state is S.RUNNING)
            inject(lx)
            await until(lambda: len(store.fills(s.id)) >= 3, timeout=20)
            s.stop()
            final = await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s, final

    s, final = asyncio.run(go())
    if "timeout" in fault:
        time.sleep(0.5)  # late originals land after the resends and are refused as duplicates
    assert final is S.STOPPED
    assert_fills_match_exchange(lx, store, s.id)
    assert_one_exchange_order_per_client_id(lx)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9) and s.portfolio.quantity("BTC/USDT") == 0.0
    assert store.orders(s.id, status=["new", "partially_filled"]).empty
    assert "order_rejected" not in set(store.events(s.id)["kind"])  # e.g. no second exit sent while one was in flight
    faulted = [r for r in lx.requests() if r.status in (0, 429, 502, 503) or r.path == ORDER and r.status == 400]
    assert faulted or fault.startswith("latency")  # the fault really hit the order flow


# ---- controls while the exchange errors ---------------------------------------------------------
def test_close_all_and_kill_keep_retrying_through_5xx_and_report_what_is_open(lx, store):
    async def go():
        s, client = await _start(lx, store, config=live_config(risk={}))
        try:
            await until(lambda: s.portfolio.quantity("BTC/USDT") > 0)
            s.pause()  # no re-entry after the close
            await asyncio.sleep(0.1)
            lx.fail_next(10, 503, path=ORDER)  # order endpoints fail for a while
            left = await s.broker.flatten(timeout=0.15)
            assert left == {"BTC/USDT": pytest.approx(s.portfolio.quantity("BTC/USDT"))}  # still open, reported
            retries = store.events(s.id)
            retries = retries[retries["kind"] == "exchange_retry"]
            assert len(retries) >= 1 and retries["message"].str.contains("still open: .*BTC/USDT").any()
            assert await s.broker.flatten(timeout=10) == {}  # the exchange recovered: flat
            # a resting order of this session, then kill while the exchange fails
            b = CcxtBroker(client, s.id, policy=RetryPolicy(retries=3, base=0.02))
            p = lx.price("BTC/USDT")
            await b.submit(Order("BTC/USDT:manual:1", "BTC/USDT", Side.BUY, 0.01, OrderType.LIMIT,
                                 limit_price=round(p * 0.5, 2)))
            lx.fail_next(10, 500, path="/api/v3/openOrders")
            s.kill(reason="test")
            final = await asyncio.wait_for(s.wait(), 5)
            await until(lambda: not [o for o in lx.exchange_orders() if o["status"] == "NEW"], timeout=10)
            await until(lambda: not s.broker.side_tasks, timeout=5)
        finally:
            await client.close()
        return s, final

    s, final = asyncio.run(go())
    assert final is S.KILLED
    ev = store.events(s.id)
    cancel_retries = ev[(ev["kind"] == "exchange_retry") & ev["message"].str.startswith("cancel_all")]
    assert len(cancel_retries) >= 1
    assert ev[ev["kind"] == "cancel_all"]["message"].str.contains("1 exchange orders canceled").any()
    assert_fills_match_exchange(lx, store, s.id)


# ---- reconciliation ----------------------------------------------------------------------------
def test_resume_reconciles_an_order_filled_while_the_runner_was_down(lx, store):
    config = live_config(risk={})

    async def go():
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config), **FAST)
            # the runner wrote its order ahead, sent it, and died before hearing back
            s._restore(s.runner_state())
            o = Order("BTC/USDT:entry:1704844800", "BTC/USDT", Side.BUY, 0.05, reason="entry")
            store.upsert_order(s.id, o)
            ghost = Order("BTC/USDT:entry:1704844860", "BTC/USDT", Side.BUY, 0.05, reason="entry")
            store.upsert_order(s.id, ghost)  # written, never sent
            store.save_runner_state(s.id, s.runner_state())
            b = CcxtBroker(client, s.id)
            await b.submit(o)
            store.set_state(s.id, S.ORPHANED, message="runner died")
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED,
                             feed=feed_for(client, config, max_bars=2), **FAST)
            r._start_paused = True  # no new entries: only reconciliation acts
            await r.run()
        finally:
            await client.close()
        return r

    r = asyncio.run(go())
    ev = store.events(r.id)
    rec = ev[ev["kind"] == "reconcile"]["message"].tolist()
    assert any("filled on the exchange; 1 fills applied" in m for m in rec)
    assert any("never reached the exchange" in m for m in rec)
    assert r.portfolio.quantity("BTC/USDT") == pytest.approx(0.05)
    orders = store.orders(r.id).set_index("client_id")
    assert orders.loc["BTC/USDT:entry:1704844800", "status"] == "filled"
    assert orders.loc["BTC/USDT:entry:1704844860", "status"] == "canceled"
    assert_fills_match_exchange(lx, store, r.id)


# ---- safety -------------------------------------------------------------------------------------
def test_live_session_refuses_without_arming_and_says_how(store):
    c = live_config()
    assert "allow_live" in arming_problem(c, None) and "binance:main" in arming_problem(c, None)
    assert "binance:main" in arming_problem(c, {"allow_live": True, "confirmation": "kraken:main"})
    assert "binance:main" in arming_problem(c, {"allow_live": True, "confirmation": "binance:other"})
    assert arming_problem(c, ARMED) is None
    assert arming_problem(live_config(kind="paper"), None) is None
    sub1 = {"allow_live": True, "confirmation": "binance:sub1"}
    assert arming_problem(live_config(live={"account": "sub1"}), sub1) is None
    with pytest.raises(LiveNotArmed, match="not armed"):
        open_session(c, store)
    with pytest.raises(LiveNotArmed, match="not armed"):
        LiveSession(c, store, broker=CcxtBroker(None))
    assert store.list_sessions().empty  # nothing was created


def test_sandbox_is_one_switch_and_keys_come_from_env_or_keyring(monkeypatch):
    monkeypatch.delenv("WORKBENCH_BINANCE_API_KEY", raising=False)
    with pytest.raises(MissingCredentials, match="WORKBENCH_BINANCE_MAIN_API_KEY"):
        load_credentials("binance", env={}, use_keyring=False)
    creds = load_credentials("binance", env={"WORKBENCH_BINANCE_API_KEY": "k-123", "WORKBENCH_BINANCE_SECRET": "s-456"})
    assert "k-123" not in repr(creds) and "s-456" not in str(creds)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(creds)
    ex = make_async_exchange("binance", creds, sandbox=True)
    assert "testnet" in str(ex.urls["api"]["public"]) and ex.apiKey == "k-123"
    asyncio.run(ex.close())
    with pytest.raises(ValueError, match="unknown exchange"):
        make_async_exchange("nope")


def test_canary_key_never_reaches_store_events_or_logs(tmp_path, monkeypatch, caplog):
    key, secret = "CANARYKEY7f3a9c1e5b", "CANARYSECRET2d8e4f6a0c"
    monkeypatch.setenv("WORKBENCH_BINANCE_MAIN_API_KEY", key)
    monkeypatch.setenv("WORKBENCH_BINANCE_MAIN_SECRET", secret)
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "canary.db"
    store = Store(f"sqlite:///{db}")
    config = live_config()
    try:
        with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", bar_seconds=BAR,
                              keys={key: secret}) as lx:
            async def go():
                client = lx.point(make_async_exchange("binance", load_credentials("binance", "main"), timeout=3000,
                                                      options={"recvWindow": TEST_RECV_WINDOW_MS}))
                try:
                    s = open_session(config, store, exchange=client, arming=ARMED,
                                     feed=feed_for(client, config), **FAST)
                    s.start()
                    await until(lambda: len(store.fills(s.id)) >= 2, timeout=20)
                    lx.fail_next(2, 503, path=ORDER)  # errors get logged and recorded too
                    await asyncio.sleep(0.3)
                    s.stop()
                    await asyncio.wait_for(s.wait(), 10)
                    return s, repr(s) + repr(s.broker.client) + str(s.runner_state())
                finally:
                    await client.close()

            s, shown = asyncio.run(go())
            assert len(lx.exchange_trades(key)) >= 2  # it really traded with the canary key
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        store.close()
    stored = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("canary.db")]
    for blob in [*stored, log_file.read_bytes()]:
        assert key.encode() not in blob and secret.encode() not in blob
    assert key not in caplog.text and secret not in caplog.text and key not in shown and secret not in shown


# ---- paper on live data -------------------------------------------------------------------------
def test_paper_session_on_live_data_uses_the_paper_broker_and_pauses_when_the_feed_is_stale(store):
    config = make_config(kind="paper", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"],
                         data={"source": "ccxt", "live": True}, live={"stale_bars": 20})

    async def go(lx):
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, poll_interval=0.05)
            assert type(s) is Session and isinstance(s._feed, LiveFeed)
            s._feed.poll_seconds, s._feed.bar_seconds = 0.01, BAR
            s.start()
            await until(lambda: s.bars_seen >= 1)
            for n in range(2, 12):  # one bar at a time until the strategy has entered
                lx.advance(1)
                await until(lambda n=n: s.bars_seen >= n)
                if len(store.fills(s.id)):
                    break
            assert len(store.fills(s.id)) == 1 and s.portfolio.quantity("BTC/USDT") > 0
            await until(lambda: s.state is S.PAUSED, timeout=10)  # no bars for 20 intervals: stale
            lx.advance(1)
            await until(lambda: s.state is S.RUNNING, timeout=5)
            s.stop()
            lx.advance(2)
            final = await asyncio.wait_for(s.wait(), 5)
        finally:
            await client.close()
        return s, final

    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10") as lx:
        s, final = asyncio.run(go(lx))
        assert lx.exchange_orders() == []  # paper: nothing was sent to the exchange
    assert final is S.STOPPED
    kinds = store.events(s.id)["kind"].tolist()
    assert "feed_stale" in kinds and "feed_recovered" in kinds
    assert SessionKind(store.get_session(s.id)["kind"]) is SessionKind.PAPER


def test_live_data_needs_an_exchange_source():
    with pytest.raises(ConfigError, match="source='ccxt'"):
        make_config(kind="paper", data={"source": "sample", "live": True})


# ---- the host runs live sessions through open_session ------------------------------------------
def test_host_runs_a_requested_live_session_only_when_armed(lx, tmp_path):
    from workbench.engine.host import request_session, run_host

    url = f"sqlite:///{tmp_path / 'host.db'}"
    store = Store(url)
    config = live_config(live={"poll_seconds": 0.02, "stale_bars": 50})
    unarmed = store.create_session(config, state="requested")
    asyncio.run(run_host(url, poll=0.02, stop_after=0.2))
    assert store.get_session(unarmed)["state"] == "failed"
    assert store.events(unarmed)["message"].str.contains("--allow-live").any()
    # a host that allows live still needs the request's exchange:account confirmation
    wrong = request_session(store, config, arming={"allow_live": True, "confirmation": "kraken:main"})
    asyncio.run(run_host(url, poll=0.02, stop_after=0.2, allow_live=True))
    assert store.get_session(wrong)["state"] == "failed"
    assert store.events(wrong)["message"].str.contains("binance:main").any()

    sid = request_session(store, config, arming=ARMED)  # what the wizard records for the host

    async def go():
        client = async_client(lx)

        async def stop_later():
            await until(lambda: len(store.fills(sid)) >= 1, timeout=10)
            store.send_command(sid, "stop")

        try:
            stopper = asyncio.get_running_loop().create_task(stop_later())
            ran = await run_host(url, poll=0.02, stop_after=0.5, allow_live=True, session_kwargs={
                "exchange": client, "broker_policy": FAST["broker_policy"]})
            await stopper
            return ran
        finally:
            await client.close()

    assert asyncio.run(go()) == [sid]
    assert store.get_session(sid)["state"] == "stopped"
    assert_fills_match_exchange(lx, store, sid)
    assert lx.balances()["BTC"] == pytest.approx(0.0, abs=1e-9)
    store.close()


def test_exchange_refusals_become_clear_events_and_are_not_retried(store):
    config = live_config(risk={})

    async def go(lx):
        s, client = await _start(lx, store, config=config)
        try:
            await until(lambda: "budget_checked" in set(store.events(s.id)["kind"]))  # 10,000 USDT free at start
            lx.book.account(API_KEY)["USDT"] = 50.0  # then the account cannot pay for a 1,000 USDT entry
            for _ in range(100):
                if "order_rejected" in set(store.events(s.id)["kind"]):
                    break
                lx.advance(1)
                await asyncio.sleep(BAR)
            s.stop()
            for _ in range(100):  # the run ends at the next bar once flat
                if s.state.is_final:
                    break
                lx.advance(1)
                await asyncio.sleep(BAR)
            final = await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s, final

    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-10", balances={"USDT": 10_000.0}) as lx:
        s, final = asyncio.run(go(lx))
        posts = [r for r in lx.requests(ORDER) if r.method == "POST"]
        assert lx.exchange_orders() == [] and all(r.status == 400 for r in posts)
    assert final is S.STOPPED
    ev = store.events(s.id)
    rejected = ev[ev["kind"] == "order_rejected"]["message"]
    assert rejected.str.contains("refused by binance \\(InsufficientFunds\\)").all()
    assert len(posts) == len(rejected)  # one request per order: refusals are not retried
    assert set(store.orders(s.id)["status"]) == {"rejected"} and store.fills(s.id).empty


def test_kill_with_an_order_in_flight_still_records_its_fill_once(lx, store):
    async def go():
        s, client = await _start(lx, store, config=live_config(risk={}))
        try:
            await until(lambda: s.state is S.RUNNING)
            lx.delay_next(1, 0.4, path=ORDER, method="POST")  # the first order is slow to answer
            await until(lambda: bool(s.broker.inflight))
            s.kill(reason="operator")
            final = await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s, final

    s, final = asyncio.run(go())
    assert final is S.KILLED
    assert len(lx.exchange_trades()) == 1
    assert_fills_match_exchange(lx, store, s.id)
    ev = store.events(s.id)
    assert ev[ev["kind"] == "late_fills"]["message"].str.contains("1 fills").any()
    assert store.get_session(s.id)["trade_count"] == 1  # the bookkeeping was redone with the late fill
