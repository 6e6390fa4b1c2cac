"""Automated scaling (docs/execution-semantics.md rule 11): the config block and its errors, the one state
update (step up on the window's numbers, step down or halt on drawdown, bounded at 1.0, frozen by an
operator), backtest/paper parity with scaling on (trades and steps), each step's event with its numbers
in a real session's store, and a session handed back mid-way that resumes with its scale."""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kit import bars_for, paper_config, until
from tests.test_execution_parity import canonical, markets
from workbench.backtest import run_backtest
from workbench.config import ConfigError, Scaling, SessionConfig, make_config
from workbench.domain import TRADE_COLUMNS
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.engine.trader import Trader
from workbench.execution.scaling import P_HALT, P_ON, Scaler
from workbench.execution.simulate import kernel_params

T0 = 1_704_067_200 * 10**9  # 2024-01-01 in ns
MIN = 60 * 10**9


# ---- the config block ---------------------------------------------------------------------------
@pytest.mark.parametrize(("block", "field", "words"), [
    ({"after_trades": None}, "scaling", "after_trades and/or after_days"),
    ({"step_mode": "factor", "step": 0.5}, "scaling", "give step > 1"),
    ({"step": 2}, "scaling", "give step <= 1"),
    ({"start": 0.25, "floor": 0.5}, "scaling", "floor (0.5) is above start"),
    ({"start": 1.5}, "scaling.start", "less than or equal to 1"),
    ({"down_drawdown": 1.2}, "scaling.down_drawdown", "less than 1"),
    ({"on_drawdown": "panic"}, "scaling.on_drawdown", "'step_down' or 'halt'"),
    ({"strat": 0.5}, "scaling.strat", "unknown setting"),
])
def test_a_bad_scaling_block_is_refused_naming_the_field_and_the_fix(block, field, words):
    with pytest.raises(ConfigError) as err:
        make_config(scaling=block)
    assert words in err.value.by_field()[field]


def test_scaling_is_off_by_default_and_round_trips_through_json():
    plain = make_config()
    assert plain.scaling is None and kernel_params(plain).scaling[P_ON] == 0.0
    on = make_config(scaling={"start": 0.5, "after_days": 2, "after_trades": None, "on_drawdown": "halt"})
    assert SessionConfig.from_json(on.to_json()) == on and kernel_params(on).scaling[P_HALT] == 1.0


# ---- the state update ---------------------------------------------------------------------------
def _trade(sc: Scaler, ret: float, fee: float = 0.0) -> None:
    """A closed round trip of 100 quote at a return of ``ret`` before fees."""
    sc.on_fill("BTC/USDT", True, 100.0, fee, 1.0)
    sc.on_fill("BTC/USDT", False, 100.0 * (1.0 + ret), fee, 0.0)


def test_a_step_up_waits_for_its_trades_and_thresholds_and_carries_the_numbers_behind_it():
    sc = Scaler(Scaling(start=0.25, step=0.25, after_trades=2, min_win_rate=0.5, min_sharpe=0.1))
    _trade(sc, 0.02)
    assert sc.on_bar(T0, 1000.0) is None and sc.scale == 0.25  # one trade of two
    _trade(sc, -0.03)
    assert sc.on_bar(T0 + MIN, 1000.0) is None  # win rate 0.5 but Sharpe negative
    _trade(sc, 0.04)  # returns 0.02, -0.03, 0.04: mean 0.01, sample sd 0.0361
    rec = sc.on_bar(T0 + 2 * MIN, 1010.0)
    assert rec is not None and sc.scale == 0.5
    assert rec["step"] == "up" and rec["previous"] == 0.25 and rec["scale"] == 0.5 and rec["trades"] == 3
    assert rec["win_rate"] == pytest.approx(2 / 3)
    assert rec["sharpe"] == pytest.approx(0.01 / np.std([0.02, -0.03, 0.04], ddof=1))
    assert rec["drawdown"] == 0.0 and rec["max_drawdown"] == 0.0
    assert sc.on_bar(T0 + 3 * MIN, 1010.0) is None  # a step starts a new window: no trades in it yet


def test_fees_count_in_a_trades_return():
    sc = Scaler(Scaling(start=0.25, after_trades=1, min_win_rate=1.0))
    _trade(sc, 0.001, fee=0.2)  # +0.1 before fees, -0.3 after: a loss
    assert sc.on_bar(T0, 1000.0) is None


def test_a_drawdown_steps_down_to_the_floor_and_halt_stops_entries_until_an_operator_sets_a_scale():
    sc = Scaler(Scaling(start=0.5, step=2, step_mode="factor", after_trades=1, down_drawdown=0.05, floor=0.2))
    _trade(sc, 0.01)
    assert sc.on_bar(T0, 1000.0)["scale"] == 1.0  # x2
    _trade(sc, 0.01)
    assert sc.on_bar(T0 + MIN, 1100.0) is None  # bounded at 1.0
    rec = sc.on_bar(T0 + 2 * MIN, 1040.0)  # 5.45 % below the window's peak of 1100
    assert rec["step"] == "down" and rec["scale"] == 0.5 and rec["drawdown"] == pytest.approx(1 - 1040 / 1100)
    assert sc.on_bar(T0 + 3 * MIN, 1000.0) is None  # 3.8 % below the new window's peak (1040)
    assert sc.on_bar(T0 + 4 * MIN, 980.0)["scale"] == 0.25
    assert sc.on_bar(T0 + 5 * MIN, 920.0)["scale"] == 0.2  # not below the floor
    assert sc.on_bar(T0 + 6 * MIN, 800.0) is None and sc.scale == 0.2  # at the floor: no step

    halt = Scaler(Scaling(start=0.5, after_trades=1, down_drawdown=0.05, on_drawdown="halt"))
    halt.on_bar(T0, 1000.0)
    assert halt.on_bar(T0 + MIN, 940.0)["step"] == "halt" and halt.scale == 0.0
    _trade(halt, 0.05)
    assert halt.on_bar(T0 + 2 * MIN, 2000.0) is None and halt.scale == 0.0
    halt.set(scale=0.25)
    assert halt.scale == 0.25


def test_a_frozen_scale_does_not_move_until_released():
    sc = Scaler(Scaling(start=0.25, after_trades=1, down_drawdown=0.05))
    sc.set(frozen=True)
    _trade(sc, 0.05)
    assert sc.on_bar(T0, 1000.0) is None and sc.on_bar(T0 + MIN, 900.0) is None and sc.scale == 0.25
    sc.set(frozen=False)
    assert sc.on_bar(T0 + 2 * MIN, 901.0) is None  # in a drawdown past down_drawdown: no step up (at the floor)
    rec = sc.on_bar(T0 + 3 * MIN, 1000.0)  # recovered: the window kept its trade and its max drawdown
    assert rec["step"] == "up" and rec["trades"] == 1 and rec["max_drawdown"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"scale must be in \[0, 1\]"):
        sc.set(scale=1.5)


def test_a_shorts_return_is_its_net_entry_proceeds_less_the_cover_over_its_entry_cost():
    sc = Scaler(Scaling(start=0.25, after_trades=2, min_win_rate=None, min_sharpe=None))
    sc.on_fill("BTC/USDT", False, 100.0, 0.1, -1.0)  # sell 1 at 100: a short
    sc.on_fill("BTC/USDT", True, 95.0, 0.1, 0.0)  # covered at 95
    sc.on_fill("ETH/USDT", False, 50.0, 0.05, -2.0)  # a short filled in two parts, covered in two
    sc.on_fill("ETH/USDT", False, 50.0, 0.05, -4.0)
    back = Scaler(Scaling(start=0.25, after_trades=2, min_win_rate=None, min_sharpe=None))
    back.restore(json.loads(json.dumps(sc.snapshot())))  # a checkpoint with the short open
    for s in (sc, back):
        s.on_fill("ETH/USDT", True, 60.0, 0.06, -2.0)
        s.on_fill("ETH/USDT", True, 40.0, 0.04, 0.0)
    first, second = (100.0 - 0.1 - 95.1) / 100.1, (99.9 - 100.1) / 100.1
    for s in (sc, back):
        rec = s.on_bar(T0, 1000.0)
        assert rec["trades"] == 2 and rec["win_rate"] == 0.5
        assert rec["sharpe"] == pytest.approx(np.mean([first, second]) / np.std([first, second], ddof=1))


def test_the_state_survives_a_json_checkpoint_with_a_position_open():
    sc = Scaler(Scaling(start=0.25, after_trades=2))
    _trade(sc, 0.02)
    sc.on_fill("ETH/USDT", True, 50.0, 0.05, 1.0)
    sc.on_bar(T0, 1000.0)
    back = Scaler(Scaling(start=0.25, after_trades=2))
    back.restore(json.loads(json.dumps(sc.snapshot())))
    sc.on_fill("ETH/USDT", False, 55.0, 0.05, 0.0)
    back.on_fill("ETH/USDT", False, 55.0, 0.05, 0.0)
    assert sc.on_bar(T0 + MIN, 1001.0) == back.on_bar(T0 + MIN, 1001.0) != None  # noqa: E711
    assert sc.snapshot() == back.snapshot()


# ---- parity: backtest == paper, trades and steps ------------------------------------------------
SCALING = st.fixed_dictionaries({
    "start": st.sampled_from([0.25, 0.5]),
    "step": st.sampled_from([0.25, 0.5]),
    "after_trades": st.sampled_from([1, 2]),
    "min_win_rate": st.sampled_from([None, 0.4]),
    "min_sharpe": st.sampled_from([None, 0.0]),
    "max_drawdown": st.sampled_from([None, 0.01]),
    "down_drawdown": st.sampled_from([None, 0.002, 0.005]),
    "on_drawdown": st.sampled_from(["step_down", "step_down", "halt"]),
})


def session_run(config: SessionConfig, frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[dict]]:
    """The shipped Trader with the paper broker over ``frames``: its trades and its scaling events' data."""
    trader = Trader(config, PaperBroker(config))
    for bars in ReplayFeed({s: frames[s] for s in config.symbols}).bars():
        trader.step(bars)
    trades = pd.DataFrame(trader.portfolio.trade_log(include_open=True), columns=list(TRADE_COLUMNS))
    return trades, [e["data"] for e in trader.risk.drain_events() if e["kind"] == "scaling"]


def assert_same_steps(session: list[dict], backtest: list[dict]) -> None:
    assert [(s["time"], s["step"], s["previous"], s["scale"], s["trades"]) for s in session] == [
        (b["time"].isoformat(), b["step"], b["previous"], b["scale"], b["trades"]) for b in backtest]
    for s, b in zip(session, backtest):
        for key in ("drawdown", "win_rate", "sharpe", "max_drawdown"):
            assert (s[key] is None) == (b[key] is None) and (s[key] is None or math.isclose(
                s[key], b[key], rel_tol=1e-9, abs_tol=1e-12) or s[key] == b[key]), (key, s, b)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(markets(), SCALING, st.sampled_from(["long", "short", "both"]))
def test_backtest_and_session_scale_alike(market: tuple[SessionConfig, dict[str, pd.DataFrame]], block: dict,
                                          direction: str) -> None:
    config, frames = market
    assert_scale_alike(config.replace(scaling=block, direction=direction), frames)


def assert_scale_alike(config: SessionConfig, frames: dict[str, pd.DataFrame]) -> Any:
    """The backtest and the session make the same trades and scaling steps; returns the backtest's result."""
    result = run_backtest(config, bars=frames)
    trades, steps = session_run(config, frames)
    expected, got = canonical(result.trades), canonical(trades)
    for col in ("symbol", "entry_time", "exit_time", "exit_reason"):
        assert list(got[col]) == list(expected[col])
    np.testing.assert_allclose(got["quantity"].to_numpy(float), expected["quantity"].to_numpy(float), rtol=1e-9)
    assert_same_steps(steps, result.scaling)
    return result


@pytest.mark.parametrize("direction", ["short", "both"])
def test_scaled_shorts_step_alike_in_backtest_and_session(direction: str) -> None:
    """Scaling with shorts (direction short or both): the same steps and trades at both speeds."""
    config = paper_config(symbols=["BTC/USDT", "ETH/USDT"], risk={"stop_loss": 0.006}, direction=direction,
                          scaling={"start": 0.25, "after_trades": 2, "down_drawdown": 0.003})
    result = assert_scale_alike(config, bars_for(config))
    assert {s["step"] for s in result.scaling} == {"up", "down"} and (result.trades["side"] == "short").any()


def test_scaling_changes_the_sizes_of_a_real_run_and_both_speeds_agree():
    """Sample bars, two symbols, steps up and down: not a vacuous parity (steps happen, sizes differ)."""
    config = paper_config(symbols=["BTC/USDT", "ETH/USDT"], risk={"stop_loss": 0.006},
                          scaling={"start": 0.25, "after_trades": 2, "down_drawdown": 0.003})
    frames = bars_for(config)
    result = run_backtest(config, bars=frames)
    plain = run_backtest(config.replace(scaling=None), bars=frames)
    assert {s["step"] for s in result.scaling} == {"up", "down"}
    assert result.trades["quantity"].iloc[0] == pytest.approx(0.25 * plain.trades["quantity"].iloc[0])
    trades, steps = session_run(config, frames)
    assert len(canonical(trades)) == len(canonical(result.trades))
    assert_same_steps(steps, result.scaling)


# ---- a real session: events in the store, operator freeze, resume keeps the scale -------------------
def _config() -> SessionConfig:
    return paper_config(scaling={"start": 0.25, "after_trades": 2, "down_drawdown": 0.003})


def _steps(store, sid: str) -> list[dict]:
    ev = store.events(sid, kinds=["scaling"])
    return [d for d in ev["data"] if d["step"] != "operator"]


def test_each_step_is_a_session_event_with_its_numbers_and_a_resumed_session_keeps_its_scale(store):
    cfg = _config()
    result = run_backtest(cfg, bars=bars_for(cfg))
    reference = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    assert asyncio.run(reference.run()).value == "completed"
    want = _steps(store, reference.id)
    assert len(want) >= 4
    assert set(want[0]) >= {"step", "previous", "scale", "drawdown", "trades", "win_rate", "sharpe", "max_drawdown"}
    assert_same_steps(want, result.scaling)
    message = store.events(reference.id, kinds=["scaling"])["message"].iloc[0]
    assert message.startswith("scaling up: x0.25 -> x0.5") and "win rate" in message and "Sharpe" in message

    async def first_part() -> str:
        s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), 30_000.0), poll_interval=0.02)  # ~2 ms a bar
        s.start()
        await until(lambda: s.bars_seen >= 500 and s.trader.scaler is not None and s.trader.scaler.scale != 0.25)
        s.hand_back("test: the host stops")
        assert (await s.wait()).value == "orphaned"
        return s.id

    sid = asyncio.run(first_part())
    state = store.load_runner_state(sid)
    assert 500 <= state["bars_seen"] < 1440 and state["scaling"]["state"][0] != 0.25
    resumed = Session.resume(sid, store, ReplayFeed(bars_for(cfg), None))
    assert resumed.trader.scaler is not None and resumed.trader.scaler.scale == state["scaling"]["state"][0]
    assert asyncio.run(resumed.run()).value == "completed"
    assert_same_steps(_steps(store, sid), result.scaling)
    got, expected = store.trades(sid), store.trades(reference.id)
    np.testing.assert_allclose(got["quantity"].to_numpy(float), expected["quantity"].to_numpy(float), rtol=1e-12)


def test_an_operator_freezes_the_scale_and_it_stays_put(store):
    cfg = _config()
    s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    assert s.set_scaling(frozen=True, scale=0.5) == "scaling x0.5, frozen"
    assert asyncio.run(s.run()).value == "completed"
    ev = store.events(s.id, kinds=["scaling"])
    assert list(ev["data"].map(lambda d: d["step"])) == ["operator"]
    assert ev["data"].iloc[0]["frozen"] is True and ev["data"].iloc[0]["previous"] == 0.25
    assert store.load_runner_state(s.id)["scaling"]["state"][:2] == [0.5, 1.0]  # scale, frozen
    with pytest.raises(ValueError, match="has no scaling rule"):
        Session(paper_config(), store, feed=ReplayFeed(bars_for(cfg), None)).set_scaling(frozen=True)
    other = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    for bad, words in ((dict(frozen="yes"), "frozen must be true or false"), ({}, "needs frozen=true|false"),
                       (dict(scale="half"), "scale must be a number"), (dict(scale=2.0), r"scale must be in \[0, 1\]")):
        with pytest.raises(ValueError, match=words):
            other.set_scaling(**bad)


def test_a_larger_scale_while_the_breaker_cools_off_needs_a_waiver(store):
    from workbench.engine.risk import CoolingOff

    cfg = _config()
    s = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    s.risk.on_equity(pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime(), 10_000.0)  # a bar seen: a clock
    s.trip_breaker("test")
    assert s.set_scaling(scale=0.1) == "scaling x0.1"  # lowering is always allowed
    with pytest.raises(CoolingOff, match="cooling off"):
        s.set_scaling(scale=1.0)
    assert s.set_scaling(scale=1.0, waive="checked the market") == "scaling x1"
    assert "cooling_off_waived" in set(store.events(s.id)["kind"])
