"""load_bars: the one entry backtests and replays use, for the sample and CSV sources."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.config import DataConfig
from workbench.data import BarsError, load_bars, sample_bars


def test_sample_default_span():
    bars = load_bars(DataConfig(), "BTC/USDT")
    assert bars.index[0] == pd.Timestamp("2024-01-01", tz="UTC") and len(bars) == 90 * 1440


def test_sample_slice_is_inclusive_and_timeframe_applies():
    bars = load_bars(DataConfig(timeframe="1h"), "ETH/USDT", "2024-01-10", "2024-01-11")
    assert len(bars) == 25 and bars.index[-1] == pd.Timestamp("2024-01-11", tz="UTC")
    assert bars.equals(sample_bars("ETH/USDT", "1h").iloc[9 * 24 : 10 * 24 + 1])


def test_sample_extends_past_90_days_consistently():
    bars = load_bars(DataConfig(timeframe="1d"), "BTC/USDT", "2024-03-01", "2024-06-30")
    assert bars.index[-1] == pd.Timestamp("2024-06-30", tz="UTC")
    assert bars.loc[:"2024-03-30"].equals(sample_bars("BTC/USDT", "1d").loc["2024-03-01":])


def test_sample_errors():
    with pytest.raises(BarsError, match="starts at 2024-01-01"):
        load_bars(DataConfig(), "BTC/USDT", "2023-12-31")
    with pytest.raises(BarsError, match="available: 2024-01-01 00:00:00\\+00:00 to 2024-03-30 23:59.*give an end"):
        load_bars(DataConfig(), "BTC/USDT", "2024-05-01")
    with pytest.raises(BarsError, match="before start"):
        load_bars(DataConfig(), "BTC/USDT", "2024-02-01", "2024-01-01")
    with pytest.raises(BarsError, match="available: BTC/USDT"):
        load_bars(DataConfig(), "DOGE/USDT")


def test_csv_source(tmp_path):
    path = tmp_path / "x.csv"
    sample_bars("XRP/USDT", days=2).to_csv(path)
    bars = load_bars(DataConfig(source="csv", csv_path=str(path)), "XRP/USDT", "2024-01-02")
    assert bars.index[0] == pd.Timestamp("2024-01-02", tz="UTC") and len(bars) == 1440
    with pytest.raises(BarsError,
                       match="no XRP/USDT bars .* available: 2024-01-01 00:00:00\\+00:00 to 2024-01-02 23:59"):
        load_bars(DataConfig(source="csv", csv_path=str(path)), "XRP/USDT", "2025-01-01")


def test_csv_bars_are_resampled_to_the_configured_timeframe(tmp_path):
    path = tmp_path / "x.csv"
    sample_bars("XRP/USDT", days=2).to_csv(path)
    hourly = load_bars(DataConfig(source="csv", csv_path=str(path), timeframe="1h"), "XRP/USDT")
    expected = sample_bars("XRP/USDT", "1h", days=2)  # the generator aggregates its minutes the same way
    assert len(hourly) == 48
    pd.testing.assert_frame_equal(hourly, expected, check_freq=False, rtol=1e-12)
    coarse = tmp_path / "h.csv"
    expected.to_csv(coarse)
    with pytest.raises(BarsError, match="coarser than the timeframe '1m'; set the timeframe"):
        load_bars(DataConfig(source="csv", csv_path=str(coarse)), "XRP/USDT")
