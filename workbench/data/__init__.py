"""Market data: the bars schema and quality report, sources (bundled sample, CSV, ccxt) and the Parquet cache.

:func:`load_bars` is the one entry backtests and replays use. The ccxt source is imported on first use.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.data.cache import BarCache
from workbench.data.csv import read_csv_bars
from workbench.data.sample import SAMPLE_DAYS, SAMPLE_START, available_symbols, pump_episodes, sample_bars
from workbench.data.schema import (
    BARS_COLUMNS,
    BarsError,
    QualityReport,
    bar_interval,
    check_timeframe,
    interval_name,
    quality_report,
    resample_bars,
    timeframe_delta,
    to_utc,
    validate_bars,
)

if TYPE_CHECKING:
    from workbench.config import DataConfig
    from workbench.data.ccxt_source import DataSourceError, fetch_ohlcv

__all__ = [
    "BARS_COLUMNS", "BarCache", "BarsError", "DataSourceError", "QualityReport", "SAMPLE_DAYS", "SAMPLE_START",
    "available_symbols", "bar_interval", "check_timeframe", "fetch_ohlcv", "interval_name", "load_bars",
    "pump_episodes", "quality_report", "read_csv_bars", "resample_bars", "sample_bars", "timeframe_delta",
    "validate_bars",
]


def __getattr__(name: str) -> Any:  # ccxt takes a while to import; only the ccxt source needs it
    if name in ("fetch_ohlcv", "DataSourceError"):
        from workbench.data import ccxt_source

        return getattr(ccxt_source, name)
    raise AttributeError(f"module 'workbench.data' has no attribute {name!r}")


def _sample_days(symbol: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> int:
    if start is not None and start < SAMPLE_START:
        raise BarsError(f"sample data starts at {SAMPLE_START:%Y-%m-%d}; start {start} is earlier, use a later start")
    if end is None:
        return SAMPLE_DAYS
    return max(SAMPLE_DAYS, math.ceil((end - SAMPLE_START) / pd.Timedelta(days=1) + 1e-9))


def load_bars(data: DataConfig, symbol: str, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Validated bars for ``symbol`` in ``[start, end]`` (inclusive, UTC; either may be omitted) from ``data.source``:

    - ``sample``: the bundled generator (90 days from 2024-01-01, longer when ``end`` is later);
    - ``csv``: ``data.csv_path`` (a single-symbol file; ``symbol`` is not checked against it), resampled
      to ``data.timeframe`` when its bars are finer;
    - ``ccxt``: ``data.exchange`` through the default on-disk cache (``start`` required unless cached).

    Raises :class:`BarsError` when the range holds no bars, saying which range is available.
    """
    start_ts, end_ts = to_utc(start), to_utc(end)
    if start_ts is not None and end_ts is not None and end_ts < start_ts:
        raise BarsError(f"end {end_ts} is before start {start_ts}; swap them")
    if data.source == "sample":
        bars = sample_bars(symbol, data.timeframe, days=_sample_days(symbol, start_ts, end_ts))
    elif data.source == "csv":
        assert data.csv_path is not None  # DataConfig refuses source 'csv' without a csv_path
        bars = resample_bars(validate_bars(read_csv_bars(data.csv_path)), data.timeframe)
    elif data.source == "ccxt":
        from workbench.data.ccxt_source import fetch_ohlcv

        bars = fetch_ohlcv(data.exchange, symbol, data.timeframe, start_ts, end_ts, cache=BarCache())
    else:
        raise BarsError(f"unknown data source {data.source!r}; use 'sample', 'csv' or 'ccxt'")
    bars = validate_bars(bars)
    sliced = bars.loc[start_ts:end_ts]
    if sliced.empty:
        have = f"{bars.index[0]} to {bars.index[-1]}" if len(bars) else "nothing"
        raise BarsError(
            f"no {symbol} bars from {start_ts or 'the beginning'} to {end_ts or 'the end'} in the {data.source} data; "
            f"available: {have}"
            + ("; give an end date to generate more sample days" if data.source == "sample" else "")
        )
    return sliced
