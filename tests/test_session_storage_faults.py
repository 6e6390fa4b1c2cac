"""A storage fault during a run (the disk fills up) leaves the session ORPHANED and resumable, never
KILLED or FAILED: one CRITICAL line, an event once the store takes writes again, nothing recorded lost,
and a resumed run ends as an uninterrupted one would."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from tests.kit import bars_for, paper_config, until
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _config():
    return paper_config(start=START, end=START + timedelta(hours=20))


def _feed(cfg, speed: float | None):
    return ReplayFeed({s: f.loc[cfg.start:cfg.end] for s, f in bars_for(cfg, days=1).items()}, speed)


def test_a_full_disk_mid_run_leaves_the_session_orphaned_and_a_resume_ends_as_if_uninterrupted(
        store, store_url, page_limit, caplog):
    cfg = _config()
    reference = Session(cfg, store, feed=_feed(cfg, None))
    assert asyncio.run(reference.run()).value == "completed"
    want = float(store.get_session(reference.id)["final_equity"])

    session = Session(cfg, store, feed=_feed(cfg, 3000.0), poll_interval=0.05, lease_seconds=30)

    async def main() -> str:
        session.start()
        await until(lambda: session.bars_seen > 60 and store.load_runner_state(session.id) is not None, timeout=30)
        page_limit["n"] = 1  # the disk is full: nothing can grow the file
        await until(lambda: session._fault is not None, timeout=30, message="the runner meeting the full disk")
        stopped_at = session.bars_seen
        await asyncio.sleep(0.3)
        assert session.bars_seen == stopped_at  # it stopped trading at once
        assert store.get_session(session.id)["state"] != "killed"
        page_limit["n"] = 1_000_000_000  # room again
        return (await asyncio.wait_for(session.wait(), 30)).value

    with caplog.at_level(logging.CRITICAL, logger="workbench"):
        assert asyncio.run(main()) == "orphaned"
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL and session.id in r.getMessage()]
    assert critical and "disk_full" in critical[0].getMessage()
    row = store.get_session(session.id)
    assert row["state"] == "orphaned" and row["runner"] is None
    events = store.events(session.id)
    assert (events["kind"] == "storage").sum() == 1 and not events["message"].str.contains("killed").any()
    checkpoint = store.load_runner_state(session.id)
    assert checkpoint is not None and 0 < checkpoint["bars_seen"] < 20 * 60

    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    resumed = Session.resume(session.id, store, _feed(cfg, None))
    assert asyncio.run(resumed.run()).value == "completed"
    assert float(store.get_session(session.id)["final_equity"]) == pytest.approx(want, rel=1e-12)
    fills = store.fills(session.id)
    assert fills.fill_id.is_unique and len(fills) == len(store.fills(reference.id))


def _unrecorded(lx, store: Store, sid: str) -> set[str]:
    """Client ids of orders on the exchange that the store has no row for."""
    from workbench.engine.ccxt_broker import exchange_client_id

    stored = {exchange_client_id(sid, str(c)) for c in store.orders(sid).client_id}
    return {o["clientOrderId"] for o in lx.exchange_orders()} - stored


def test_a_full_disk_mid_live_run_sends_nothing_unrecorded_and_a_resume_reconciles_every_fill(
        lx, store, store_url, page_limit):
    from tests.exchange.fixtures import async_client
    from tests.live_kit import ARMED, FAST, assert_fills_match_exchange, feed_for, live_config
    from workbench.engine import open_session

    config = live_config()

    async def main() -> tuple[str, str]:
        client = async_client(lx)
        try:
            s = open_session(config, store, exchange=client, arming=ARMED, feed=feed_for(client, config),
                             lease_seconds=30, **FAST)
            s.start()
            await until(lambda: len(lx.exchange_trades()) >= 2, timeout=60, message="the live session trading")
            page_limit["n"] = 1  # the disk is full
            await until(lambda: s._fault is not None, timeout=30, message="the runner meeting the full disk")
            assert _unrecorded(lx, store, s.id) == set()  # nothing on the exchange without its stored row
            page_limit["n"] = 1_000_000_000
            first = (await asyncio.wait_for(s.wait(), 30)).value
            r = open_session(config, store, resume=s.id, exchange=client, arming=ARMED,
                             feed=feed_for(client, config, max_bars=3), **FAST)
            r._start_paused = True  # no new entries: the resume only reconciles and books what it finds
            await r.run()
            return first, s.id
        finally:
            await client.close()

    first, sid = asyncio.run(main())
    assert first == "orphaned"
    assert _unrecorded(lx, store, sid) == set()
    assert_fills_match_exchange(lx, store, sid)
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_exchange_broker_finishing_on_a_full_disk_still_stops_its_tasks_and_logs_what_it_could_not_record(
        store, caplog):
    """A live run stopped by a full disk hands its broker back with an order still in flight: the event saying
    so could not be written, and it raised out of finish() (the session's wait() failed, its tasks ran on)."""
    from tests.live_kit import live_config
    from workbench.domain import Order, Side
    from workbench.engine.brokers.exchange import ExchangeBroker
    from workbench.engine.ccxt_broker import CcxtBroker
    from workbench.execution.ledger import Portfolio
    from workbench.store.faults import StorageFault

    broker = ExchangeBroker(CcxtBroker(None), live_config(), store, fill_timeout=0.05)
    broker.attach("s-1", Portfolio(10_000.0))
    broker.inflight["b-1"] = Order("b-1", "BTC/USDT", Side.BUY, 0.01)

    def full(*args, **kwargs):
        raise StorageFault("disk_full", "wb.db", "write", "database or disk is full")

    store.add_event = full

    async def finish() -> None:
        async def forever() -> None:
            await asyncio.Event().wait()

        broker._worker = asyncio.ensure_future(forever())  # a task of the run, never done
        await broker.finish(hand_back=True)
        assert broker._worker.cancelled()

    with caplog.at_level(logging.WARNING):
        asyncio.run(finish())
    assert "orders still unsettled at the hand-back" in caplog.text and "not recorded" in caplog.text
