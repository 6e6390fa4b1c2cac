"""Funding rates of perpetual swaps: history through ccxt (``fetch_funding_rate_history``), cached on disk
like bars, or a constant.

A funding-rate series is a float ``pandas.Series`` named ``funding_rate`` indexed by funding time (UTC,
ascending, unique): at each time a position pays ``quantity x mark price x rate`` (positive: longs pay
shorts). The execution core takes such a series; this module only fetches and caches it.

* :func:`fetch_funding_rates` pages forward through the exchange's history (Binance: every 8 h, at most
  1000 a request), retried like bar downloads (:func:`workbench.data.ccxt_source.call_with_retry`). With a
  :class:`FundingCache` only what is missing is fetched, and what was fetched is kept even if a later page
  fails (run again to resume).
* :func:`constant_funding` is the fallback: one rate at every funding time (Binance's 00:00, 08:00, 16:00
  UTC by default). ``fetch_funding_rates(..., fallback=rate)`` uses it for exchanges without a funding
  history (or symbols that are not swaps).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd

from workbench.data.cache import BarCache, TimeLike
from workbench.data.ccxt_source import DataSourceError, call_with_retry, make_exchange
from workbench.data.schema import to_utc

NAME = "funding_rate"
EVERY = pd.Timedelta(hours=8)  # Binance's funding interval
PAGE = 1000  # Binance's most rows per fundingRate request


def empty_funding() -> pd.Series:
    """A funding-rate series with no rows."""
    return pd.Series([], index=pd.DatetimeIndex([], tz="UTC", name="time"), name=NAME, dtype="float64")


def _series(times: list[int], rates: list[float]) -> pd.Series:
    s = pd.Series(rates, index=pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="time"),
                  name=NAME, dtype="float64")
    return s[~s.index.duplicated(keep="last")].sort_index()


class FundingCache:
    """Funding rates kept as ``<root>/<exchange>/<SYMBOL>/funding.parquet`` beside the bars of the same
    symbol (:class:`~workbench.data.cache.BarCache`'s directory rule); writes are atomic."""

    def __init__(self, root: str | Path | None = None):
        self.bars = BarCache(root)

    def path(self, exchange: str, symbol: str) -> Path:
        return self.bars.path(exchange, symbol, "1m").with_name("funding.parquet")

    def read(self, exchange: str, symbol: str) -> pd.Series:
        path = self.path(exchange, symbol)
        if not path.exists():
            return empty_funding()
        s = pd.read_parquet(path)[NAME]
        s.index = pd.DatetimeIndex(s.index, name="time").tz_convert("UTC")
        return s

    def merge(self, exchange: str, symbol: str, rates: pd.Series) -> pd.Series:
        """Add ``rates`` to the cache (a time already cached takes the new rate); returns all cached rates."""
        old = self.read(exchange, symbol)
        merged = pd.concat([old, rates]) if len(old) else rates
        merged = merged[~merged.index.duplicated(keep="last")].sort_index().rename(NAME)
        path = self.path(exchange, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".parquet.tmp")
        os.close(fd)
        try:
            merged.to_frame().to_parquet(tmp, engine="pyarrow")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return merged


def constant_funding(rate: float, start: TimeLike, end: TimeLike, every: pd.Timedelta | str = EVERY) -> pd.Series:
    """``rate`` at every funding time in ``[start, end]``: multiples of ``every`` from midnight UTC (8 h:
    00:00, 08:00, 16:00, as Binance funds)."""
    step = pd.Timedelta(every)
    s, e = to_utc(start), to_utc(end)
    if s is None or e is None:
        raise ValueError("constant_funding needs a start and an end time (the span the session covers)")
    if not step > pd.Timedelta(0):
        raise ValueError(f"funding interval must be positive (got {every!r}); Binance funds every '8h'")
    times = pd.date_range(s.ceil(step), e, freq=step, name="time")
    return pd.Series(float(rate), index=times, name=NAME, dtype="float64")


def fetch_funding_rates(exchange: str | ccxt.Exchange, symbol: str, start: TimeLike, end: TimeLike = None, *,
                        cache: FundingCache | None = None, fallback: float | None = None, max_retries: int = 5,
                        retry_delay: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> pd.Series:
    """The funding rates of ``symbol`` (a swap, e.g. ``BTC/USDT:USDT``) at its funding times in ``[start, end]``
    (``end``: now). ``fallback``: a constant rate used when the exchange has no funding history for it
    (else that raises :class:`~workbench.data.ccxt_source.DataSourceError`)."""
    ex = make_exchange(exchange)
    retry: dict[str, Any] = {"max_retries": max_retries, "retry_delay": retry_delay, "sleep": sleep}
    s = to_utc(start)
    if s is None:
        raise DataSourceError(f"give a start time for the funding rates of {symbol}")
    e = to_utc(end) if end is not None else pd.Timestamp(ex.milliseconds(), unit="ms", tz="UTC")
    if e < s:
        raise DataSourceError(f"end {e} is before start {s}; swap them")
    call_with_retry(ex, ex.load_markets, **retry)
    market = ex.markets.get(symbol)
    problem = (f"{ex.id} has no market {symbol!r}" if market is None else
               f"{symbol} on {ex.id} is not a perpetual swap (no funding); perpetuals are named like "
               f"'{symbol.split(':')[0]}:{symbol.split('/')[-1].split(':')[0]}'" if not market.get("swap") else
               f"{ex.id} offers no funding-rate history" if not ex.has.get("fetchFundingRateHistory") else None)
    if problem is not None:
        if fallback is not None:
            return constant_funding(fallback, s, e)
        raise DataSourceError(f"{problem}; pass fallback=<rate per funding> to use a constant rate")
    cached = cache.read(ex.id, symbol) if cache is not None else empty_funding()
    ranges = [(s, e)]
    if len(cached):  # fetch only what the cache lacks: before its first and after its last time
        ranges = [(s, min(e, cached.index[0] - pd.Timedelta(milliseconds=1))),
                  (max(s, cached.index[-1] + pd.Timedelta(milliseconds=1)), e)]
        ranges = [(a, b) for a, b in ranges if a <= b]
    got = [cached]
    for a, b in ranges:  # the cache stays one stretch: a range before it is saved only once complete
        before = len(cached) > 0 and b < cached.index[0]
        page = _fetch(ex, symbol, a, b, retry, None if before else cache)
        if before and cache is not None and len(page):
            cache.merge(ex.id, symbol, page)
        got.append(page)
    parts = [g for g in got if len(g)]
    out = pd.concat(parts) if parts else empty_funding()
    out = out[~out.index.duplicated(keep="last")].sort_index().rename(NAME)
    return out[(out.index >= s) & (out.index <= e)]


def _fetch(ex: ccxt.Exchange, symbol: str, start: pd.Timestamp, end: pd.Timestamp, retry: dict,
           cache: FundingCache | None) -> pd.Series:
    """Page forward from ``start`` to ``end``; each page goes to the cache as it comes."""
    since, end_ms = start.value // 1_000_000, end.value // 1_000_000
    pages = []
    while since <= end_ms:
        rows = call_with_retry(ex, ex.fetch_funding_rate_history, symbol, since, PAGE, {"until": end_ms}, **retry)
        rows = [r for r in rows if since <= int(r["timestamp"]) <= end_ms and r.get("fundingRate") is not None]
        if not rows:
            break
        page = _series([int(r["timestamp"]) for r in rows], [float(r["fundingRate"]) for r in rows])
        if cache is not None:
            cache.merge(ex.id, symbol, page)
        pages.append(page)
        since = int(rows[-1]["timestamp"]) + 1
    return pd.concat(pages) if pages else empty_funding()
