"""Recorded L2 order books: stored next to the bars cache, recorded from ccxt, and the depth model of backtests.

:class:`BookStore` keeps one Parquet file per exchange and symbol, ``<root>/<exchange>/<SYMBOL>/book.parquet``
beside that symbol's bars (:class:`~workbench.data.cache.BarCache`), one row per level of a snapshot:
``time`` (UTC), ``side`` ('bid' or 'ask'), ``level`` (0 = best), ``price``, ``amount``. Writes are atomic.
:func:`record` (``workbench data record``) polls ``fetch_order_book`` for a while and caches the bars of the
same span. :func:`calibrated_impact` fits the volume model's ``impact`` from recorded books
(:func:`workbench.execution.depth.fit_impact`) and :func:`depth_config` puts it into a config whose
``depth.model`` is 'book' (backtests and replayed paper sessions; with no recorded books the configured
slippage model stays).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import SessionConfig
from workbench.data.cache import BarCache, TimeLike
from workbench.data.schema import BarsError, timeframe_delta, to_utc
from workbench.execution.depth import fit_impact, impact_samples, levels

log = logging.getLogger(__name__)
BOOK_COLUMNS = ("time", "side", "level", "price", "amount")
MAX_IMPACT = 10.0  # SlippageModel.impact's upper bound

__all__ = ["BOOK_COLUMNS", "BookStore", "Recording", "book_rows", "calibrated_impact", "depth_config", "record"]


def book_rows(order_book: dict[str, Any], at: pd.Timestamp, max_levels: int | None = None) -> pd.DataFrame:
    """A ccxt order book (``{'bids': [[price, amount], ...], 'asks': ...}``) as :data:`BOOK_COLUMNS` rows at
    ``at``; raises ValueError naming a bad level."""
    parts = []
    for key, side in (("bids", "bid"), ("asks", "ask")):
        lv = levels(order_book.get(key) or [], key)[:max_levels]
        parts.append(pd.DataFrame({"time": at, "side": side, "level": np.arange(len(lv), dtype=np.int32),
                                   "price": lv[:, 0], "amount": lv[:, 1]}))
    out = pd.concat(parts, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True).astype("datetime64[ns, UTC]")
    return out


class BookStore:
    """Recorded books under ``root`` (default: the bars cache's directory). See the module docstring."""

    def __init__(self, root: str | Path | None = None):
        self.bars = BarCache(root)
        self.root = self.bars.root

    def __repr__(self) -> str:
        return f"BookStore({str(self.root)!r})"

    def path(self, exchange: str, symbol: str) -> Path:
        """The Parquet file of these books, beside the symbol's cached bars (it may not exist yet)."""
        return self.bars.path(exchange, symbol, "1m").parent / "book.parquet"

    def read(self, exchange: str, symbol: str, start: TimeLike = None, end: TimeLike = None) -> pd.DataFrame:
        """Recorded rows in ``[start, end]`` (inclusive, either open), by time, side, level; empty if none."""
        path = self.path(exchange, symbol)
        if not path.exists():
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                BOOK_COLUMNS, ("datetime64[ns, UTC]", object, np.int32, float, float))})
        df = pd.read_parquet(path)
        if (s := to_utc(start)) is not None:
            df = df[df["time"] >= s]
        if (e := to_utc(end)) is not None:
            df = df[df["time"] <= e]
        return df.reset_index(drop=True)

    def append(self, exchange: str, symbol: str, rows: pd.DataFrame) -> int:
        """Add snapshots (:func:`book_rows`); a snapshot time already recorded is replaced. Returns the rows kept."""
        missing = [c for c in BOOK_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"book rows need the columns {', '.join(BOOK_COLUMNS)}; missing {', '.join(missing)}")
        old = self.read(exchange, symbol)
        if len(old):
            old = old[~old["time"].isin(rows["time"].unique())]
        df = pd.concat([old, rows[list(BOOK_COLUMNS)]], ignore_index=True) if len(old) else rows[list(BOOK_COLUMNS)]
        df = df.sort_values(["time", "side", "level"], kind="stable").reset_index(drop=True)
        path = self.path(exchange, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".parquet.tmp")
        os.close(fd)
        try:
            df.to_parquet(tmp, engine="pyarrow", index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(df)

    def snapshots(self, exchange: str, symbol: str, start: TimeLike = None,
                  end: TimeLike = None) -> Iterator[tuple[pd.Timestamp, np.ndarray, np.ndarray]]:
        """Each recorded snapshot as (time, bids, asks), level arrays best first (:func:`levels`)."""
        df = self.read(exchange, symbol, start, end)
        for t, snap in df.groupby("time", sort=True):
            sides = {s: g.sort_values("level")[["price", "amount"]].to_numpy(float) for s, g in snap.groupby("side")}
            yield (pd.Timestamp(t), sides.get("bid", np.empty((0, 2))), sides.get("ask", np.empty((0, 2))))


def calibrated_impact(config: SessionConfig, store: BookStore | None = None) -> float | None:
    """The volume model's ``impact`` fitted from the recorded books of ``config``'s symbols on
    ``config.data.exchange`` (each snapshot's order sizes are shares of the volume of the cached bar it falls
    in, at ``config.data.timeframe``); None when no snapshot has a cached bar to measure against."""
    store = store if store is not None else BookStore()
    step = timeframe_delta(config.data.timeframe)
    xs, ys = [], []
    for sym in config.symbols:
        bars = store.bars.read(config.data.exchange, sym, config.data.timeframe)
        if bars.empty:
            continue
        for t, bids, asks in store.snapshots(config.data.exchange, sym):
            i = bars.index.searchsorted(t, side="right") - 1  # the bar t falls in
            if i < 0 or t >= bars.index[i] + step:
                continue
            x, y = impact_samples(bids, asks, float(bars["volume"].iloc[i]))
            xs.append(x)
            ys.append(y)
    if not xs or not sum(len(x) for x in xs):
        return None
    return min(fit_impact(np.concatenate(xs), np.concatenate(ys), config.slippage.bps), MAX_IMPACT)


def depth_config(config: SessionConfig, store: BookStore | None = None) -> SessionConfig:
    """``config`` with ``depth.model`` 'book' made runnable on bars: its slippage becomes the volume model with
    the impact calibrated from the recorded books (:func:`calibrated_impact`). Without recorded books, or with
    no book depth model, ``config`` is returned as it is (its configured slippage model)."""
    if config.depth is None or config.depth.model != "book":
        return config
    impact = calibrated_impact(config, store)
    if impact is None:
        log.info("no recorded books for %s on %s: the configured slippage model applies",
                 ", ".join(config.symbols), config.data.exchange)
        return config
    return config.replace(slippage={**config.slippage.model_dump(), "model": "volume", "impact": impact})


@dataclass
class Recording:
    """What :func:`record` wrote: snapshots per symbol, the bars cached, and where."""

    snapshots: dict[str, int] = field(default_factory=dict)
    bars: dict[str, int] = field(default_factory=dict)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    root: Path | None = None


def record(exchange: Any, symbols: Sequence[str], minutes: float, *, timeframe: str = "1m", every: float = 10.0,
           depth: int = 20, store: BookStore | None = None, clock: Callable[[], float] = time.time,
           sleep: Callable[[float], None] = time.sleep, flush_seconds: float = 30.0) -> Recording:
    """Record L2 books of ``symbols`` every ``every`` seconds for ``minutes`` minutes (``fetch_order_book`` with
    ``depth`` levels) and then cache the bars of that span (``fetch_ohlcv``, ``timeframe``), all under ``store``.
    ``exchange``: a ccxt id or a sync ccxt client. Snapshots are written every ``flush_seconds`` and at the end,
    so an interrupted recording keeps what it wrote. ``clock``/``sleep``: wall-clock seconds, injectable."""
    from workbench.data.ccxt_source import DataSourceError, call_with_retry, fetch_ohlcv, make_exchange

    if not minutes > 0 or not every > 0:
        raise ValueError(f"record for minutes > 0 (got {minutes!r}), a snapshot every > 0 s (got {every!r})")
    if not symbols:
        raise ValueError("record needs at least one symbol, e.g. BTC/USDT")
    timeframe_delta(timeframe)
    store = store if store is not None else BookStore()
    ex = make_exchange(exchange)
    call_with_retry(ex, ex.load_markets)
    unknown = [s for s in symbols if s not in ex.markets]
    if unknown:
        raise DataSourceError(f"{ex.id} does not list {', '.join(unknown)}; check the symbols (BASE/QUOTE)")
    out = Recording({s: 0 for s in symbols}, {s: 0 for s in symbols}, root=store.root)
    pending: dict[str, list[pd.DataFrame]] = {s: [] for s in symbols}

    def flush() -> None:
        for s, parts in pending.items():
            if parts:
                store.append(ex.id, s, pd.concat(parts, ignore_index=True))
                out.snapshots[s] += len(parts)
                parts.clear()

    t0 = clock()
    deadline, flushed = t0 + minutes * 60.0, t0
    out.start = pd.Timestamp(t0, unit="s", tz="UTC")
    try:
        now = t0
        while now < deadline:
            for s in symbols:
                ob = call_with_retry(ex, ex.fetch_order_book, s, depth)
                at = pd.Timestamp(ob["timestamp"], unit="ms", tz="UTC") if ob.get("timestamp") else \
                    pd.Timestamp(clock(), unit="s", tz="UTC")
                pending[s].append(book_rows(ob, at, depth))
            if clock() - flushed >= flush_seconds:
                flush()
                flushed = clock()
            now = clock()
            if now + every >= deadline:
                break
            sleep(every)
            now = clock()
    finally:
        flush()
    out.end = pd.Timestamp(clock(), unit="s", tz="UTC")
    step = timeframe_delta(timeframe)
    for s in symbols:
        try:
            bars = fetch_ohlcv(ex, s, timeframe, out.start.floor(step), out.end, cache=store.bars, progress=False)
        except BarsError as e:
            log.warning("no %s bars for the recorded span: %s", s, e)
            continue
        out.bars[s] = len(bars)
    return out
