"""The Parquet bar cache: layout, ranges, merge semantics and coverage."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.data import BarCache, BarsError, sample_bars


@pytest.fixture
def cache(tmp_path) -> BarCache:
    return BarCache(tmp_path)


def test_default_root_follows_workbench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert BarCache().root == tmp_path / "cache"


def test_paths_are_safe(cache):
    assert cache.path("binance", "BTC/USDT", "1m") == cache.root / "binance" / "BTC-USDT" / "1m.parquet"
    assert cache.path("binance", "BTC/USDT:USDT", "1h").parent.name == "BTC-USDT_USDT"
    assert cache.root in cache.path("binance", "../../etc", "1m").parents
    for bad in [("Bin/ance", "BTC/USDT", "1m"), ("binance", "", "1m"), ("binance", "..", "1m"),
                ("binance", "BTC/USDT", "1x")]:
        with pytest.raises(BarsError):
            cache.path(*bad)


def test_empty_cache(cache):
    assert cache.coverage("binance", "BTC/USDT", "1m") is None
    assert cache.read("binance", "BTC/USDT", "1m").empty


def test_write_read_range_and_coverage(cache, bars):
    cache.write("binance", "BTC/USDT", "1m", bars)
    pd.testing.assert_frame_equal(cache.read("binance", "BTC/USDT", "1m"), bars, check_freq=False)
    part = cache.read("binance", "BTC/USDT", "1m", "2024-01-01 01:00", "2024-01-01 01:09")
    assert len(part) == 10 and part.index[0] == pd.Timestamp("2024-01-01 01:00", tz="UTC")
    assert cache.coverage("binance", "BTC/USDT", "1m") == (bars.index[0], bars.index[-1])
    assert cache.read("binance", "ETH/USDT", "1m").empty  # other symbols untouched


def test_merge_keeps_newest_and_extends(cache, bars):
    cache.write("binance", "BTC/USDT", "1m", bars.iloc[:100])
    newer = bars.iloc[50:200].copy()
    newer["close"] = newer["close"] + 1
    merged = cache.merge("binance", "BTC/USDT", "1m", newer)
    assert len(merged) == 200 and merged.index.is_unique
    assert merged["close"].iloc[:50].equals(bars["close"].iloc[:50])
    assert merged["close"].iloc[50:].equals(newer["close"])
    assert cache.read("binance", "BTC/USDT", "1m").equals(merged)


def test_delete(cache):
    cache.write("kraken", "ETH/USDT", "1h", sample_bars("ETH/USDT", "1h", days=1))
    assert cache.delete("kraken", "ETH/USDT", "1h") and not cache.delete("kraken", "ETH/USDT", "1h")
