"""Property-based parity: the vectorized backtest and the shipped bar-by-bar session step make the
same trades on random markets (docs/execution-semantics.md).

Hypothesis draws bar series with gaps, zero-volume bars and irregular (duplicate-free) timestamps
across both daylight-saving transitions of America/New_York, Europe/London and Australia/Sydney;
trading hours and blackouts on the zone's wall clock (wrapping midnight too), dated event windows; every built-in
strategy with small windows; stops always on, and sometimes the account rules of rule 10. The
backtest (:func:`run_backtest`) and the session step (:func:`workbench.engine.trader.replay`: the
shipped Trader with the paper broker, no store) must agree on every trade's times, side, size and
exit reason exactly, and on prices and P&L within 1e-9.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from workbench.backtest import run_backtest
from workbench.config import SessionConfig, make_config
from workbench.strategies import registry

SYMBOLS = ["BTC/USDT", "ETH/USDT"]
# UTC times a few hours before each zone's two transitions in 2024
TRANSITIONS = {
    "America/New_York": ["2024-03-10 00:00", "2024-11-02 23:00"],
    "Europe/London": ["2024-03-30 18:00", "2024-10-26 18:00"],
    "Australia/Sydney": ["2024-04-06 08:00", "2024-10-05 08:00"],
}
STEPS_MIN = np.array([1, 1, 1, 2, 3, 5, 7, 15, 61])  # irregular spacing, an hour-long gap now and then
PARAMS = {
    "sma_cross": st.fixed_dictionaries({"fast": st.integers(2, 4), "slow": st.integers(5, 12)}),
    "momentum": st.fixed_dictionaries({
        "window": st.integers(2, 8), "entry_threshold": st.sampled_from([0.0, 0.001, 0.003]),
        "exit_threshold": st.sampled_from([-0.002, 0.0])}),
    "mean_reversion": st.fixed_dictionaries({
        "window": st.integers(4, 15), "entry_z": st.sampled_from([0.5, 1.0, 1.5]), "exit_z": st.just(0.0)}),
    "pump_detection": st.fixed_dictionaries({
        "volume_window": st.integers(5, 10), "volume_mult": st.sampled_from([1.0, 1.5]),
        "accel_window": st.integers(1, 3), "min_return": st.sampled_from([0.0, 0.001]),
        "breakout_window": st.integers(3, 8), "min_factors": st.integers(1, 2), "exit_window": st.integers(3, 6)}),
}


def hhmm(quarter: int) -> str:
    return f"{quarter // 4:02d}:{quarter % 4 * 15:02d}"


@st.composite
def windows(draw: st.DrawFn) -> dict:
    """Time restrictions: maybe trading hours (may wrap midnight), 0-2 blackouts, maybe fewer weekdays."""
    def window() -> dict:
        start, length = draw(st.integers(0, 95)), draw(st.integers(2, 60))
        return {"start": hhmm(start), "end": hhmm((start + length) % 96)}

    out: dict = {"blackouts": [window() for _ in range(draw(st.integers(0, 2)))]}
    if draw(st.booleans()):
        out["trading_hours"] = window()
    if draw(st.booleans()):
        out["weekdays"] = sorted(draw(st.sets(st.integers(0, 6), min_size=4, max_size=6)))
    return out


@st.composite
def events(draw: st.DrawFn, times: pd.DatetimeIndex) -> list[dict]:
    """0-2 dated event windows (an event calendar's) inside the bars' span, some starting or ending on a bar."""
    out = []
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(times) - 2))
        start = times[i] + pd.Timedelta(minutes=draw(st.sampled_from([0, 0, 1, 7])))
        out.append({"name": f"event {i}", "start": start.isoformat(), "flatten": draw(st.booleans()),
                    "end": (start + pd.Timedelta(minutes=draw(st.integers(5, 240)))).isoformat()})
    return out


@st.composite
def markets(draw: st.DrawFn) -> tuple[SessionConfig, dict[str, pd.DataFrame]]:
    zone = draw(st.sampled_from(sorted(TRANSITIONS)))
    start = pd.Timestamp(draw(st.sampled_from(TRANSITIONS[zone])), tz="UTC")
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(120, 360))
    rng = np.random.default_rng(seed)
    times = start + pd.to_timedelta(np.cumsum(rng.choice(STEPS_MIN, n)), unit="min")
    frames = {}
    for j, sym in enumerate(SYMBOLS):
        close = 100.0 * (j + 1) * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.001, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.002, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.002, n)))
        volume = rng.lognormal(3, 1, n) * (rng.random(n) > 0.08)  # some zero-volume bars
        df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume},
                          index=pd.DatetimeIndex(times, name="time"))
        if j == 1:
            df = df[rng.random(n) > 0.1]  # the second symbol misses some bars
        frames[sym] = df
    strategy = draw(st.sampled_from(sorted(PARAMS)))
    params = draw(PARAMS[strategy])
    if strategy == "sma_cross" and params["fast"] >= params["slow"]:
        params["slow"] = params["fast"] + 3
    risk: dict = {
        "stop_loss": draw(st.sampled_from([0.003, 0.01])), "take_profit": draw(st.sampled_from([0.004, 0.02])),
        "trailing_stop": draw(st.sampled_from([0.002, 0.008])),
    }
    if draw(st.booleans()):
        risk["max_holding_minutes"] = draw(st.sampled_from([10, 45]))
    if draw(st.booleans()):  # the account rules of semantics rule 10
        risk["concentration_limit"] = draw(st.sampled_from([0.3, 0.6]))
        risk["max_orders_per_minute"] = draw(st.sampled_from([1, 3]))
        risk["circuit_breaker"] = {"max_drawdown": draw(st.sampled_from([0.01, 0.03])),
                                   "max_daily_loss": draw(st.sampled_from([0.01, 0.05])),
                                   "max_rejections": draw(st.sampled_from([None, 2, 4])),
                                   "rejection_window_s": draw(st.sampled_from([60.0, 900.0])),
                                   "action": draw(st.sampled_from(["reducing", "halted"])),
                                   "max_volatility": draw(st.sampled_from([None, 0.02, 0.05])),
                                   "max_var": draw(st.sampled_from([None, 0.01, 0.04])),
                                   "tail_window": draw(st.sampled_from([10, 30])),
                                   "max_gap": draw(st.sampled_from([None, 0.002, 0.004]))}
    config = make_config(
        kind="paper", strategy=strategy, params=params, symbols=SYMBOLS, initial_balance=10_000,
        sizing={"mode": "percent_equity", "value": draw(st.sampled_from([0.3, 0.5]))},
        commission={"taker": 0.001, "fixed": draw(st.sampled_from([0.0, 0.2]))},
        slippage=draw(st.sampled_from([{"model": "fixed", "bps": 2}, {"model": "volume", "bps": 1, "impact": 0.05}])),
        volume={"max_share": draw(st.sampled_from([0.1, 1.0]))},
        time={"timezone": zone, **draw(windows()), "events": draw(events(times))}, risk=risk,
    )
    return config, frames


def session_trades(config: SessionConfig, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The shipped session step's trades on ``frames``."""
    from workbench.engine.trader import replay

    return replay(config, frames, include_open=True)


COLUMNS = ["symbol", "entry_time", "exit_time", "quantity", "entry_price", "exit_price", "pnl", "exit_reason"]


def canonical(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades[COLUMNS].copy()
    for c in ("symbol", "exit_reason"):
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    for c in ("entry_time", "exit_time"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out.sort_values(["entry_time", "symbol"]).reset_index(drop=True)


def first_difference(got: pd.DataFrame, expected: pd.DataFrame) -> str:
    """The first trade where the session (got) and the backtest (expected) differ, with its neighbours."""
    n = min(len(got), len(expected))
    keys = ["symbol", "entry_time", "exit_time", "exit_reason"]
    i = next((k for k in range(n) if list(got.loc[k, keys]) != list(expected.loc[k, keys])), n)
    lo = max(i - 1, 0)
    return (f"{len(got)} session trades vs {len(expected)} backtest trades; first difference at #{i}\n"
            f"session:\n{got.iloc[lo:i + 2].to_string()}\nbacktest:\n{expected.iloc[lo:i + 2].to_string()}")


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(markets())
def test_backtest_and_session_make_the_same_trades(market: tuple[SessionConfig, dict[str, pd.DataFrame]]) -> None:
    config, frames = market
    result = run_backtest(config, bars=frames)
    expected = canonical(result.trades)
    event(f"breaker: {result.breaker['reason'] if result.breaker else 'not tripped'}")
    event(f"exit reasons: {sorted(set(expected['exit_reason']) - {''})}")
    got = canonical(session_trades(config, frames))
    for col in ("symbol", "entry_time", "exit_time", "exit_reason"):
        assert len(got) == len(expected) and list(got[col]) == list(expected[col]), first_difference(got, expected)
    for col in ("quantity", "entry_price", "exit_price", "pnl"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   err_msg=col)


def test_every_builtin_strategy_is_drawn() -> None:
    builtins = {"sma_cross", "momentum", "mean_reversion", "pump_detection"}
    assert builtins <= set(registry.names()) and set(PARAMS) == builtins
