"""Multi-strategy sessions (legs): config errors, shared cash never overspent, per-leg P&L summing to the
session's, backtest/paper parity with two legs, pausing a leg and changing its params."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kit import bars_for
from tests.test_execution_parity import PARAMS, SYMBOLS, canonical, first_difference, markets
from workbench.backtest import run_backtest
from workbench.backtest.legs import leg_equity, leg_metrics, leg_summary
from workbench.config import ConfigError, SessionConfig, make_config
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.legs import LegTrader
from workbench.engine.trader import replay

LEGS = [
    {"name": "trend", "strategy": "sma_cross", "params": {"fast": 3, "slow": 12},
     "symbols": ["BTC/USDT", "ETH/USDT"], "allocation": 0.6},
    {"name": "revert", "strategy": "mean_reversion", "params": {"window": 10, "entry_z": 1.0, "exit_z": 0.0},
     "symbols": ["BTC/USDT"], "allocation": 0.4},
]


def legs_config(**fields: Any) -> SessionConfig:
    base: dict[str, Any] = {"kind": "paper", "legs": LEGS, "sizing": {"mode": "percent_equity", "value": 1.0},
                            "risk": {"stop_loss": 0.004}}
    return make_config(**{**base, **fields})


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return bars_for(legs_config(), days=2)


def errors(**fields: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        make_config(**fields)
    return e.value.by_field()


def test_config_legs_and_their_errors() -> None:
    config = legs_config()
    assert config.symbols == ["BTC/USDT", "ETH/USDT"]  # the legs' union, in order of appearance
    assert SessionConfig.from_json(config.to_json()) == config
    dup = errors(legs=[{**LEGS[0], "allocation": 0.3}, {**LEGS[1], "name": "trend", "allocation": 0.3}])
    assert "repeated: trend" in dup["legs"]
    assert "sum to 1.2 > 1" in errors(legs=[{**LEGS[0], "allocation": 0.8}, LEGS[1]])["legs"]
    assert "unknown strategy 'nope'" in errors(legs=[{**LEGS[0], "strategy": "nope"}])["legs.0.strategy"]
    assert "no param 'zz'" in errors(legs=[{**LEGS[0], "params": {"zz": 1}}])["legs.0.params"]
    assert "greater than 0" in errors(legs=[{**LEGS[0], "allocation": 0}])["legs.0.allocation"]
    live = errors(kind="live", legs=LEGS)["legs"]  # both legs trade BTC/USDT: an exchange nets per symbol
    assert "'trend' and 'revert' both trade BTC/USDT" in live
    make_config(kind="live", legs=[LEGS[0], {**LEGS[1], "symbols": ["SOL/USDT"]}])  # one leg per symbol is fine
    changed = errors(**{**config.to_dict(), "params": {"fast": 4}})  # e.g. a clone's --param: not silently lost
    assert "with legs each leg has its own strategy and params; change legs.N.params" in changed["params"]
    assert config.replace(legs=[LEGS[1], LEGS[0]]).strategy == "mean_reversion"  # new legs: their own first leg
    long = errors(legs=[LEGS[0], {**LEGS[1], "name": "a-very-long-leg-name-here"}])["legs"]
    assert "'BTC/USDT@a-very-long-leg-name-here' must fit in 32 characters" in long


def test_legs_share_cash_never_overspend_and_pnl_sums(frames: dict[str, pd.DataFrame]) -> None:
    config = legs_config()
    result = run_backtest(config, bars=frames)
    trades = result.trades
    assert set(trades["leg"]) == {"trend", "revert"}  # a symbol two legs trade is SYMBOL@leg, as in sessions
    assert set(trades.symbol) == {"BTC/USDT@trend", "ETH/USDT", "BTC/USDT@revert"}
    # sized at 100 % of equity x 60 % and x 40 %: together the legs invest all of it, never more
    assert (result.cash >= 0).all() and (result.exposure / result.equity).max() > 0.99
    first = result.orders.iloc[0]  # the first entry asks for its leg's share of the equity
    share = {"trend": 0.6, "revert": 0.4}[first.leg] * config.initial_balance
    assert first.quantity * first.reference_price == pytest.approx(share, rel=1e-9)
    assert len(trades) > 20
    summary = leg_summary(trades, ["trend", "revert"])
    session_pnl = result.equity.iloc[-1] - config.initial_balance
    assert summary["pnl"].sum() == pytest.approx(session_pnl, abs=1e-6)
    assert summary.loc["trend", "trades"] + summary.loc["revert", "trades"] == len(trades)
    curves = leg_equity(result)
    np.testing.assert_allclose(curves.sum(axis=1), result.equity - config.initial_balance, atol=1e-6)
    metrics = leg_metrics(result)
    assert list(metrics.index) == ["trend", "revert"]
    assert metrics["trade_count"].tolist() == summary["closed"].tolist()  # closed trades, as the session's count
    start = 0.4 * config.initial_balance  # the revert leg's share: its return is its P&L on that share
    assert metrics.loc["revert", "total_return"] == pytest.approx(summary.loc["revert", "pnl"] / start)


def test_a_saved_legs_backtest_keeps_each_trades_leg(store, frames: dict[str, pd.DataFrame]) -> None:
    from workbench.backtest.legs import with_legs

    config = legs_config(kind="backtest")
    result = run_backtest(config, bars={s: df.iloc[:600] for s, df in frames.items()})
    saved = with_legs(store.trades(store.save_backtest(config, result)), config)  # history reads it back
    assert list(saved["leg"]) == list(result.trades["leg"]) and set(saved["leg"]) == {"trend", "revert"}
    with pytest.raises(ValueError, match="SOL/USDT are not columns of this config's legs"):
        with_legs(saved.drop(columns="leg").assign(symbol="SOL/USDT"), config)
    from workbench.research import compare_sessions

    table = compare_sessions(store, [store.history()["id"].iloc[0]], metrics=("trade_count",))
    assert list(table["legs"]) == ["trend 60%, revert 40%"]


def test_backtest_and_paper_make_the_same_trades_with_two_legs(frames: dict[str, pd.DataFrame]) -> None:
    config = legs_config(risk={"stop_loss": 0.004, "take_profit": 0.006, "max_orders_per_minute": 3})
    expected = canonical(run_backtest(config, bars=frames).trades)
    got = canonical(replay(config, frames, include_open=True))  # the shipped Trader (LegTrader) and paper broker
    assert len(got) == len(expected) > 20
    for col in ("symbol", "entry_time", "exit_time", "exit_reason"):
        assert list(got[col]) == list(expected[col]), col
    for col in ("quantity", "entry_price", "exit_price", "pnl"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, atol=1e-9)


def run(trader: LegTrader, frames: dict[str, pd.DataFrame], until: int | None = None) -> None:
    for k, bars in enumerate(ReplayFeed(frames).bars()):
        if until is not None and k == until:
            return
        trader.step(bars)


def test_pause_a_leg_and_change_its_params(frames: dict[str, pd.DataFrame]) -> None:
    config = legs_config()
    trader = LegTrader(config, PaperBroker(config))
    half = len(next(iter(frames.values()))) // 2
    run(trader, {s: df.iloc[:half] for s, df in frames.items()})
    trader.pause_leg("revert")
    with pytest.raises(ValueError, match="no leg 'nope'; this session's legs: trend, revert"):
        trader.pause_leg("nope")
    assert trader.set_leg_params("trend", {"fast": 4})["fast"] == 4
    with pytest.raises(ValueError, match="no param"):
        trader.set_leg_params("trend", {"zz": 1})
    paused_at = frames["BTC/USDT"].index[half]
    before = pd.DataFrame(trader.portfolio.trade_log(include_open=True))
    assert (before["symbol"] == "BTC/USDT@revert").any()  # the leg traded before its pause
    state = trader.snapshot()
    resumed = LegTrader(config, PaperBroker(config))  # a crash: the next runner restores the snapshot
    resumed.restore(state, trader.strategy)
    assert resumed.paused == {"revert"} and resumed.leg_params["trend"]["fast"] == 4
    run(resumed, {s: df.iloc[half:] for s, df in frames.items()})
    trades = pd.DataFrame(resumed.portfolio.trade_log(include_open=True))  # those closed after the restore
    entries = pd.to_datetime(trades["entry_time"], utc=True)
    revert = trades["symbol"] == "BTC/USDT@revert"
    assert (entries[revert] < paused_at).all()  # no revert entry once paused (one held at the pause may exit)
    assert (entries[~revert] >= paused_at).sum() > 5  # the trend leg kept trading
    resumed.pause_leg("revert", False)
    run(resumed, {s: df.iloc[:half].set_axis(df.index[:half] + pd.Timedelta(days=2)) for s, df in frames.items()})
    after = pd.DataFrame(resumed.portfolio.trade_log(include_open=True))
    assert (after["symbol"] == "BTC/USDT@revert").any()  # resumed: the leg enters again


def test_a_paper_session_with_legs_pauses_one_and_attributes_every_trade(store, frames) -> None:
    import asyncio

    from tests.kit import paper_config
    from workbench.backtest.legs import with_legs
    from workbench.engine.commands import CommandRejected
    from workbench.engine.session import Session

    config = legs_config()
    day = {s: df.iloc[:600] for s, df in frames.items()}
    session = Session(config, store, feed=ReplayFeed(day, None))
    assert session.pause_leg("revert") == "leg revert paused"  # an adjustment: applies at once, before the run
    assert session.set_leg_params("trend", {"fast": 4}) == "leg trend params {'fast': 4, 'slow': 12}"
    with pytest.raises(ValueError, match="no leg 'nope'"):
        session.pause_leg("nope")

    async def run() -> None:
        await session.start().wait()

    asyncio.run(run())
    trades = with_legs(store.trades(session.id), config)  # the store's trades, attributed by the config
    assert len(trades) > 5 and set(trades["leg"]) == {"trend"}  # the paused leg never entered
    from workbench.engine.handle import RemoteHandle

    snap = RemoteHandle(session.id, store).snapshot().trades  # what `workbench session trades` prints
    assert set(snap["leg"]) == {"trend"} and len(snap) == len(trades)
    controls = list(store.events(session.id).query("kind == 'control'").message)
    assert any(m.startswith("pause_leg") for m in controls) and any(m.startswith("set_leg_params") for m in controls)
    state = store.load_runner_state(session.id)  # what a resumed runner restores (crash-only)
    assert state["legs"] == {"params": {"trend": {"fast": 4, "slow": 12}, "revert": LEGS[1]["params"]},
                             "paused": ["revert"]}
    from workbench.strategies import create

    create(config.strategy, state["params"])  # the resume path rebuilds the session's strategy: the first leg's
    plain = Session(paper_config(), store, feed=ReplayFeed(bars_for(paper_config()), None))
    with pytest.raises(CommandRejected, match="this session has no legs"):
        plain.pause_leg("trend")


@st.composite
def leg_markets(draw: st.DrawFn) -> tuple[SessionConfig, dict[str, pd.DataFrame]]:
    """The parity test's random markets and account rules, traded by two legs: the drawn strategy on both
    symbols and a second drawn strategy on the first symbol (a symbol two legs share), long, short or both."""
    config, frames = draw(markets())
    other = draw(st.sampled_from(sorted(PARAMS)))
    params = draw(PARAMS[other])
    if other == "sma_cross" and params["fast"] >= params["slow"]:
        params["slow"] = params["fast"] + 3
    legs = [{"name": "a", "strategy": config.strategy, "params": config.params, "symbols": SYMBOLS,
             "allocation": draw(st.sampled_from([0.5, 0.7]))},
            {"name": "b", "strategy": other, "params": params, "symbols": SYMBOLS[:1],
             "allocation": draw(st.sampled_from([0.2, 0.3]))}]
    sizing = {"mode": "percent_equity", "value": draw(st.sampled_from([0.5, 1.0]))}
    direction = draw(st.sampled_from(["long", "short", "both"]))  # legs short by the same rules (rule 15)
    return config.replace(legs=legs, sizing=sizing, direction=direction), frames


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(leg_markets())
def test_random_markets_with_two_legs_trade_alike_in_backtest_and_paper(market) -> None:
    config, frames = market
    expected = canonical(run_backtest(config, bars=frames).trades)
    got = canonical(replay(config, frames, include_open=True))
    for col in ("symbol", "entry_time", "exit_time", "exit_reason"):
        assert len(got) == len(expected) and list(got[col]) == list(expected[col]), first_difference(got, expected)
    for col in ("quantity", "entry_price", "exit_price", "pnl"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, atol=1e-9)


def test_the_account_risk_report_nets_the_legs_positions_per_symbol(store) -> None:
    from datetime import datetime, timedelta, timezone

    from workbench.domain import Position
    from workbench.engine import exposure as X

    sid = store.create_session(legs_config())
    store.set_state(sid, "running")
    store.heartbeat(sid, "test:1")
    t0 = datetime(2024, 1, 2, tzinfo=timezone.utc)
    store.add_equity_points(sid, [(t0, 10_000.0, 5_000.0, 5_000.0)])
    store.upsert_position(sid, Position("BTC/USDT@trend", 2.0, 100.0))  # two legs hold BTC: the account nets it
    store.upsert_position(sid, Position("BTC/USDT@revert", 1.0, 90.0))
    close = pd.DataFrame({"open": 110.0, "high": 110.0, "low": 110.0, "close": 110.0, "volume": 50.0},
                         index=pd.DatetimeIndex([t0 - timedelta(minutes=1), t0], name="time"))
    asked: list[str] = []

    def load(cfg, symbol, end):
        asked.append(symbol)
        return close

    report = X.risk_report(store, load=load, window=60)
    assert set(asked) == {"BTC/USDT"} and report.problems == []  # bars of the market symbol, not of a key
    assert list(report.positions["symbol"]) == ["BTC/USDT", "BTC/USDT"]
    assert report.concentration.loc["BTC/USDT", "value"] == pytest.approx(3 * 110.0)


def test_the_account_gate_nets_two_legs_on_one_symbol() -> None:
    from workbench.account import AccountGate, RiskPolicy
    from workbench.account.gate import SYMBOL

    gate = AccountGate(RiskPolicy.model_validate({"accounts": {"main": {"per_symbol": {"BTC/USDT": 1_000}}}}))
    gate.report("s1", "main", "binance", {"BTC/USDT@trend": 600.0, "BTC/USDT@revert": 300.0})
    breach = gate.check("main", "binance", "BTC/USDT@revert", 200.0, session_id="s1")  # 900 + 200 > 1,000
    assert breach is not None and (breach.rule, breach.key, breach.used) == (SYMBOL, "BTC/USDT", 900.0)
    assert gate.check("main", "binance", "BTC/USDT@trend", 100.0, session_id="s1") is None


def test_a_legs_session_handed_back_mid_run_and_resumed_ends_like_an_uninterrupted_one(store, frames) -> None:
    """Crash-only: the legs' params and pauses are in the checkpoint; the resumed runner carries on with them."""
    import asyncio

    from tests.kit import until
    from workbench.engine.session import Session

    config = legs_config()
    day = {s: df.iloc[:900] for s, df in frames.items()}

    def controlled(session: Session) -> None:
        session.pause_leg("revert")
        session.set_leg_params("trend", {"fast": 4})

    reference = Session(config, store, feed=ReplayFeed(day, None))
    controlled(reference)
    assert asyncio.run(reference.run()).value == "completed"

    async def first_part() -> str:
        s = Session(config, store, feed=ReplayFeed(day, 30_000.0), poll_interval=0.02)
        controlled(s)
        s.start()
        await until(lambda: s.bars_seen >= 300)
        s.hand_back("test: the host stops")
        assert (await s.wait()).value == "orphaned"
        return s.id

    sid = asyncio.run(first_part())
    assert 300 <= store.load_runner_state(sid)["bars_seen"] < 900
    resumed = Session.resume(sid, store, ReplayFeed(day, None))
    assert resumed.trader.paused == {"revert"} and resumed.trader.leg_params["trend"]["fast"] == 4
    assert asyncio.run(resumed.run()).value == "completed"
    assert resumed.portfolio.trade_log() == reference.portfolio.trade_log()
    assert resumed.portfolio.cash == reference.portfolio.cash
