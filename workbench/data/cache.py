"""On-disk bars cache: one Parquet file per exchange/symbol/timeframe under ``workbench.paths.cache_dir()``."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from workbench.data.schema import BARS_COLUMNS, BarsError, empty_bars, timeframe_delta, to_utc, validate_bars
from workbench.paths import cache_dir

_EXCHANGE_RE = re.compile(r"^[a-z0-9_]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

TimeLike: TypeAlias = str | pd.Timestamp | None


class BarCache:
    """Bars kept as ``<root>/<exchange>/<SYMBOL>/<timeframe>.parquet``; ``"BTC/USDT"`` becomes ``BTC-USDT``.

    Writes are atomic (a temporary file renamed into place), so an interrupted download leaves a valid cache.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else cache_dir()

    def __repr__(self) -> str:
        return f"BarCache({str(self.root)!r})"

    def path(self, exchange: str, symbol: str, timeframe: str) -> Path:
        """The Parquet file holding these bars (it may not exist yet)."""
        if not isinstance(exchange, str) or not _EXCHANGE_RE.match(exchange):
            raise BarsError(f"exchange id {exchange!r} is not a ccxt id such as 'binance' "
                            "(lower-case letters, digits, _)")
        if not isinstance(symbol, str) or not symbol.strip(". "):
            raise BarsError(f"symbol {symbol!r} is empty; give a market symbol such as 'BTC/USDT'")
        timeframe_delta(timeframe)
        safe = _UNSAFE.sub("_", symbol.replace("/", "-").replace(":", "_"))
        return self.root / exchange / safe / f"{timeframe}.parquet"

    def read(self, exchange: str, symbol: str, timeframe: str, start: TimeLike = None,
             end: TimeLike = None) -> pd.DataFrame:
        """Cached bars in ``[start, end]`` (both inclusive, either open); an empty bars frame when nothing is cached."""
        path = self.path(exchange, symbol, timeframe)
        if not path.exists():
            return empty_bars()
        filters = []
        if (s := to_utc(start)) is not None:
            filters.append(("time", ">=", s))
        if (e := to_utc(end)) is not None:
            filters.append(("time", "<=", e))
        import pyarrow.parquet as pq  # on first read: a dashboard kernel showing sample bars goes without it

        table = pq.read_table(path, columns=list(BARS_COLUMNS) + ["time"], filters=filters or None)
        df = table.to_pandas()
        if "time" in df.columns:
            df = df.set_index("time")
        return validate_bars(df) if len(df) else empty_bars()

    def write(self, exchange: str, symbol: str, timeframe: str, bars: pd.DataFrame) -> None:
        """Replace the cached bars with ``bars`` (validated first)."""
        path = self.path(exchange, symbol, timeframe)
        bars = validate_bars(bars)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".parquet.tmp")
        os.close(fd)
        try:
            bars.to_parquet(tmp, engine="pyarrow")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def merge(self, exchange: str, symbol: str, timeframe: str, bars: pd.DataFrame) -> pd.DataFrame:
        """Add ``bars`` to the cache; where a time is already cached the new bar wins. Returns the merged bars."""
        new = validate_bars(bars)
        old = self.read(exchange, symbol, timeframe)
        merged = validate_bars(pd.concat([old, new])) if len(old) else new  # keep="last": new rows win
        self.write(exchange, symbol, timeframe, merged)
        return merged

    def coverage(self, exchange: str, symbol: str, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """``(first, last)`` cached bar times, or ``None`` when nothing is cached."""
        path = self.path(exchange, symbol, timeframe)
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        times = pq.read_table(path, columns=["time"]).column("time").to_pandas()
        if times.empty:
            return None
        return to_utc(times.min()), to_utc(times.max())

    def delete(self, exchange: str, symbol: str, timeframe: str) -> bool:
        """Remove these cached bars; True if there was something to remove."""
        path = self.path(exchange, symbol, timeframe)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed
