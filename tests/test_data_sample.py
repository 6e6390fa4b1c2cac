"""Bundled sample data: deterministic, consistent, realistic enough, with findable pump-and-dump episodes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from workbench.data import BarsError, available_symbols, pump_episodes, quality_report, sample_bars
from workbench.data.sample import MARKETS, _minute_path, _sample


def test_same_arguments_same_bars_and_a_fresh_copy_each_time():
    a = sample_bars("ETH/USDT", days=3)
    a.iloc[0, 0] = -1.0  # mutating a result must not leak into the next call
    b = sample_bars("ETH/USDT", days=3)
    assert b.iloc[0, 0] != -1.0
    assert sample_bars("ETH/USDT", days=3).equals(b)
    assert not sample_bars("BTC/USDT", days=3)["close"].equals(b["close"])


def test_identical_in_a_fresh_process_with_another_hash_seed():
    code = "from workbench.data import sample_bars; print(repr(float(sample_bars('SOL/USDT', days=2)['close'].sum())))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert float(out.stdout) == float(sample_bars("SOL/USDT", days=2)["close"].sum())


def test_shorter_sample_is_a_prefix_of_a_longer_one():
    short, long = sample_bars("BTC/USDT", days=10), sample_bars("BTC/USDT", days=90)
    pd.testing.assert_frame_equal(short, long.iloc[: len(short)])


@pytest.mark.parametrize("symbol", available_symbols())
def test_every_symbol_is_clean_and_near_its_price(symbol):
    bars = sample_bars(symbol)
    assert len(bars) == 90 * 1440
    assert bars.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert quality_report(bars).ok
    assert bars["open"].iloc[0] == pytest.approx(MARKETS[symbol].price)
    assert 0.2 < bars["close"].iloc[-1] / MARKETS[symbol].price < 5


def test_btc_and_eth_price_levels():
    assert 30_000 < sample_bars("BTC/USDT", days=1)["close"].mean() < 50_000
    assert 1_500 < sample_bars("ETH/USDT", days=1)["close"].mean() < 3_000


def test_unknown_symbol_lists_available():
    with pytest.raises(BarsError, match="available: BTC/USDT, ETH/USDT"):
        sample_bars("DOGE/USDT")


@pytest.mark.parametrize("kwargs,match", [({"days": 0}, "days"), ({"timeframe": "7m"}, "divide a day"),
                                          ({"timeframe": "1s"}, "whole-minute")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(BarsError, match=match):
        sample_bars("BTC/USDT", **kwargs)


@pytest.mark.parametrize("tf,rule", [("5m", "5min"), ("1h", "1h"), ("1d", "1D")])
def test_coarser_timeframes_aggregate_the_minute_path(tf, rule):
    minute = sample_bars("ETH/USDT", days=4)
    expected = minute.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                          "volume": "sum"})
    got = sample_bars("ETH/USDT", tf, days=4)
    pd.testing.assert_frame_equal(got, expected, check_freq=False, check_exact=False, rtol=1e-12)
    assert quality_report(got, tf).ok


def test_start_moves_the_index_only():
    a, b = sample_bars("BTC/USDT", days=1), sample_bars("BTC/USDT", days=1, start="2025-06-01")
    assert b.index[0] == pd.Timestamp("2025-06-01", tz="UTC")
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_stylised_facts():
    bars = sample_bars("BTC/USDT")
    r = np.log(bars["close"]).diff().dropna()
    assert r.abs().autocorr(1) > 0.1 and r.abs().autocorr(60) > 0.05  # volatility clustering
    assert r.kurt() > 3  # fat tails
    assert np.corrcoef(bars["volume"].iloc[1:], r.abs())[0, 1] > 0.3  # volume follows |returns|
    by_hour = bars["volume"].groupby(bars.index.hour).mean()
    assert by_hour.max() / by_hour.min() > 1.5  # intraday seasonality
    assert 0.3 < r.std() * np.sqrt(525_600) < 1.2  # a crypto-like annual volatility


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT", "XRP/USDT"])
def test_pump_and_dump_episodes_are_where_reported(symbol):
    bars = sample_bars(symbol)
    episodes = pump_episodes(symbol)
    assert 3 <= len(episodes) <= 6
    for t in episodes:
        before = bars.loc[t - pd.Timedelta("2h") : t - pd.Timedelta("1min")]
        pump = bars.loc[t : t + pd.Timedelta("100min")]
        peak_gain = pump["high"].max() / before["close"].iloc[-1] - 1
        assert 0.04 < peak_gain < 0.25, (t, peak_gain)
        assert pump["volume"].rolling(10).mean().max() > 4 * before["volume"].median()  # volume spike
        assert pump["close"].iloc[-1] < pump["close"].max() * 0.97  # the dump
    assert pump_episodes(symbol).equals(episodes)


def test_year_of_minutes_is_whole_and_clean():
    """A full year from a cold cache (its speed is measured by bench/sample_data.py, not here)."""
    _sample.cache_clear()
    _minute_path.cache_clear()
    bars = sample_bars("BNB/USDT", days=365)
    assert len(bars) == 525_600 and bars.index.is_unique
    assert bars.index[-1] - bars.index[0] == pd.Timedelta(days=365) - pd.Timedelta(minutes=1)
    assert quality_report(bars).ok
