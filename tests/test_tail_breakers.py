"""Tail-risk breakers (rule 10): realized volatility and VaR over a rolling window, REDUCING then HALTED."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.trader import Trader

ALWAYS_IN = {"window": 1, "entry_threshold": -1.0, "exit_threshold": -1.0}  # enter at once, exit only on stops


def crash(n: int = 400, at: int = 300) -> dict[str, pd.DataFrame]:
    """Calm 1-minute bars, then a crash from bar ``at``: -2 %, then -4 % a bar for four bars."""
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.0003, n)
    r[at] = -0.02
    r[at + 1: at + 5] = -0.04
    close = 100 * np.cumprod(1 + r)
    open_ = np.r_[100.0, close[:-1]]
    idx = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC")
    return {"BTC/USDT": pd.DataFrame({"open": open_, "high": np.maximum(open_, close),
                                      "low": np.minimum(open_, close), "close": close, "volume": 1e6}, index=idx)}


def config(**breaker):
    return make_config(kind="paper", strategy="momentum", params=ALWAYS_IN, symbols=["BTC/USDT"],
                       initial_balance=10_000, sizing={"mode": "percent_equity", "value": 0.9},
                       commission={"taker": 0.0}, slippage={"bps": 0},
                       risk={"circuit_breaker": {"action": "reducing", "tail_window": 60, **breaker}})


def session_trips(cfg, frames) -> list[dict]:
    trader = Trader(cfg, PaperBroker(cfg))
    trips = []
    for bars in ReplayFeed(frames).bars():
        trader.step(bars)
        trips += [e["data"] for e in trader.risk.drain_events() if e["kind"] == "circuit_breaker_tripped"]
    return trips


@pytest.mark.parametrize("limit", [{"max_volatility": 0.12}, {"max_var": 0.5}])
def test_a_crash_trips_reducing_then_halted_in_the_backtest_and_the_session_alike(limit):
    frames = crash()
    cfg = config(**limit)
    bt = run_backtest(cfg, bars=frames).breaker
    reason = "volatility" if "max_volatility" in limit else "value_at_risk"
    assert bt is not None and (bt["reason"], bt["state"]) == (reason, "reducing")
    assert bt["escalated"]["state"] == "halted" and bt["escalated"]["time"] > bt["time"]
    index = frames["BTC/USDT"].index
    assert index[300] <= bt["time"] < index[305]  # the crash, not the calm before it
    trips = session_trips(cfg, frames)
    assert [(t["reason"], t["state"]) for t in trips] == [(reason, "reducing"), (reason, "halted")]
    assert [pd.Timestamp(t["time"]) for t in trips] == [bt["time"], bt["escalated"]["time"]]
    assert trips[0]["value"] > limit[next(iter(limit))] and trips[1]["value"] > 2 * limit[next(iter(limit))]


def test_calm_markets_do_not_trip_and_the_window_must_fill_first():
    frames = crash()
    calm = {"BTC/USDT": frames["BTC/USDT"].iloc[:299]}
    assert run_backtest(config(max_volatility=0.12), bars=calm).breaker is None
    early = {"BTC/USDT": crash(n=120, at=20)["BTC/USDT"]}  # the crash inside the first window: measured once full
    bt = run_backtest(config(max_volatility=0.12), bars=early).breaker
    assert bt is not None and bt["time"] == early["BTC/USDT"].index[59]



def gapped() -> dict[str, pd.DataFrame]:
    """Calm 1-minute bars with two feed gaps: bar 100 opens 4 % below the last close before it, bar 150 7 %."""
    rng = np.random.default_rng(7)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.0003, 200))
    close[100:] *= 0.96
    close[150:] *= 0.93
    open_ = np.r_[100.0, close[:-1]]
    open_[100], open_[150] = close[98] * 0.96, close[148] * 0.93
    idx = pd.date_range("2024-03-01", periods=200, freq="1min", tz="UTC")
    df = pd.DataFrame({"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
                       "close": close, "volume": 1e6}, index=idx)
    return {"BTC/USDT": df.drop(idx[[99, 149]])}  # the bar before each drop is missing: a feed gap


def test_a_gap_down_trips_the_gap_breaker_and_a_bigger_one_halts_alike_in_backtest_and_session():
    frames = gapped()
    idx = pd.date_range("2024-03-01", periods=200, freq="1min", tz="UTC")
    cfg = config(max_gap=0.03)
    bt = run_backtest(cfg, bars=frames).breaker
    assert (bt["reason"], bt["state"], bt["time"]) == ("gap", "reducing", idx[100])
    assert (bt["escalated"]["reason"], bt["escalated"]["state"], bt["escalated"]["time"]) == ("gap", "halted",
                                                                                             idx[150])
    trips = session_trips(cfg, frames)
    assert [(t["reason"], t["state"], pd.Timestamp(t["time"])) for t in trips] == [
        ("gap", "reducing", idx[100]), ("gap", "halted", idx[150])]
    assert trips[0]["value"] == pytest.approx(0.04) and trips[0]["symbol"] == "BTC/USDT"
    assert run_backtest(config(max_gap=0.08), bars=frames).breaker is None  # 7 % < 8 %: no trip


def test_a_gap_against_a_short_an_up_gap_trips_the_gap_breaker_alike_in_backtest_and_session():
    """One rule both sides use: the gap against the position (up for a short) trips; a gap in its favour not."""
    down = gapped()["BTC/USDT"]
    up = 1e4 / down[["open", "low", "high", "close"]]  # mirrored: each gap down 4 % (7 %) is one up 1/0.96 (1/0.93)
    up.columns = ["open", "high", "low", "close"]
    up["volume"] = down["volume"]
    idx = pd.date_range("2024-03-01", periods=200, freq="1min", tz="UTC")
    always_short = {"window": 1, "entry_threshold": 1.0, "exit_threshold": 1.0}  # long exit (= short entry) always
    cfg = config(max_gap=0.03).replace(direction="short", params=always_short)
    bt = run_backtest(cfg, bars={"BTC/USDT": up}).breaker
    assert (bt["reason"], bt["state"], bt["time"]) == ("gap", "reducing", idx[100])
    assert (bt["escalated"]["state"], bt["escalated"]["time"]) == ("halted", idx[150])
    trips = session_trips(cfg, {"BTC/USDT": up})
    assert [(t["reason"], t["state"], pd.Timestamp(t["time"])) for t in trips] == [
        ("gap", "reducing", idx[100]), ("gap", "halted", idx[150])]
    assert trips[0]["value"] == pytest.approx(1 / 0.96 - 1)  # open / previous close - 1
    assert run_backtest(cfg, bars={"BTC/USDT": down}).breaker is None  # down-gaps are a short's gain
    assert session_trips(cfg, {"BTC/USDT": down}) == []
