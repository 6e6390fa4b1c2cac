"""Paper sessions: replay feed, parity with the backtest, controls and commands, failures."""
from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store

STOPS = {"stop_loss": 0.006, "take_profit": 0.01, "trailing_stop": 0.004}


def bars_for(symbols, days=2):
    return {s: sample_bars(s, days=days) for s in symbols}


@pytest.fixture
def store(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'wb.db'}")
    yield st
    st.close()


def config(strategy, symbols, **kw):
    params = {"sma_cross": {"fast": 5, "slow": 20}, "momentum": {"window": 20, "entry_threshold": 0.002}}[strategy]
    return make_config(kind="paper", strategy=strategy, params=params, symbols=symbols, risk=STOPS,
                       sizing={"mode": "percent_equity", "value": 0.4}, **kw)


async def collect(feed):
    return [b async for b in feed]


# ---- feed --------------------------------------------------------------------------------
def test_replay_feed_orders_times_and_skips_missing_bars():
    a = sample_bars("BTC/USDT", days=1).iloc[:50]
    b = sample_bars("ETH/USDT", days=1).iloc[10:60:2]
    out = asyncio.run(collect(ReplayFeed({"BTC/USDT": a, "ETH/USDT": b}, None, yield_every=7)))
    times = [next(iter(d.values())).time for d in out]
    assert times == sorted(times) and len(times) == len(set(times)) == 55
    assert sum("ETH/USDT" in d for d in out) == len(b)
    first = out[0]["BTC/USDT"]
    assert (first.open, first.close, first.time) == (a.open.iloc[0], a.close.iloc[0], a.index[0].to_pydatetime())
    assert all(len({bar.time for bar in d.values()}) == 1 for d in out)


def test_replay_feed_start_after_and_speed():
    a = sample_bars("BTC/USDT", days=1).iloc[:20]
    out = asyncio.run(collect(ReplayFeed({"BTC/USDT": a}, None, start_after=a.index[14])))
    assert [d["BTC/USDT"].time for d in out] == list(a.index[15:])
    # 60 s between bars at 600x = 0.1 s per bar
    loop_t = asyncio.run(_timed(ReplayFeed({"BTC/USDT": a.iloc[:4]}, 600.0)))
    assert 0.25 <= loop_t < 1.0


async def _timed(feed):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await collect(feed)
    return loop.time() - t0


def test_fast_replay_yields_to_the_loop():
    a = sample_bars("BTC/USDT", days=1).iloc[:1000]
    ticks = []

    async def main():
        async def ticker():
            while True:
                ticks.append(1)
                await asyncio.sleep(0)
        t = asyncio.create_task(ticker())
        await collect(ReplayFeed({"BTC/USDT": a}, None, yield_every=100))
        t.cancel()
    asyncio.run(main())
    assert len(ticks) >= 9


# ---- parity -----------------------------------------------------------------------------------
def _rows(trades):
    df = pd.DataFrame(trades).sort_values(["symbol", "entry_time"]).reset_index(drop=True)
    return df


@pytest.mark.parametrize("strategy", ["sma_cross", "momentum"])
@pytest.mark.parametrize("symbols", [["BTC/USDT"], ["BTC/USDT", "ETH/USDT"]])
def test_paper_session_reproduces_the_backtest(store, strategy, symbols):
    cfg = config(strategy, symbols)
    bars = bars_for(symbols)
    expected = _rows(run_backtest(cfg, bars).trades)
    session = Session(cfg, store, feed=ReplayFeed(bars, None), checkpoint_interval=1000)
    assert asyncio.run(session.run()).value == "completed", store.events(session.id).message.tolist()
    got = _rows(session.portfolio.trade_log())
    assert len(expected) > 20 and len(got) == len(expected)
    assert "signal" in set(got.exit_reason.dropna())
    assert {"stop_loss", "trailing_stop", "take_profit"} & set(got.exit_reason.dropna())
    for col in ("symbol", "entry_time", "exit_reason", "status"):
        assert list(got[col]) == list(expected[col]), col
    assert list(pd.to_datetime(got.exit_time, utc=True)) == list(pd.to_datetime(expected.exit_time, utc=True))
    for col in ("quantity", "entry_price", "exit_price", "pnl"):
        for g, e in zip(got[col], expected[col]):
            assert g == pytest.approx(e, rel=1e-9, abs=1e-9), col
    # the store has the outcome
    row = store.get_session(session.id)
    assert row["final_equity"] == pytest.approx(session.portfolio.equity)
    assert len(store.trades(session.id)) == len(expected)
    assert row["metrics"]
    fills = store.fills(session.id)
    assert fills.fill_id.is_unique
    assert len(fills) == 2 * (expected.status == "closed").sum() + (expected.status == "open").sum()
    n_bars = len(pd.DatetimeIndex(sorted(set().union(*(b.index for b in bars.values())))))
    eq = store.equity(session.id)
    assert len(eq) == n_bars and eq.index.is_unique


# ---- controls ------------------------------------------------------------------------------------
def test_controls_by_method_and_by_command(store):
    cfg = config("sma_cross", ["BTC/USDT", "ETH/USDT"])
    bars = bars_for(cfg.symbols, days=1)
    session = Session(cfg, store, feed=ReplayFeed(bars, 200.0), poll_interval=0.05)  # ~0.3 s per bar

    async def main():
        session.start()
        await asyncio.sleep(0.2)
        assert session.state.value == "running"
        assert session.pause() == "paused"
        with pytest.raises(ValueError):
            session.pause()
        ids = {
            "resume": store.send_command(session.id, "resume"),
            "bogus": store.send_command(session.id, "explode"),
            "bad_params": store.send_command(session.id, "set_params", {"params": {"fast": 50}}),
            "params": store.send_command(session.id, "set_params", {"params": {"fast": 4}}),
            "size": store.send_command(session.id, "scale_sizing", {"factor": 0.5}),
            "stops": store.send_command(session.id, "tighten_stops", {"delta": 0.002}),
            "disable": store.send_command(session.id, "disable_symbol", {"symbol": "ETH/USDT"}),
            "bad_symbol": store.send_command(session.id, "disable_symbol", {"symbol": "DOGE/USDT"}),
            "override": store.send_command(session.id, "risk_override",
                                           {"changes": {"max_position": 500}, "reason": "test", "expires_minutes": 30}),
            "trip": store.send_command(session.id, "trip_breaker", {"reason": "test"}),
            "reset": store.send_command(session.id, "reset_breaker", {"reason": "ok"}),
        }
        await asyncio.sleep(0.3)  # within a poll interval or two
        status = {k: store.get_command(v)["status"] for k, v in ids.items()}
        session.close_all()
        stop_id = store.send_command(session.id, "stop")
        final = await asyncio.wait_for(session.wait(), 10)
        return status, stop_id, final

    status, stop_id, final = asyncio.run(main())
    assert status == {"resume": "applied", "bogus": "rejected", "bad_params": "rejected", "params": "applied",
                      "size": "applied", "stops": "applied", "disable": "applied", "bad_symbol": "rejected",
                      "override": "applied", "trip": "applied", "reset": "applied"}
    assert final.value == "stopped" and store.get_command(stop_id)["status"] == "applied"
    assert session.params["fast"] == 4 and session.risk.size_factor == 0.5 and "ETH/USDT" in session.risk.disabled
    assert not session._open_symbols()
    kinds = set(store.events(session.id).kind)
    assert {"state", "command", "control", "sizing_scaled", "stops_tightened", "symbol_disabled", "risk_override",
            "circuit_breaker_tripped", "circuit_breaker_reset"} <= kinds
    states = [m for k, m in zip(store.events(session.id).kind, store.events(session.id).message) if k == "state"]
    assert any(m.startswith("paused") for m in states) and any(m.startswith("stopping") for m in states)


def test_pause_blocks_entries_but_not_exits(store):
    cfg = config("sma_cross", ["BTC/USDT"])
    bars = bars_for(cfg.symbols, days=1)
    reference = Session(cfg, store, feed=ReplayFeed(bars, None))
    asyncio.run(reference.run())
    first_entry = reference.portfolio.trade_log()[0]["entry_time"]
    session = Session(cfg, store, feed=ReplayFeed(bars, None))

    async def main():
        session.start()
        session.pause()  # before the first bar
        return await session.wait()
    assert asyncio.run(main()).value == "completed"
    assert session.portfolio.trade_log() == [] and first_entry is not None


def test_kill_leaves_positions_and_says_so(store):
    cfg = config("sma_cross", ["BTC/USDT"])
    bars = bars_for(cfg.symbols, days=1)
    session = Session(cfg, store, feed=ReplayFeed(bars, 2000.0), poll_interval=0.05)

    async def main():
        session.start()
        while session.portfolio.position("BTC/USDT") is None:
            await asyncio.sleep(0.01)
        store.send_command(session.id, "kill", {"reason": "test"})
        return await asyncio.wait_for(session.wait(), 5)
    assert asyncio.run(main()).value == "killed"
    last = store.events(session.id).iloc[-1]
    assert last.kind == "state" and "positions left open" in last.message and "BTC/USDT" in last.message
    assert store.get_session(session.id)["state"] == "killed"


def test_errors_inside_the_loop_fail_the_session(store):
    cfg = config("sma_cross", ["BTC/USDT"])

    async def broken_feed():
        for d in [b async for b in ReplayFeed(bars_for(cfg.symbols, days=1), None)][:30]:
            yield d
        raise RuntimeError("exchange went away")

    session = Session(cfg, store, feed=broken_feed())
    assert asyncio.run(session.run()).value == "failed"
    ev = store.events(session.id)
    assert "exchange went away" in " ".join(ev.message) and store.get_session(session.id)["state"] == "failed"


def test_restart_is_a_new_run_and_final_sessions_do_not_resume(store):
    cfg = config("sma_cross", ["BTC/USDT"])
    bars = bars_for(cfg.symbols, days=1)
    first = Session(cfg, store, feed=ReplayFeed(bars, None))
    asyncio.run(first.run())
    with pytest.raises(ValueError, match="restart"):
        Session.resume(first.id, store, ReplayFeed(bars, None))
    second = Session.restart(first.id, store, ReplayFeed(bars, None))
    assert asyncio.run(second.run()).value == "completed"
    row = store.get_session(second.id)
    assert row["parent_id"] == first.id and row["run_no"] == 2
    assert second.portfolio.trade_log() == first.portfolio.trade_log()
