"""Diagnostics of a real paper session in a real SQLite store: the order flow's step times, the runner's
profile and signal counters in its runner state, the log's filters and the CLI's exports."""
from __future__ import annotations

import asyncio
import io
import json

import pandas as pd
import pytest

from tests.kit import bars_for, paper_config
from workbench.cli import main
from workbench.diagnostics.log import export, filter_log, level_of, session_log
from workbench.diagnostics.orderflow import latency_summary, order_flow, session_order_flow
from workbench.diagnostics.profiler import session_profile
from workbench.diagnostics.why import session_counts, why_summary
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session


@pytest.fixture
def ran(store):
    """A paper session over a day of sample bars whose trading hours block entries before 08:00."""
    cfg = paper_config(time={"trading_hours": {"start": "08:00", "end": "24:00"}})
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None), checkpoint_interval=500)
    assert asyncio.run(session.run()).value == "completed"
    return session


def test_order_flow_of_a_paper_session_has_each_steps_time(store, ran):
    flow = session_order_flow(store, ran.id)
    fills = store.fills(ran.id)
    placed = flow[flow["rule"] == ""]
    assert len(placed) == len(store.orders(ran.id)) > 4 and (placed["status"] == "filled").all()
    # the paper broker's simulated exchange takes and fills a market order at its bar's open
    first_fill = fills.groupby("client_id")["time"].min()
    assert (placed["filled"].to_numpy() == first_fill[placed["client_id"]].to_numpy()).all()
    assert (placed["sent"] == placed["created"]).all() and (placed["acknowledged"] == placed["created"]).all()
    assert (placed["total_latency"] == pd.Timedelta(0)).all()
    # entries the trading hours blocked: rejected at their bar, with the rule, never sent
    blocked = flow[flow["rule"] == "trading_hours"]
    assert len(blocked) > 0 and (blocked["status"] == "rejected").all() and blocked["sent"].isna().all()
    assert (blocked["created"].dt.hour < 8).all() and (blocked["rejected"] == blocked["created"]).all()
    assert flow["created"].is_monotonic_increasing
    summary = latency_summary(flow).set_index("latency")
    assert summary.loc["total_latency", "count"] == len(flow)


def test_exchange_step_events_give_sent_and_acknowledged_times():
    t0 = pd.Timestamp("2024-01-08 10:00", tz="UTC")
    orders = pd.DataFrame([{"client_id": "BTC/USDT:entry:1", "symbol": "BTC/USDT", "side": "buy", "reason": "entry",
                            "quantity": 2.0, "filled_quantity": 2.0, "status": "filled", "created_at": t0,
                            "updated_at": t0 + pd.Timedelta("3s"), "exchange_id": "77"}])
    fills = pd.DataFrame({"client_id": ["BTC/USDT:entry:1"] * 2, "quantity": [0.5, 1.5],
                          "time": [t0 + pd.Timedelta("1.5s"), t0 + pd.Timedelta("2.5s")]})
    events = pd.DataFrame({"time": [t0 + pd.Timedelta("9s")] * 2, "kind": ["order_sent", "order_acknowledged"],
                           "data": [{"client_id": "BTC/USDT:entry:1", "at": (t0 + pd.Timedelta("0.2s")).isoformat()},
                                    {"client_id": "BTC/USDT:entry:1", "at": (t0 + pd.Timedelta("0.5s")).isoformat()}]})
    row = order_flow(orders, fills, events).iloc[0]
    assert row["send_latency"] == pd.Timedelta("0.2s") and row["ack_latency"] == pd.Timedelta("0.3s")
    assert row["partly_filled"] == t0 + pd.Timedelta("1.5s") and row["filled"] == t0 + pd.Timedelta("2.5s")
    assert row["fill_latency"] == pd.Timedelta("1s") and row["total_latency"] == pd.Timedelta("2.5s")


def test_runner_state_keeps_the_profile_and_the_counters(store, ran):
    profile = session_profile(store, ran.id)
    assert profile is not None and profile.bars == 1440 and profile.busy > 0
    counts = session_counts(store, ran.id)
    assert counts is not None
    summary = why_summary(counts)
    assert summary["blocked"]["trading_hours"] == int((session_order_flow(store, ran.id)["rule"]
                                                       == "trading_hours").sum())
    assert profile.hist["bar_to_order"].n == summary["orders"] > 0
    assert summary["fills"] == len(store.fills(ran.id))


def test_log_filters_and_exports(store, ran):
    log = session_log(store, ran.id)
    assert set(log["level"]) >= {"info", "warning"} and log["time"].is_monotonic_increasing
    rejected = session_log(store, ran.id, kind="order_rejected")
    assert len(rejected) > 0 and (rejected["level"] == "warning").all()
    assert len(session_log(store, ran.id, level="warning")) >= len(rejected)
    assert (session_log(store, ran.id, text="TRADING_HOURS")["kind"] == "order_rejected").all()
    middle = log["time"].iloc[len(log) // 2]
    assert (session_log(store, ran.id, since=middle)["time"] >= middle).all()
    assert (session_log(store, ran.id, until=middle)["time"] < middle).all()
    assert level_of("state", {"to": "failed"}) == "error" and level_of("error") == "error"
    back = pd.read_csv(io.StringIO(export(rejected, "csv")))
    assert back["kind"].tolist() == rejected["kind"].tolist()
    assert json.loads(back["data"][0])["rule"] == "trading_hours"
    assert json.loads(export(rejected, "json"))[0]["data"]["rule"] == "trading_hours"
    with pytest.raises(ValueError, match="level 'loud'; use one of info, warning, error"):
        filter_log(log, level="loud")
    with pytest.raises(ValueError, match="since: 'yesterday-ish' is not a time"):
        filter_log(log, since="yesterday-ish")


def test_cli_log_orders_and_why(capsys, store, store_url, ran):
    def cli(*argv: str) -> str:
        assert main(["session", *argv, "--db", store_url]) == 0
        return capsys.readouterr().out

    rows = json.loads(cli("log", ran.id, "--kind", "order_rejected", "--format", "json"))
    assert rows and {r["kind"] for r in rows} == {"order_rejected"}
    csv = pd.read_csv(io.StringIO(cli("log", ran.id, "--level", "warning", "--grep", "trading_hours",
                                      "--format", "csv")))
    assert len(csv) == len(rows) and list(csv.columns) == ["time", "level", "kind", "actor", "message", "data", "id"]
    assert "no events match" in cli("log", ran.id, "--grep", "no-such-text")
    assert "total_latency" in cli("orders", ran.id)
    why = json.loads(cli("why", ran.id, "--json"))
    assert why["blocked"]["trading_hours"] == len(rows) and why["orders"] > 0
    assert "blocked: trading_hours" in cli("why", ran.id)


def test_profile_samples_cpu_and_memory_on_its_clock_and_survives_a_snapshot():
    from datetime import datetime, timezone

    from workbench.diagnostics.profiler import Profile

    p = Profile()
    now = datetime(2024, 1, 8, tzinfo=timezone.utc)
    assert not p.sample(now, mono=100.0, cpu=10.0)  # the baseline
    p.busy = 1.0  # a second stepping bars
    assert not p.sample(now, mono=104.0, cpu=11.0)  # less than SAMPLE_SECONDS later
    p.lag(0.02)
    p.lag(-0.001)  # a poll that woke early is no lag
    assert p.sample(now, mono=110.0, cpu=15.0)
    when, cpu_pct, rss, session_pct, lag = p.samples[0]
    assert cpu_pct == pytest.approx(50.0) and session_pct == pytest.approx(10.0) and lag == 0.0 and rss > 10
    assert p.hist["lag"].counts[:4] == [1, 0, 0, 1]  # 0 s <= 1 ms, 20 ms <= 50 ms
    back = Profile.restore(p.snapshot())
    assert back.snapshot() == p.snapshot() and back.samples_frame()["time"][0] == now


def test_live_orders_show_when_they_were_sent_and_acknowledged(lx, store):
    """A live session on the loopback exchange (real ccxt over HTTP): every order sent has its sent and
    acknowledged times (wall clock) from the exchange broker's step events."""
    from tests.kit import until
    from tests.live_kit import _start

    async def go():
        s, client = await _start(lx, store)
        try:
            await until(lambda: len(store.fills(s.id)) >= 1)
            s.stop()
            await asyncio.wait_for(s.wait(), 10)
        finally:
            await client.close()
        return s

    s = asyncio.run(go())
    flow = session_order_flow(store, s.id)
    sent = flow[flow["sent"].notna()]
    assert len(sent) == len(lx.exchange_orders()) >= 2  # the entry and the stop's flattening sell
    assert sent["acknowledged"].notna().all() and (sent["ack_latency"] >= pd.Timedelta(0)).all()
    assert (sent["ack_latency"] < pd.Timedelta(seconds=5)).all() and (sent["status"] == "filled").all()
    assert sent["filled"].notna().all()
