"""fetch_ohlcv with a real ccxt.binance over real HTTP against the loopback exchange."""
from __future__ import annotations

import ccxt
import pandas as pd
import pytest

from workbench.config import DataConfig
from workbench.data import BarCache, ccxt_source, load_bars, quality_report
from workbench.data.ccxt_source import DataSourceError, fetch_ohlcv, make_exchange

START = pd.Timestamp("2024-01-02", tz="UTC")
KLINES = "/api/v3/klines"


def minutes(n: int) -> pd.Timedelta:
    return pd.Timedelta(minutes=n)


def expected(ex, start, end, symbol="BTC/USDT", tf="1m") -> pd.DataFrame:
    return ex.bars(symbol, tf).loc[start:end]


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_index_equal(got.index, want.index)
    pd.testing.assert_frame_equal(got, want, check_freq=False, rtol=1e-8)  # the wire carries 8 decimals


def starts(ex) -> list[pd.Timestamp]:
    return [pd.Timestamp(int(r.query["startTime"]), unit="ms", tz="UTC")
            for r in ex.requests(KLINES) if r.status == 200]


def test_paginates_past_the_1000_bar_limit(loopback_exchange):
    ex = loopback_exchange
    end = START + minutes(2499)
    bars = fetch_ohlcv(ex.ccxt_client(), "BTC/USDT", "1m", START, end, progress=False)
    assert_same(bars, expected(ex, START, end))
    reqs = ex.requests(KLINES)
    assert len(reqs) == 3 and all(r.query["limit"] == "1000" for r in reqs)
    assert starts(ex) == [START, START + minutes(1000), START + minutes(2000)]


def test_other_timeframes_and_open_end(loopback_exchange):
    ex = loopback_exchange
    bars = fetch_ohlcv(ex.ccxt_client(), "ETH/USDT", "1h", "2024-03-01", None, progress=False)
    assert_same(bars, expected(ex, pd.Timestamp("2024-03-01", tz="UTC"), None, "ETH/USDT", "1h"))


def test_retries_through_503s_and_dropped_connections(loopback_exchange):
    ex = loopback_exchange
    ex.fail_next(2, 503, path=KLINES, after=1)
    ex.drop_next(1, path=KLINES)
    end = START + minutes(1999)
    bars = fetch_ohlcv(ex.ccxt_client(), "BTC/USDT", "1m", START, end, progress=False, retry_delay=0.001)
    assert_same(bars, expected(ex, START, end))
    assert [r.status for r in ex.requests(KLINES)] == [200, 503, 503, 0, 200]


def test_rate_limit_honours_retry_after(loopback_exchange):
    ex = loopback_exchange
    ex.fail_next(1, 429, retry_after=0.3, path=KLINES)
    waits: list[float] = []
    bars = fetch_ohlcv(ex.ccxt_client(), "BTC/USDT", "1m", START, START + minutes(9), progress=False,
                       retry_delay=0.001, sleep=waits.append)
    assert waits == [0.3]  # Retry-After, not the 1 ms backoff
    assert len(bars) == 10 and [r.status for r in ex.requests(KLINES)] == [429, 200]


def test_gives_up_after_max_retries_and_keeps_what_it_fetched(loopback_exchange, tmp_path):
    ex = loopback_exchange
    cache = BarCache(tmp_path)
    ex.fail_next(10, 503, path=KLINES, after=2)
    with pytest.raises(ccxt.ExchangeNotAvailable) as info:
        fetch_ohlcv(ex.ccxt_client(), "BTC/USDT", "1m", START, START + minutes(4999), cache=cache,
                    progress=False, max_retries=2, retry_delay=0.001)
    assert "gave up after 2 retries" in "".join(info.value.__notes__)
    assert len(ex.requests(KLINES)) == 2 + 3
    assert cache.coverage("binance", "BTC/USDT", "1m") == (START, START + minutes(1999))


def test_resume_fetches_only_what_is_missing(loopback_exchange, tmp_path):
    ex = loopback_exchange
    cache = BarCache(tmp_path)
    client = ex.ccxt_client()
    fetch_ohlcv(client, "BTC/USDT", "1m", START + minutes(1000), START + minutes(2999), cache=cache, progress=False)
    ex.clear_log()
    end = START + minutes(4499)
    bars = fetch_ohlcv(client, "BTC/USDT", "1m", START, end, cache=cache, progress=False)
    assert_same(bars, expected(ex, START, end))
    assert starts(ex) == [START, START + minutes(3000), START + minutes(4000)]  # nothing inside 1000..2999
    ex.clear_log()
    again = fetch_ohlcv(client, "BTC/USDT", "1m", START + minutes(10), START + minutes(20), cache=cache, progress=False)
    assert len(again) == 11 and ex.requests(KLINES) == []  # fully cached: no kline requests
    assert cache.coverage("binance", "BTC/USDT", "1m") == (START, end)


def test_unknown_symbol_is_not_retried(loopback_exchange):
    ex = loopback_exchange
    with pytest.raises(DataSourceError, match="no market 'FOO/BAR'"):
        fetch_ohlcv(ex.ccxt_client(), "FOO/BAR", "1m", START, START + minutes(5), progress=False)
    ex.fail_next(1, 400, error=(-1121, "Invalid symbol."), path=KLINES)
    with pytest.raises(DataSourceError, match="does not know that symbol"):
        fetch_ohlcv(ex.ccxt_client(), "BTC/USDT", "1m", START, START + minutes(5), progress=False, retry_delay=0.001)
    assert len(ex.requests(KLINES)) == 1


def test_bad_timeframe_and_range(loopback_exchange):
    client = loopback_exchange.ccxt_client()
    with pytest.raises(DataSourceError, match="no '7m' bars"):
        fetch_ohlcv(client, "BTC/USDT", "7m", START, START + minutes(5), progress=False)
    with pytest.raises(DataSourceError, match="before start"):
        fetch_ohlcv(client, "BTC/USDT", "1m", START, START - minutes(5), progress=False)
    with pytest.raises(DataSourceError, match="give a start"):
        fetch_ohlcv(client, "BTC/USDT", "1m", None, START, progress=False)


def test_progress_bar_on_and_off(loopback_exchange, capsys):
    client = loopback_exchange.ccxt_client()
    fetch_ohlcv(client, "BTC/USDT", "1m", START, START + minutes(99), progress=False)
    assert capsys.readouterr().err == ""
    fetch_ohlcv(client, "BTC/USDT", "1m", START, START + minutes(99), progress=True)
    assert "BTC/USDT" in capsys.readouterr().err


def test_exchange_ids():
    assert make_exchange("binance").enableRateLimit
    with pytest.raises(DataSourceError, match="unknown exchange 'nosuchexchange'"):
        make_exchange("nosuchexchange")


def test_load_bars_from_ccxt_uses_the_default_cache(loopback_exchange, tmp_path, monkeypatch):
    ex = loopback_exchange
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(ccxt_source, "make_exchange", lambda _id: ex.ccxt_client())
    data = DataConfig(source="ccxt", exchange="binance", timeframe="5m")
    bars = load_bars(data, "SOL/USDT", "2024-02-01", "2024-02-03")
    want = expected(ex, pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-02-03", tz="UTC"), "SOL/USDT", "5m")
    assert_same(bars, want)
    assert (tmp_path / "cache" / "binance" / "SOL-USDT" / "5m.parquet").exists()


def test_cache_stays_contiguous_when_asked_for_a_range_away_from_it(loopback_exchange, tmp_path):
    ex = loopback_exchange
    cache = BarCache(tmp_path)
    client = ex.ccxt_client()
    fetch_ohlcv(client, "BTC/USDT", "1m", START + minutes(1000), START + minutes(1999), cache=cache, progress=False)
    ex.clear_log()
    later = fetch_ohlcv(client, "BTC/USDT", "1m", START + minutes(3000), START + minutes(3099), cache=cache,
                        progress=False)
    assert_same(later, expected(ex, START + minutes(3000), START + minutes(3099)))
    assert starts(ex) == [START + minutes(2000), START + minutes(3000)]  # the hole 2000..2999 is filled too
    earlier = fetch_ohlcv(client, "BTC/USDT", "1m", START, START + minutes(9), cache=cache, progress=False)
    assert len(earlier) == 10
    assert cache.coverage("binance", "BTC/USDT", "1m") == (START, START + minutes(3099))
    assert quality_report(cache.read("binance", "BTC/USDT", "1m")).ok
