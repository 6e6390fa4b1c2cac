"""workbench.data.funding: funding-rate history through ccxt (loopback perpetuals), cached, or constant."""
from __future__ import annotations

import pandas as pd
import pytest

from tests.exchange.perp import FUNDING_MS
from tests.exchange.server import LoopbackExchange
from workbench.data.ccxt_source import DataSourceError
from workbench.data.funding import NAME, FundingCache, constant_funding, fetch_funding_rates

PERP = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def lx():
    with LoopbackExchange(symbols=("BTC/USDT",), days=30, clock="2024-01-25", perps=(PERP,)) as ex:
        yield ex


def test_history_is_fetched_by_pages_and_cached(lx, tmp_path):
    cache = FundingCache(tmp_path)
    client = lx.ccxt_client()
    lx.clear_log()
    first = fetch_funding_rates(client, PERP, "2024-01-02", "2024-01-05 08:00", cache=cache)
    times = pd.date_range("2024-01-02", "2024-01-05 08:00", freq="8h", tz="UTC")
    assert first.name == NAME and list(first.index) == list(times)
    assert list(first) == [lx.perp.rate("BTCUSDT", t.value // 1_000_000) for t in times]
    assert cache.path("binance", PERP).exists()
    lx.clear_log()
    again = fetch_funding_rates(client, PERP, "2024-01-03", "2024-01-05", cache=cache)  # inside the cache
    assert lx.requests("/fapi/v1/fundingRate") == []
    pd.testing.assert_series_equal(again, first["2024-01-03":"2024-01-05 00:00"])
    later = fetch_funding_rates(client, PERP, "2024-01-02", "2024-01-07", cache=cache)  # only the new part
    (req,) = lx.requests("/fapi/v1/fundingRate")
    assert int(req.query["startTime"]) == first.index[-1].value // 1_000_000 + 1
    assert len(later) == len(times) + 5 and later.index.is_monotonic_increasing
    assert (later.index.as_unit("ms").asi8 % FUNDING_MS == 0).all()


def test_constant_fallback(lx):
    client = lx.ccxt_client()
    with pytest.raises(DataSourceError, match="not a perpetual swap.*fallback="):
        fetch_funding_rates(client, "BTC/USDT", "2024-01-02", "2024-01-03")
    flat = fetch_funding_rates(client, "BTC/USDT", "2024-01-02 01:00", "2024-01-03", fallback=0.0001)
    assert list(flat.index.strftime("%d %H")) == ["02 08", "02 16", "03 00"] and (flat == 0.0001).all()
    pd.testing.assert_series_equal(flat, constant_funding(0.0001, "2024-01-02 01:00", "2024-01-03"))
    with pytest.raises(ValueError, match="positive"):
        constant_funding(0.0001, "2024-01-02", "2024-01-03", every="0h")
