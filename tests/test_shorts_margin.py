"""Shorts, margin, liquidation and carrying costs (docs/execution-semantics.md rules 15-16).

The backtest (:func:`run_backtest`, the walk) and the shipped bar-by-bar step (:func:`replay`, the Trader
with the paper broker) make the same trades with shorts, leverage and funding on, for every built-in
strategy; a liquidation fills at the computed price (or the open that gapped through it); funding and
interest sums equal a hand computation; direction 'long' gives the results it gave before shorts existed.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import ConfigError, SessionConfig, make_config
from workbench.engine.trader import replay
from workbench.strategies import Param, Strategy, register

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
T0 = pd.Timestamp("2024-03-01", tz="UTC")
STRATEGIES: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 3, "slow": 8},
    "momentum": {"window": 4, "entry_threshold": 0.001, "exit_threshold": -0.001},
    "mean_reversion": {"window": 10, "entry_z": 1.0, "exit_z": 0.0},
    "pump_detection": {"volume_window": 6, "volume_mult": 1.0, "accel_window": 2, "min_return": 0.0,
                       "breakout_window": 4, "min_factors": 1, "exit_window": 4},
}
STOPS = {"stop_loss": 0.01, "take_profit": 0.02, "trailing_stop": 0.008}
KEYS = ["symbol", "side", "entry_time", "exit_time", "exit_reason", "status"]
NUMBERS = ["quantity", "entry_price", "exit_price", "pnl", "funding", "interest", "commission", "slippage"]


def random_bars(seed: int = 1, n: int = 400) -> dict[str, pd.DataFrame]:
    """Two symbols of 5-minute random-walk bars (the second one misses some bars)."""
    rng = np.random.default_rng(seed)
    times = T0 + pd.to_timedelta(np.arange(n) * 5, unit="min")
    frames = {}
    for j, sym in enumerate(SYMBOLS):
        close = 100.0 * (j + 1) * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.001, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.002, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.002, n)))
        frames[sym] = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                                    "volume": rng.lognormal(3, 1, n)}, index=pd.DatetimeIndex(times, name="time"))
    return frames


def canonical(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades[KEYS + NUMBERS].copy()
    for c in ("symbol", "side", "exit_reason", "status"):
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    for c in ("entry_time", "exit_time"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out.sort_values(["entry_time", "symbol", "side"]).reset_index(drop=True)


def assert_same_trades(config: SessionConfig, frames: dict[str, pd.DataFrame],
                       funding: pd.Series | None = None) -> pd.DataFrame:
    """Backtest and paper replay agree trade for trade; returns the backtest's trades."""
    result = run_backtest(config, bars=frames, funding=funding)
    expected = canonical(result.trades)
    got = canonical(replay(config, frames, include_open=True, funding=funding))
    assert len(got) == len(expected)
    for c in KEYS:
        assert list(got[c]) == list(expected[c]), c
    for c in NUMBERS:
        np.testing.assert_allclose(got[c].to_numpy(float), expected[c].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   err_msg=c)
    pnl = float(result.trades["pnl"].sum())  # every cash flow is some trade's P&L
    assert result.equity.iloc[-1] == pytest.approx(config.initial_balance + pnl, rel=1e-9)
    return result.trades


# ---- direction 'long' is what it was ------------------------------------------------------------------
# final equity and trade count of each strategy on random_bars(1), computed with the code before shorts
# existed (commit 9824374): direction 'long' must give these bit for bit
BEFORE = {"sma_cross": (49, 9608.394714473818), "momentum": (94, 9150.315843750897),
          "mean_reversion": (104, 9070.184906152474), "pump_detection": (182, 7986.516185889141)}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_direction_long_gives_the_results_from_before_shorts(strategy: str) -> None:
    config = make_config(kind="paper", strategy=strategy, params=STRATEGIES[strategy], symbols=SYMBOLS,
                         sizing={"mode": "percent_equity", "value": 0.5},
                         risk={**STOPS, "circuit_breaker": {"max_drawdown": 0.2}})
    result = run_backtest(config, bars=random_bars())
    assert (len(result.trades), float(result.equity.iloc[-1])) == BEFORE[strategy]
    assert set(result.trades["side"]) == {"long"} and (result.trades[["funding", "interest"]] == 0.0).all().all()


# ---- parity --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["short", "both"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_backtest_and_paper_agree_with_shorts_leverage_and_funding(strategy: str, direction: str) -> None:
    frames = random_bars()
    funding = pd.Series([0.0004, -0.0003, 0.0002], index=T0 + pd.to_timedelta([3, 11, 19], unit="h"))
    config = make_config(kind="paper", strategy=strategy, params=STRATEGIES[strategy], symbols=SYMBOLS,
                         direction=direction, sizing={"mode": "percent_equity", "value": 0.6}, risk=STOPS,
                         margin={"leverage": 3, "borrow_rate": 0.2, "maintenance": 0.1})
    trades = assert_same_trades(config, frames, funding)
    sides = set(trades["side"])
    assert sides == ({"short"} if direction == "short" else {"long", "short"})
    assert (trades.loc[trades.side == "short", "interest"] < 0).any()  # shorts pay borrow interest
    assert (trades["funding"] != 0).any()
    assert (trades["quantity"] * trades["entry_price"] > config.initial_balance).any()  # leverage bought more


def test_backtest_and_paper_agree_with_a_constant_funding_rate_and_no_leverage() -> None:
    config = make_config(kind="paper", strategy="momentum", params=STRATEGIES["momentum"], symbols=SYMBOLS,
                         direction="both", sizing={"mode": "percent_equity", "value": 0.4}, risk=STOPS,
                         margin={"funding_rate": 0.001}, commission={"taker": 0.001, "fixed": 0.1})
    trades = assert_same_trades(config, random_bars(seed=2, n=600))
    long, short = trades[trades.side == "long"], trades[trades.side == "short"]
    assert (long.funding <= 0).all() and (short.funding >= 0).all()  # a positive rate: longs pay shorts


# ---- liquidation ---------------------------------------------------------------------------------------
@register
class EnterOnce(Strategy):
    """Test strategy: the entry signal on the bar ``at`` minutes after T0, the exit signal on ``exit_at``."""

    name = "test_enter_once"
    params = (Param("at", int, 0, 0, 10_000), Param("exit_at", int, 10_000, 0, 10_000))

    def lookback(self) -> int:
        return 1

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        minutes = (bars.index - T0) // pd.Timedelta(minutes=1)
        return (pd.Series(minutes == self.p["at"], index=bars.index),
                pd.Series(minutes == self.p["exit_at"], index=bars.index))


def flat_bars(prices: list[tuple[float, float, float, float]], step: str = "1h") -> dict[str, pd.DataFrame]:
    """One symbol's bars from (open, high, low, close) rows, T0 onwards."""
    index = pd.date_range(T0, periods=len(prices), freq=step, name="time")
    frame = pd.DataFrame(prices, index=index, columns=["open", "high", "low", "close"])
    frame["volume"] = 1e6
    return {"BTC/USDT": frame}


def crash_config(direction: str, **margin: Any) -> SessionConfig:
    # the long's entry signal is bar 0's; a short's entry is the exit signal (the default rule)
    params = {"at": 0} if direction == "long" else {"at": 9_999, "exit_at": 0}
    return make_config(kind="paper", strategy="test_enter_once", params=params, symbols=["BTC/USDT"],
                       direction=direction, sizing={"mode": "fixed_quantity", "value": 10.0},
                       commission={"taker": 0.0, "fixed": 0.0}, slippage={"bps": 0.0}, margin=margin)


def test_a_short_whose_fixed_fee_exceeds_its_proceeds_opens_alike_in_backtest_and_paper() -> None:
    """A nearly spent account: the short's sell brings 0.1 and pays a fee of 0.2. The walk opens it (the rule
    refusing a sell whose fees exceed its proceeds is about selling a holding), the paper broker refused it
    (found by the random parity test on a wiped-out account with a fixed fee)."""
    frames = flat_bars([(100, 100, 100, 100), (100, 101, 99, 100), (100, 101, 99, 100), (99, 100, 98, 99)])
    config = crash_config("short").replace(initial_balance=1.0, sizing={"mode": "fixed_quantity", "value": 0.001},
                                           commission={"taker": 0.001, "fixed": 0.2})
    trades = assert_same_trades(config, frames)
    assert list(trades.side) == ["short"] and trades.quantity.iloc[0] == pytest.approx(0.001)


@pytest.mark.parametrize("gap", [False, True])
def test_a_leveraged_long_is_liquidated_at_the_computed_price_in_a_crash(gap: bool) -> None:
    entry = 100.0
    liq = entry * (1 - 1 / 5) / (1 - 0.01)  # isolated margin: entry x (1 - initial) / (1 - maintenance)
    crash = (70.0, 101.0, 60.0, 65.0) if gap else (99.0, 101.0, 60.0, 65.0)  # gapped through the level, or not
    frames = flat_bars([(100, 100, 100, 100), (entry, 101, 99, 100), (100, 101, 95, 99), crash, (65, 66, 64, 65)])
    config = crash_config("long", leverage=5, maintenance=0.01)
    trades = assert_same_trades(config, frames)
    assert list(trades.exit_reason) == ["liquidation"] and trades.exit_time.iloc[0] == frames["BTC/USDT"].index[3]
    assert trades.exit_price.iloc[0] == pytest.approx(70.0 if gap else liq, rel=1e-12)
    assert trades.pnl.iloc[0] == pytest.approx(10 * ((70.0 if gap else liq) - entry), rel=1e-12)


def test_a_short_is_liquidated_when_the_price_spikes_and_a_closer_stop_comes_first() -> None:
    entry = 100.0
    liq = entry * (1 + 1 / 2) / (1 + 0.05)  # 142.857...
    spike = (101.0, 150.0, 100.0, 149.0)
    frames = flat_bars([(100, 100, 100, 100), (entry, 101, 99, 100), (100, 101, 99, 100), spike, (149, 150, 148, 149)])
    trades = assert_same_trades(crash_config("short", leverage=2, maintenance=0.05), frames)
    assert list(trades.exit_reason) == ["liquidation"] and list(trades.side) == ["short"]
    assert trades.exit_price.iloc[0] == pytest.approx(liq, rel=1e-12)
    stopped = crash_config("short", leverage=2, maintenance=0.05).replace(risk={"stop_loss": 0.2})
    trades = assert_same_trades(stopped, frames)  # the stop at 120 is reached before the liquidation price
    assert list(trades.exit_reason) == ["stop_loss"] and trades.exit_price.iloc[0] == pytest.approx(120.0)


# ---- funding and interest, by hand ---------------------------------------------------------------------
def test_funding_and_interest_of_a_short_equal_a_hand_computation() -> None:
    # a short of 10 at a flat 100, 1 h bars: entered at bar 1's open (01:00), covered at bar 20's (20:00)
    frames = flat_bars([(100.0, 100.0, 100.0, 100.0)] * 24)
    config = crash_config("short", funding_rate=0.001, borrow_rate=0.0876)
    config = config.replace(params={"at": 19 * 60, "exit_at": 0})  # the cover signal on bar 19, filled at 20:00
    trades = assert_same_trades(config, frames)
    assert len(trades) == 1 and trades.exit_time.iloc[0] == T0 + pd.Timedelta(hours=20)
    # interest: at each open after the entry bar, bars 2..20: 19 x 10 x 100 x 0.0876 / (365 x 24)
    assert trades.interest.iloc[0] == pytest.approx(-19 * 1000 * 0.0876 / 8760, rel=1e-12)
    # funding at 08:00 and 16:00 (in (01:00, 20:00]): a short receives 10 x 100 x 0.001 each
    assert trades.funding.iloc[0] == pytest.approx(2 * 1.0, rel=1e-12)
    assert trades.pnl.iloc[0] == pytest.approx(2.0 - 19 * 1000 * 0.0876 / 8760, rel=1e-12)  # a flat price
    series = pd.Series([0.002, 0.5, -0.001], index=T0 + pd.to_timedelta([4, 30, 12], unit="h"))
    trades = assert_same_trades(config.replace(margin={"borrow_rate": 0.0}), frames, funding=series)
    assert trades.funding.iloc[0] == pytest.approx(10 * 100 * (0.002 - 0.001), rel=1e-12)  # 30 h is after it
    assert trades.interest.iloc[0] == 0.0


# ---- config errors -------------------------------------------------------------------------------------
@register
class LongOnly(EnterOnce):
    name = "test_long_only"
    can_short: ClassVar[bool] = False


@pytest.mark.parametrize("fields, words", [
    ({"margin": {"leverage": 0.5}}, "leverage 0.5 is below 1"),
    ({"margin": {"leverage": 4, "maintenance": 0.3}}, "maintenance margin 0.3 must be below the initial margin 0.25"),
    ({"margin": {"leverage": 4, "initial": 0.1}}, "lends more than leverage 4 allows"),
    ({"direction": "short", "strategy": "test_long_only"}, "strategy 'test_long_only' trades long only"),
    ({"direction": "sideways"}, "direction"),
    ({"direction": "short", "legs": [{"name": "a", "strategy": "test_long_only", "allocation": 0.5}]},
     "strategy 'test_long_only' trades long only"),
])
def test_bad_margin_and_direction_settings_are_clear_errors(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make_config(**fields)


# ---- crash-only ----------------------------------------------------------------------------------------
def test_a_session_with_shorts_and_carry_handed_back_mid_run_resumes_like_an_uninterrupted_one(store) -> None:
    """Funding and interest are not fills: the checkpoint keeps them, so a resumed runner's trades (rebuilt
    from the stored fills) and cash are those of a run that never stopped; the stored trade log has them."""
    import asyncio

    from tests.kit import until
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.session import Session

    config = make_config(kind="paper", strategy="momentum", params=STRATEGIES["momentum"], symbols=SYMBOLS,
                         direction="both", sizing={"mode": "percent_equity", "value": 0.4}, risk=STOPS,
                         margin={"leverage": 2, "borrow_rate": 0.5, "funding_rate": 0.002})
    day = random_bars(seed=3, n=400)
    reference = Session(config, store, feed=ReplayFeed(day, None))
    assert asyncio.run(reference.run()).value == "completed"

    async def first_part() -> str:
        s = Session(config, store, feed=ReplayFeed(day, 20_000.0), poll_interval=0.02)
        s.start()
        await until(lambda: s.bars_seen >= 150)
        s.hand_back("test: the host stops")
        assert (await s.wait()).value == "orphaned"
        return s.id

    sid = asyncio.run(first_part())
    assert 150 <= store.load_runner_state(sid)["bars_seen"] < 400
    resumed = Session.resume(sid, store, ReplayFeed(day, None))
    assert asyncio.run(resumed.run()).value == "completed"
    trades = resumed.portfolio.trade_log()
    assert trades == reference.portfolio.trade_log() and resumed.portfolio.cash == reference.portfolio.cash
    assert any(t["interest"] < 0 for t in trades) and any(t["funding"] != 0 for t in trades)
    saved = store.trades(sid)
    assert set(saved["side"]) == {"long", "short"}
    np.testing.assert_allclose(saved["funding"].sum(), sum(t["funding"] for t in resumed.portfolio.trade_log(True)))


def test_a_shorts_protective_levels_are_mirrored() -> None:
    from workbench.execution.rules import Bar, position_exit, stop_levels

    assert stop_levels(100.0, 90.0, 0.05, 0.1, 0.02, side=-1) == ("trailing_stop", 90.0 * 1.02, 90.0)
    assert stop_levels(100.0, 99.0, 0.05, None, 0.1, side=-1) == ("stop_loss", 105.0, -np.inf)
    bar = Bar(T0.to_pydatetime(), 96.0, 106.0, 95.0, 100.0, 1.0)  # through the short's stop: exits at it
    assert position_exit(-1, bar, 100.0, 99.0, 0.05, None, 0.1) == ("stop_loss", 105.0)
    assert position_exit(-1, bar, 100.0, 99.0, 0.05, None, 0.1, liquidation=104.0) == ("liquidation", 104.0)


def test_a_sweep_row_equals_the_backtests_metrics_with_shorts_and_carry() -> None:
    from workbench.backtest.sweep import sweep

    config = make_config(kind="backtest", strategy="sma_cross", params=STRATEGIES["sma_cross"], symbols=SYMBOLS,
                         direction="short", sizing={"mode": "percent_equity", "value": 0.5}, risk=STOPS,
                         margin={"leverage": 3, "borrow_rate": 0.2, "funding_rate": 0.001})
    frames = random_bars()
    row = sweep(config, {"fast": [3], "slow": [8]}, bars=frames, progress=False).frame.iloc[0]
    metrics = run_backtest(config, bars=frames).metrics
    assert metrics["profit_factor"] != pytest.approx(0.5041628427162476)  # the value without the carry
    for key, value in metrics.items():
        if key in row:
            assert row[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


@register
class SmaOwnShorts(Strategy):
    """Longs on a rising fast mean, shorts on its own rule (close below the slow mean), not the swapped longs."""

    name = "test_sma_own_shorts_sweep"
    params: ClassVar[list[Param]] = [Param("fast", int, 3, low=2, high=20), Param("slow", int, 8, low=3, high=50)]

    def lookback(self) -> int:
        return max(self.p["fast"] + 1, self.p["slow"])

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        fast = bars["close"].rolling(self.p["fast"]).mean()
        return fast > fast.shift(1), fast < fast.shift(1)

    def short_signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        slow = bars["close"].rolling(self.p["slow"]).mean()
        return bars["close"] < slow * 0.998, bars["close"] > slow


def test_a_strategy_that_defines_only_short_signals_shorts_alike_in_backtest_and_paper() -> None:
    """The bar-by-bar default of last_short_signal ran the swapped long signals (the default rule) for a
    strategy with its own short_signals: paper shorted at other times than the backtest."""
    config = make_config(kind="backtest", strategy="test_sma_own_shorts_sweep", params={"fast": 3, "slow": 8},
                         symbols=SYMBOLS, direction="short", sizing={"mode": "percent_equity", "value": 0.4})
    trades = assert_same_trades(config, random_bars())
    assert (trades["side"] == "short").sum() > 20


def test_a_sweep_row_equals_the_backtest_of_a_strategy_with_its_own_short_signals() -> None:
    """The sweep passes the strategy's own short arrays to the walk (it used the default rule: other trades)."""
    from workbench.backtest.sweep import sweep

    config = make_config(kind="backtest", strategy="test_sma_own_shorts_sweep", params={"fast": 3, "slow": 8},
                         symbols=SYMBOLS, direction="both", sizing={"mode": "percent_equity", "value": 0.4},
                         risk=STOPS, margin={"leverage": 2, "funding_rate": 0.0005}, latency={"bars": 1})
    frames = random_bars()
    grid = {"fast": [3, 5], "slow": [8, 20]}
    rows = sweep(config, grid, bars=frames, progress=False, chunk_size=3).frame
    for _, row in rows.iterrows():
        params = {"fast": int(row["fast"]), "slow": int(row["slow"])}
        metrics = run_backtest(config.replace(params=params), bars=frames).metrics
        assert metrics["trade_count"] > 10
        for key, value in metrics.items():
            if key in row:
                assert row[key] == pytest.approx(value, rel=1e-9, nan_ok=True), (params, key)


def test_with_both_an_opposite_signal_closes_the_position_and_opens_the_other_side_at_the_same_open() -> None:
    frames = flat_bars([(100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i) for i in range(8)])
    config = crash_config("both").replace(params={"at": 0, "exit_at": 3 * 60})  # long at 01:00, reversed at 04:00
    trades = assert_same_trades(config, frames).sort_values("entry_time")
    at = frames["BTC/USDT"].index
    assert list(trades.side) == ["long", "short"] and list(trades.status) == ["closed", "open"]
    assert trades.exit_time.iloc[0] == trades.entry_time.iloc[1] == at[4] and trades.exit_reason.iloc[0] == "signal"
    assert trades.exit_price.iloc[0] == trades.entry_price.iloc[1] == 104.0  # both at 04:00's open (no slippage)
    only_short = assert_same_trades(config.replace(direction="short"), frames)
    assert list(only_short.side) == ["short"] and only_short.entry_time.iloc[0] == at[4]


# ---- multi-strategy sessions with shorts ------------------------------------------------------------------
LEGS = [{"name": "own", "strategy": "test_sma_own_shorts_sweep", "params": {"fast": 3, "slow": 8}, "symbols": SYMBOLS,
         "allocation": 0.4},
        {"name": "dflt", "strategy": "sma_cross", "params": {"fast": 3, "slow": 8}, "symbols": SYMBOLS[:1],
         "allocation": 0.3}]


@pytest.mark.parametrize("direction", ["short", "both"])
def test_legs_trade_shorts_alike_in_backtest_and_paper_and_their_pnl_sums(direction: str) -> None:
    """Each column shorts on its leg strategy's own short signals or, without them, the default rule (the leg
    'own' has its own, 'dflt' not; they share BTC/USDT); backtest and paper agree trade for trade."""
    from workbench.backtest.legs import leg_equity, leg_summary

    config = make_config(kind="backtest", legs=LEGS, direction=direction, risk=STOPS,
                         sizing={"mode": "percent_equity", "value": 1.0}, margin={"leverage": 2})
    frames = random_bars()
    trades = assert_same_trades(config, frames)
    for key in ("BTC/USDT@own", "ETH/USDT", "BTC/USDT@dflt"):  # ETH/USDT: one leg trades it, its key is the symbol
        mine = trades[trades["symbol"] == key]
        assert (mine["side"] == "short").sum() > 5, key
        assert ((mine["side"] == "long").sum() > 5) == (direction == "both"), key
    # the default rule: 'dflt' shorts where sma_cross exits a long; 'own' on its own rule (other times)
    alone = run_backtest(config.replace(legs=[], strategy="sma_cross", params={"fast": 3, "slow": 8},
                                        symbols=SYMBOLS[:1]), bars=frames).trades
    assert set(alone.loc[alone["side"] == "short", "entry_time"]) & set(
        trades.loc[(trades["symbol"] == "BTC/USDT@dflt") & (trades["side"] == "short"), "entry_time"])
    result = run_backtest(config, bars=frames)
    pnl = result.equity.iloc[-1] - config.initial_balance
    assert leg_summary(result.trades)["pnl"].sum() == pytest.approx(pnl, rel=1e-9)
    assert leg_equity(result).iloc[-1].sum() == pytest.approx(pnl, rel=1e-9)  # a held short marked as one


def test_a_paused_leg_opens_no_short_but_its_held_short_still_covers_on_its_signal() -> None:
    from workbench.engine.brokers import PaperBroker
    from workbench.engine.feeds import ReplayFeed
    from workbench.engine.legs import LegTrader

    config = make_config(kind="paper", legs=LEGS, direction="short", sizing={"mode": "percent_equity", "value": 1.0})
    frames = random_bars()
    trader = LegTrader(config, PaperBroker(config))
    paused_at = None
    for bars in ReplayFeed(frames).bars():
        trader.step(bars)
        pos = trader.portfolio.positions.get("BTC/USDT@dflt")
        if paused_at is None and trader.bars_seen > 100 and pos is not None and pos.quantity < 0:
            trader.pause_leg("dflt")  # paused while holding a short
            paused_at = next(iter(bars.values())).time
    assert paused_at is not None
    log = pd.DataFrame(trader.portfolio.trade_log(include_open=True))
    dflt = log[log["symbol"] == "BTC/USDT@dflt"]
    entries = pd.to_datetime(dflt["entry_time"], utc=True)
    assert (entries <= paused_at).all()  # no entry of the paused leg after the pause
    held = dflt[entries == entries.max()].iloc[0]
    assert held["side"] == "short" and held["status"] == "closed" and held["exit_reason"] == "signal"
    own = log[log["symbol"].str.endswith("@own")]
    assert (pd.to_datetime(own["entry_time"], utc=True) > paused_at).sum() > 3  # the other leg kept trading
