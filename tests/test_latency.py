"""Order latency (execution rule 13): the fill delay, the same in the backtest's walk and the paper Trader."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import ConfigError, Latency, make_config
from workbench.data import sample_bars
from workbench.engine.brokers import PaperBroker
from workbench.engine.feeds import ReplayFeed
from workbench.engine.legs import make_trader
from workbench.engine.trader import replay
from workbench.execution.latency import SignalDelay, delay_bars, delay_signals

COLUMNS = ["symbol", "entry_time", "exit_time", "quantity", "entry_price", "exit_price", "exit_reason"]
PARAMS = {"sma_cross": {"fast": 3, "slow": 8}, "mean_reversion": {"window": 10},
          "momentum": {"window": 4, "entry_threshold": 0.0, "exit_threshold": 0.0},
          "pump_detection": {"volume_window": 6, "volume_mult": 1.0, "min_factors": 1, "breakout_window": 4}}


def frames() -> dict[str, pd.DataFrame]:
    """Two symbols over 600 1m bars; ETH misses every 7th bar (each column's delay counts its own bars)."""
    btc = sample_bars("BTC/USDT", "1m", days=1).iloc[:600]
    eth = sample_bars("ETH/USDT", "1m", days=1).iloc[:600]
    return {"BTC/USDT": btc, "ETH/USDT": eth[np.arange(len(eth)) % 7 != 3]}


def config(strategy: str = "sma_cross", **kw: object):
    return make_config(kind="paper", strategy=strategy, params=PARAMS[strategy], symbols=["BTC/USDT", "ETH/USDT"],
                       sizing={"mode": "percent_equity", "value": 0.4}, risk={"stop_loss": 0.004}, **kw)


def canonical(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades[COLUMNS].copy()
    out["exit_reason"] = out["exit_reason"].astype(object).where(out["exit_reason"].notna(), "").astype(str)
    for c in ("entry_time", "exit_time"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out.sort_values(["entry_time", "symbol"]).reset_index(drop=True)


def test_delay_bars_from_ms_or_bars() -> None:
    assert delay_bars(None, "1m") == 0
    assert delay_bars(Latency(bars=3), "1h") == 3
    assert delay_bars(Latency(ms=0), "1m") == 0  # arrives at the open: no delay
    assert delay_bars(Latency(ms=1), "1m") == 1  # any latency within a bar misses that bar's open
    assert delay_bars(Latency(ms=60_000), "1m") == 1
    assert delay_bars(Latency(ms=60_001), "1m") == 2
    assert delay_bars(Latency(ms=250), "1h") == 1


def test_latency_config_needs_one_unit() -> None:
    for bad in ({}, {"ms": 5, "bars": 1}, {"bars": -1}):
        with pytest.raises(ConfigError, match="latency"):
            make_config(latency=bad)


def test_delay_signals_counts_each_columns_own_bars() -> None:
    buy = np.array([[1, 0], [0, 1], [0, 0], [1, 0], [0, 0]], dtype=bool)
    sell = np.zeros_like(buy)
    has = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]], dtype=bool)  # column 1 has no bar at row 1
    b, _ = delay_signals(buy, sell, has, 1)
    assert b[:, 0].tolist() == [False, True, False, False, True]
    assert b[:, 1].tolist() == [False, False, False, False, False]  # row 1 of column 1 had no bar: its signal
    buy[0, 1] = True
    b, _ = delay_signals(buy, sell, has, 1)
    assert b[:, 1].tolist() == [False, False, True, False, False]  # ... row 0's lands on its next bar, row 2
    assert delay_signals(buy, sell, has, 0)[0] is buy


@pytest.mark.parametrize("strategy", sorted(PARAMS))
@pytest.mark.parametrize("direction", ["long", "both"])
def test_backtest_and_paper_agree_with_latency(strategy: str, direction: str) -> None:
    bars = frames()
    shorts = {"direction": "both", "margin": {"leverage": 2, "borrow_rate": 0.5}} if direction == "both" else {}
    cfg = config(strategy, latency={"ms": 90_000}, **shorts)  # 1.5 bars: fills 2 bars after the next open
    expected = canonical(run_backtest(cfg, bars=bars).trades)
    got = canonical(replay(cfg, bars, include_open=True))
    assert len(expected) > 3
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
    plain = canonical(run_backtest(config(strategy, **shorts), bars=bars).trades)
    assert not plain[["entry_time"]].equals(expected[["entry_time"]])  # the latency moved the trades


def test_latency_delays_the_first_entry_by_whole_bars() -> None:
    bars = {"BTC/USDT": frames()["BTC/USDT"]}
    cfg = make_config(kind="paper", strategy="sma_cross", params=PARAMS["sma_cross"])
    first = run_backtest(cfg, bars=bars).trades["entry_time"].iloc[0]
    for k in (1, 3):
        late = run_backtest(cfg.replace(latency={"bars": k}), bars=bars).trades["entry_time"].iloc[0]
        assert pd.Timestamp(late) - pd.Timestamp(first) == pd.Timedelta(minutes=k)


def test_signals_in_flight_survive_a_checkpoint() -> None:
    """A Trader restored from a JSON checkpoint mid-run keeps the delayed signals and ends like one that ran on."""
    bars = {"BTC/USDT": frames()["BTC/USDT"]}
    cfg = make_config(kind="paper", strategy="sma_cross", params=PARAMS["sma_cross"], latency={"bars": 4})
    steps = list(ReplayFeed(bars).bars())
    straight = replay(cfg, bars, include_open=True)
    first = make_trader(cfg, PaperBroker(cfg))
    assert isinstance(first.delay, SignalDelay)
    cut = 0
    for i, b in enumerate(steps):
        first.step(b)
        if i > 100 and any(any(v) for q in first.delay.queues.values() for v in q):
            cut = i + 1
            break
    assert cut, "no signal was in flight"
    state = json.loads(json.dumps(first.snapshot()))
    second = make_trader(cfg, PaperBroker(cfg))
    second.restore(state, second.strategy)
    for b in steps[cut:]:
        second.step(b)
    trades = pd.DataFrame(second.portfolio.trade_log(include_open=True), columns=straight.columns)
    at = next(iter(steps[cut].values())).time  # the checkpoint keeps no closed trades: compare those after it
    later = straight[pd.to_datetime(straight["exit_time"], utc=True).isna()
                     | (pd.to_datetime(straight["exit_time"], utc=True) >= at)]
    assert len(later) > 2
    pd.testing.assert_frame_equal(canonical(trades), canonical(later))


def test_live_exchange_orders_are_not_delayed() -> None:
    cfg = make_config(kind="paper", latency={"bars": 2})
    assert SignalDelay.for_config(cfg, simulated=False) is None
    assert SignalDelay.for_config(cfg).k == 2  # type: ignore[union-attr]


def test_a_sweep_delays_like_run_backtest() -> None:
    from workbench.backtest.sweep import sweep

    bars = frames()
    cfg = config("sma_cross", latency={"bars": 2})
    res = sweep(cfg, {"fast": [3, 4], "slow": [8]}, bars=bars, progress=False, metrics=["final_equity", "trade_count"])
    for _, row in res.frame.iterrows():
        params = {"fast": int(row["fast"]), "slow": int(row["slow"])}
        want = run_backtest(cfg.replace(params=params), bars=bars).metrics
        assert float(row["final_equity"]) == pytest.approx(want["final_equity"], rel=1e-12)
        assert int(row["trade_count"]) == want["trade_count"]
    plain = sweep(config("sma_cross"), {"fast": [3], "slow": [8]}, bars=bars, progress=False, metrics=["final_equity"])
    assert float(plain.frame["final_equity"].iloc[0]) != float(res.frame["final_equity"].iloc[0])


def test_legs_agree_with_latency() -> None:
    """Two legs sharing BTC/USDT (columns BTC/USDT@trend, BTC/USDT@revert) and ETH/USDT with gaps: each column's
    signals wait for its symbol's own bars in the walk and in the LegTrader alike."""
    from tests.test_legs import LEGS

    cfg = make_config(kind="paper", legs=LEGS, sizing={"mode": "percent_equity", "value": 1.0},
                      risk={"stop_loss": 0.004}, latency={"bars": 1})
    bars = frames()
    expected = canonical(run_backtest(cfg, bars=bars).trades)
    got = canonical(replay(cfg, bars, include_open=True))
    assert len(expected) > 10
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


def test_own_short_signals_are_delayed_alike() -> None:
    """A strategy with its own short signals (not the swapped long ones): with latency they wait like the long
    ones, in the walk and in the Trader."""
    from workbench.strategies import register
    from workbench.strategies.base import BarWindow
    from workbench.strategies.builtin import SmaCross

    @register
    class SmaShorts(SmaCross):
        name = "test_sma_own_shorts"

        def short_signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
            fast = bars["close"].rolling(3).mean()
            return fast < fast.shift(1), fast > fast.shift(1)

        def last_short_signal(self, window: BarWindow) -> tuple[bool, bool]:
            e, x = self.short_signals(window.frame())
            return bool(e.iloc[-1]), bool(x.iloc[-1])

    bars = frames()
    cfg = make_config(kind="paper", strategy="test_sma_own_shorts", params=PARAMS["sma_cross"],
                      symbols=["BTC/USDT", "ETH/USDT"], direction="both", latency={"bars": 2},
                      sizing={"mode": "percent_equity", "value": 0.4}, risk={"stop_loss": 0.004})
    expected = canonical(run_backtest(cfg, bars=bars).trades)
    got = canonical(replay(cfg, bars, include_open=True))
    assert len(expected) > 10
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
