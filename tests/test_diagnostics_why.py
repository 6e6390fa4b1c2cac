"""Why no trades: the real Trader counts signals, orders, fills and blocked signals by rule, per hour, and
the counts survive its snapshot (the runner state)."""
from __future__ import annotations

import pandas as pd

from workbench.config import make_config
from workbench.data import sample_bars
from workbench.diagnostics.why import WhyCounts, explain, why_frame, why_summary
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.trader import Trader

BTC = "BTC/USDT"


def config(**kw):
    base = dict(kind="paper", strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=[BTC],
                initial_balance=10_000, sizing={"mode": "fixed_amount", "value": 2_000})
    return make_config(**{**base, **kw})


def run(trader: Trader, frame: pd.DataFrame, **step) -> None:
    for bars in ReplayFeed({BTC: frame}).bars():
        trader.step(bars, **step)


def test_entries_blocked_by_trading_hours_are_counted_per_hour():
    cfg = config(time={"trading_hours": {"start": "10:00", "end": "12:00"}})
    trader = Trader(cfg, PaperBroker(cfg))

    def always_enter(bars, t_ns):
        trader.pending[BTC] = (True, False)
    trader.signals = always_enter
    run(trader, sample_bars(BTC, days=1).iloc[:660])  # 00:00 .. 10:59
    # the signal after bar 0 acts from bar 1 (00:01); bars 00:01..09:59 are outside the hours: 599 blocked;
    # the 10:00 bar enters (order, fill) and the position is then held (a held symbol's entry is no signal)
    frame = why_frame(trader.why)
    assert list(frame.columns) == ["signal", "order", "fill", "blocked:trading_hours"]
    assert frame["blocked:trading_hours"].tolist() == [59] + [60] * 9 + [0]
    assert frame.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert frame.loc["2024-01-01 10:00"].tolist() == [1, 1, 1, 0]
    summary = why_summary(trader.why)
    assert summary == {"signals": 600, "orders": 1, "fills": 1, "blocked": {"trading_hours": 599}}
    assert explain(summary) == "600 signals, 1 orders placed, 1 fills; blocked: trading_hours 599"


def test_real_strategy_counts_match_the_risk_engines_rejections_and_survive_a_restore():
    cfg = config(time={"trading_hours": {"start": "08:00", "end": "16:00"}})
    trader = Trader(cfg, PaperBroker(cfg))
    fills: list = []
    trader.on_fill = lambda f, o: fills.append(f)
    frame = sample_bars(BTC, days=2)
    run(trader, frame.iloc[:1500])
    snap = trader.snapshot()
    run(trader, frame.iloc[1500:])
    rejected = [e for e in trader.risk.drain_events() if e["kind"] == "order_rejected"]
    summary = why_summary(trader.why)
    assert summary["blocked"]["trading_hours"] == sum(e["data"]["rule"] == "trading_hours" for e in rejected) > 0
    assert summary["fills"] == len(fills) and summary["orders"] > 0
    assert summary["signals"] == summary["orders"] + sum(summary["blocked"].values())
    # a resumed trader (restored from the runner state) carries the counts on
    again = Trader(cfg, PaperBroker(cfg))
    again.restore(snap, trader.strategy)
    assert again.why.counts == WhyCounts.restore(snap["why"]).counts
    run(again, frame.iloc[1500:])
    assert again.why.counts == trader.why.counts


def test_entries_off_and_an_empty_count():
    cfg = config()
    trader = Trader(cfg, PaperBroker(cfg))
    trader.signals = lambda bars, t_ns: trader.pending.__setitem__(BTC, (True, False))
    run(trader, sample_bars(BTC, days=1).iloc[:11], entries=False)
    assert why_summary(trader.why) == {"signals": 10, "orders": 0, "fills": 0, "blocked": {"entries_off": 10}}
    assert why_frame(None).empty and why_summary([])["signals"] == 0
    assert "no signal" in explain(why_summary(None))


def test_a_session_handed_back_and_resumed_counts_like_an_uninterrupted_run(store):
    """The counters are in the runner state: a run handed back mid-way and resumed from its checkpoint ends
    with the same counts (and profile bar count) as one that ran straight through."""
    import asyncio

    from tests.kit import bars_for, paper_config, until
    from workbench.diagnostics.profiler import session_profile
    from workbench.diagnostics.why import session_counts
    from workbench.engine.session import Session

    cfg = paper_config(time={"trading_hours": {"start": "06:00", "end": "20:00"}})
    reference = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    assert asyncio.run(reference.run()).value == "completed"

    async def first_part() -> str:
        s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), 30_000.0), poll_interval=0.02)  # ~2 ms a bar
        s.start()
        await until(lambda: s.bars_seen >= 400)
        s.hand_back("test: the host stops")
        assert (await s.wait()).value == "orphaned"
        return s.id

    sid = asyncio.run(first_part())
    stopped_at = store.load_runner_state(sid)["bars_seen"]
    assert 400 <= stopped_at < 1440
    resumed = Session.resume(sid, store, ReplayFeed(bars_for(cfg), None))
    assert asyncio.run(resumed.run()).value == "completed"
    got, want = session_counts(store, sid), session_counts(store, reference.id)
    assert got is not None and want is not None and got.counts == want.counts
    assert why_summary(got)["blocked"]["trading_hours"] > 0
    profile = session_profile(store, sid)
    assert profile is not None and profile.bars == 1440
