"""Historical OHLCV through ccxt: paginated, rate-limited, retried on network errors, cached and resumable."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import ccxt
import pandas as pd
from tqdm.auto import tqdm

from workbench.data.cache import BarCache, TimeLike
from workbench.data.schema import BARS_COLUMNS, BarsError, empty_bars, timeframe_delta, to_utc, validate_bars

log = logging.getLogger(__name__)
T = TypeVar("T")
_FLUSH_SECONDS = 2.0  # write fetched pages to the cache at least this often (and always on the way out)


class DataSourceError(BarsError):
    """The exchange refused the request (unknown exchange, symbol or timeframe, or another exchange error)."""


def make_exchange(exchange: str | ccxt.Exchange) -> ccxt.Exchange:
    """A ccxt exchange from its id (rate limiting on), or the instance given."""
    if isinstance(exchange, ccxt.Exchange):
        return exchange
    cls = getattr(ccxt, str(exchange), None) if exchange in ccxt.exchanges else None
    if cls is None:
        raise DataSourceError(f"unknown exchange {exchange!r}; use a ccxt id such as 'binance', 'kraken' or "
                              "'coinbase' (see ccxt.exchanges)")
    return cls({"enableRateLimit": True})


def call_with_retry(ex: ccxt.Exchange, fn: Callable[..., T], *args: Any, max_retries: int = 5,
                    retry_delay: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn(*args)`` through the one retrier (:mod:`workbench.retry`): transient ccxt errors
    (timeouts, 5xx, dropped connections, rate limits honouring Retry-After) are retried with exponential
    backoff ``retry_delay * 2**attempt``, waiting through ``sleep``. Other ccxt errors are raised at once as
    :class:`DataSourceError`.
    """
    from workbench.retry import RetryPolicy, is_transient
    from workbench.retry import call_with_retry as retrying

    try:
        return retrying(ex, fn, *args, policy=RetryPolicy(retries=max_retries, base=retry_delay, cap=60.0),
                        sleep=sleep)
    except ccxt.BaseError as e:
        if is_transient(e):
            e.add_note("with a cache, the bars fetched so far are kept: run again to resume")
            raise
        if isinstance(e, ccxt.BadSymbol):
            raise DataSourceError(f"{ex.id} does not know that symbol: {e}") from e
        raise DataSourceError(f"{ex.id} refused the request ({type(e).__name__}): {e}") from e


def _to_frame(rows: list[list]) -> pd.DataFrame:
    if not rows:
        return empty_bars()
    df = pd.DataFrame([r[:6] for r in rows], columns=["time", *BARS_COLUMNS])
    df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return validate_bars(df.set_index("time"))


def fetch_ohlcv(
    exchange: str | ccxt.Exchange,
    symbol: str,
    timeframe: str = "1m",
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    cache: BarCache | None = None,
    progress: bool = True,
    max_retries: int = 5,
    retry_delay: float = 1.0,
    limit: int = 1000,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Bars for ``symbol`` in ``[start, end]`` (inclusive; ``end`` defaults to now) from a ccxt exchange.

    Pages forward with ``exchange.fetch_ohlcv(symbol, timeframe, since, limit)``. With a ``cache`` only what
    is missing is fetched (before the first and after the last cached bar) and pages are saved as they come,
    so an interrupted download resumes. ``start`` may be omitted when the cache already holds these bars.
    Retry waits go through ``sleep`` (tests pass a recorder).
    """
    ex = make_exchange(exchange)
    step = timeframe_delta(timeframe)
    retry: dict[str, Any] = {"max_retries": max_retries, "retry_delay": retry_delay, "sleep": sleep}
    call_with_retry(ex, ex.load_markets, **retry)
    if symbol not in ex.markets:
        some = ", ".join(list(ex.markets)[:5])
        raise DataSourceError(f"{ex.id} has no market {symbol!r}; symbols look like {some} …")
    if ex.timeframes and timeframe not in ex.timeframes:
        raise DataSourceError(f"{ex.id} has no {timeframe!r} bars; it offers {', '.join(ex.timeframes)}")
    cov = cache.coverage(ex.id, symbol, timeframe) if cache else None
    start_ts = to_utc(start) if start is not None else (cov[0] if cov else None)
    if start_ts is None:
        raise DataSourceError(f"give a start time for {symbol} on {ex.id}; nothing is cached yet to start from")
    end_ts = to_utc(end) if end is not None else pd.Timestamp(ex.milliseconds(), unit="ms", tz="UTC")
    if end_ts < start_ts:
        raise DataSourceError(f"end {end_ts} is before start {start_ts}; swap them")
    start_ts = start_ts.ceil(step) if start_ts.value % step.value else start_ts
    end_ts = end_ts.floor(step)

    if cov is None:
        ranges = [(start_ts, end_ts, True)]
    else:  # (from, to, save pages as they come); the cache stays one contiguous stretch, so a range away
        # from it is fetched up to its edge, and the part before it is saved only once complete
        ranges = [(start_ts, cov[0] - step, False), (cov[1] + step, end_ts, True)]
        ranges = [r for r in ranges if r[0] <= r[1]]
    total = sum((b - a) // step + 1 for a, b, _ in ranges)
    frames: list[pd.DataFrame] = []
    with tqdm(total=total, unit="bar", desc=f"{ex.id} {symbol} {timeframe}", disable=not progress, leave=False) as bar:
        for a, b, incremental in ranges:
            got = _fetch_range(ex, symbol, timeframe, a, b, limit, retry, bar, cache if incremental else None)
            if cache is not None and not incremental and len(got):
                cache.merge(ex.id, symbol, timeframe, got)
            frames.append(got)
    if cache is not None:
        return cache.read(ex.id, symbol, timeframe, start_ts, end_ts)
    return validate_bars(pd.concat(frames)) if frames else empty_bars()


def _fetch_range(
    ex: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    limit: int,
    retry: dict,
    bar: tqdm,
    cache: BarCache | None,
) -> pd.DataFrame:
    """Page forward from ``start`` to ``end``; with ``cache``, flush pages to it as they come (and on failure)."""
    step_ms = timeframe_delta(timeframe).value // 1_000_000
    since, end_ms = start.value // 1_000_000, end.value // 1_000_000
    pages: list[pd.DataFrame] = []
    pending: list[pd.DataFrame] = []
    flushed = time.monotonic()

    def flush() -> None:
        nonlocal flushed
        if cache is not None and pending:
            cache.merge(ex.id, symbol, timeframe, pd.concat(pending))
            pending.clear()
        flushed = time.monotonic()

    try:
        while since <= end_ms:
            rows = call_with_retry(ex, ex.fetch_ohlcv, symbol, timeframe, since, limit, **retry)
            rows = [r for r in rows if since <= r[0] <= end_ms]
            if not rows:
                break
            page = _to_frame(rows)
            pages.append(page)
            pending.append(page)
            bar.update(len(page))
            since = int(rows[-1][0]) + step_ms
            if time.monotonic() - flushed >= _FLUSH_SECONDS:
                flush()
    finally:
        flush()
    return validate_bars(pd.concat(pages)) if pages else empty_bars()
