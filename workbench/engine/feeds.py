"""Bar feeds for sessions: async iterators of ``{symbol: Bar}``, one dict per bar time, in time order.

:class:`ReplayFeed` replays historical bars: as fast as possible (``speed=None``, handing control
back to the event loop every ``yield_every`` bars so a Jupyter kernel stays responsive) or at
``speed`` × real time between bar timestamps. A symbol without a bar at a time is absent from that
time's dict. ``start_after`` skips every bar at or before a time (resume after a crash).

Replayed bars are shared: :func:`shared_bars` loads a config's bars once per process into read-only
numpy arrays (a :class:`BarBlock`) that stay in :data:`SHARED` while a feed uses them (weak
references: freed when the last feed over them ends or is dropped). N sessions replaying the same
data hold one copy; each :class:`ReplayFeed` over it holds a cursor.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.config import quote_of
from workbench.domain import to_utc, utc_index
from workbench.execution import Bar

if TYPE_CHECKING:
    from workbench.config import DataConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COLUMNS = ("open", "high", "low", "close", "volume")
_CHUNK = 512  # bar times converted to Python ints at a time (~20 KB of ints per feed)

#: ``time.perf_counter()`` at which the current task's paced :class:`ReplayFeed` was due to release its
#: latest bar (its schedule, so a late event loop counts): what a benchmark measures bar-to-order from
RELEASED_AT: ContextVar[float] = ContextVar("workbench_replay_released_at")


class BarBlock:
    """Bars of one or more symbols on one time axis, read-only: ``times`` (int ns since the epoch,
    ascending) and, per symbol in ``symbols`` order, an (n, 5) OHLCV float array in ``data``, NaN
    where the symbol has no bar. Blocks made by :meth:`combine` keep their parts alive."""

    __slots__ = ("symbols", "times", "data", "parts", "__weakref__")

    def __init__(self, symbols: Sequence[str], times: np.ndarray, data: Sequence[np.ndarray],
                 parts: Sequence[BarBlock] = ()):
        if len(symbols) != len(data) or not symbols:
            raise ValueError(f"a BarBlock needs one array per symbol; got {len(symbols)} symbols, {len(data)} arrays")
        for s, arr in zip(symbols, data):
            if arr.shape != (len(times), len(_COLUMNS)):
                raise ValueError(f"{s}: bars array of shape {arr.shape}, expected ({len(times)}, {len(_COLUMNS)})")
        for arr in (times, *data):
            arr.setflags(write=False)  # shared between sessions: nobody writes
        self.symbols, self.times, self.data, self.parts = tuple(symbols), times, tuple(data), tuple(parts)

    @classmethod
    def from_frames(cls, bars: Mapping[str, pd.DataFrame]) -> BarBlock:
        """A block of ``bars`` (symbol -> OHLCV frame with a time index); times are the union of theirs."""
        if not bars:
            raise ValueError("ReplayFeed needs bars for at least one symbol")
        symbols = list(bars)
        idx = {s: utc_index(df.index) for s, df in bars.items()}
        index = idx[symbols[0]]
        for i in idx.values():
            index = index.union(i)
        times = np.array(index.as_unit("ns").asi8, dtype=np.int64)
        data = []
        for s, df in bars.items():
            arr = np.full((len(times), len(_COLUMNS)), np.nan)
            arr[index.get_indexer(idx[s])] = df.loc[:, list(_COLUMNS)].to_numpy(dtype=float)
            data.append(arr)
        return cls(symbols, times, data)

    @classmethod
    def combine(cls, parts: Sequence[BarBlock]) -> BarBlock:
        """One block of the parts' symbols: their own arrays when all share one time axis (no copy),
        else NaN-filled copies on the union of their times."""
        symbols = [s for p in parts for s in p.symbols]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols appear twice: {symbols}")
        first = parts[0].times
        if all(p.times is first or np.array_equal(p.times, first) for p in parts):
            return cls(symbols, first, [a for p in parts for a in p.data], parts)
        times = first
        for p in parts[1:]:
            times = np.union1d(times, p.times)
        data = []
        for p in parts:
            rows = np.searchsorted(times, p.times)
            for a in p.data:
                arr = np.full((len(times), len(_COLUMNS)), np.nan)
                arr[rows] = a
                data.append(arr)
        return cls(symbols, times, data)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (parts' arrays counted once)."""
        seen = {id(a): a.nbytes for a in (self.times, *self.data)}
        return sum(seen.values())

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        return f"<BarBlock {', '.join(self.symbols)}: {len(self)} times, {self.nbytes / 2**20:.1f} MiB>"


class SharedBars:
    """Process-wide cache of loaded bars: key -> :class:`BarBlock`, held weakly (an entry lives while a
    feed holds its block). Thread-safe; ``enabled=False`` loads a block per call (each feed its own
    copy, as before sharing: benchmarks compare); ``loads`` counts the blocks loaded."""

    def __init__(self) -> None:
        self._blocks: weakref.WeakValueDictionary[Hashable, BarBlock] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.enabled = True
        self.loads = 0

    def get(self, key: Hashable | None, load: Callable[[], BarBlock]) -> BarBlock:
        """The block cached under ``key``, else ``load()`` cached under it (``key=None``: not shareable)."""
        if key is None or not self.enabled:
            self.loads += 1
            return load()
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                block = load()
                self._blocks[key] = block
                self.loads += 1
            return block

    def keys(self) -> list[Hashable]:
        return list(self._blocks.keys())

    def __len__(self) -> int:
        return len(self._blocks)


#: the cache :func:`shared_bars` uses
SHARED = SharedBars()


def data_key(data: DataConfig, symbol: str, start: Any = None, end: Any = None) -> tuple[Any, ...] | None:
    """What identifies the bars :func:`workbench.data.load_bars` gives for these arguments, or ``None``
    when they may differ between two loads (ccxt without ``end``: the exchange adds bars)."""
    from workbench.data.schema import to_utc as bars_utc

    start, end = bars_utc(start), bars_utc(end)
    if data.source == "sample":
        return ("sample", data.timeframe, symbol, start, end)
    if data.source == "csv":
        path = os.path.realpath(str(data.csv_path))
        try:
            st = os.stat(path)
        except OSError:
            return None  # load_bars says what is wrong with the file
        return ("csv", path, st.st_mtime_ns, st.st_size, data.timeframe, symbol, start, end)
    if data.source == "ccxt" and end is not None:
        return ("ccxt", data.exchange, data.timeframe, symbol, start, end)
    return None


def shared_bars(data: DataConfig, symbols: Sequence[str], start: Any = None, end: Any = None, *,
                cache: SharedBars = SHARED, base: str | None = None) -> BarBlock:
    """The bars of ``symbols`` in ``[start, end]`` as :func:`workbench.data.load_bars` gives them, one
    read-only block per process for everyone asking for the same data (see :data:`SHARED`). Each
    symbol is cached on its own, so sessions over overlapping symbols share those symbols too.
    ``base``: a symbol quoted in another currency is converted into it (:func:`workbench.data.currency.to_base`)."""
    from workbench.data.currency import load_in_base

    if not symbols:
        raise ValueError("shared_bars needs at least one symbol")
    def loader(symbol: str) -> Callable[[], BarBlock]:
        return lambda: BarBlock.from_frames({symbol: load_in_base(data, symbol, base, start, end)})

    keys = [data_key(data, s, start, end) for s in symbols]
    keys = [k if k is None or base in (None, quote_of(s)) else (*k, "in", base) for s, k in zip(symbols, keys)]
    parts = [cache.get(k, loader(s)) for s, k in zip(symbols, keys)]
    if len(parts) == 1:
        return parts[0]
    key = None if any(k is None for k in keys) else ("symbols", tuple(keys))
    return cache.get(key, lambda: BarBlock.combine(parts))


class ReplayFeed:
    """Replay ``bars`` (symbol -> OHLCV frame with a time index, or a :class:`BarBlock`) as per-time
    ``{symbol: Bar}`` dicts. Symbols keep the order of ``bars``. ``speed=None``: as fast as possible;
    ``speed=k``: bar times are released on a schedule of k × real time from the first one (a late
    consumer gets the bars it missed at once, so the replay keeps pace). Iterate once.

    A feed holds its block (never a copy) and a cursor. :meth:`shared` makes one over :func:`shared_bars`;
    such a feed lets go of the block when its iteration ends, so the cache frees it with the last user.
    """

    def __init__(self, bars: Mapping[str, pd.DataFrame] | BarBlock, speed: float | None = None, *,
                 start_after: datetime | None = None, yield_every: int = 256):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None (as fast as possible), got {speed!r}")
        block = bars if isinstance(bars, BarBlock) else BarBlock.from_frames(bars)
        self._block: BarBlock | None = block
        self._reload: Callable[[], BarBlock] | None = None  # set by shared(): get the block back after release
        self._n = len(block)
        self.symbols = list(block.symbols)
        self.speed = speed
        self.start_after = start_after
        self.yield_every = max(int(yield_every), 1)
        self.released = 0  # bar dicts handed out by the async iteration (__aiter__, batches)
        self._start = 0  # index of the first bar time of this iteration
        self._anchor: tuple[float, int] | None = None  # paced: (perf_counter, bar ns) of the first release

    @classmethod
    def shared(cls, data: DataConfig, symbols: Sequence[str], start: Any = None, end: Any = None,
               speed: float | None = None, base: str | None = None, **kwargs: Any) -> ReplayFeed:
        """A feed over :func:`shared_bars` (what a session replaying its config's data uses; ``base``: its
        base currency, into which other quotes' bars are converted)."""
        symbols = list(symbols)
        feed = cls(shared_bars(data, symbols, start, end, base=base), speed, **kwargs)
        feed._reload = lambda: shared_bars(data, symbols, start, end, base=base)
        return feed

    @property
    def block(self) -> BarBlock:
        """The bars replayed (fetched again from the cache if this feed already let go of them)."""
        if self._block is None:
            assert self._reload is not None
            self._block = self._reload()
        return self._block

    def __len__(self) -> int:
        return self._n

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    def due(self, now: float | None = None) -> int:
        """Paced: how many bar times the schedule has released by ``now`` (``time.perf_counter()``);
        ``due() - released`` is how far the consumer is behind. Unpaced, or before the first or after the
        last bar: ``released``."""
        if self._anchor is None or self.speed is None or self._block is None:
            return self.released
        t0, ns0 = self._anchor
        now = time.perf_counter() if now is None else now
        cut = ns0 + int((now - t0) * self.speed * 1e9)
        return int(np.searchsorted(self._block.times, cut, side="right")) - self._start

    def bars(self) -> Iterator[dict[str, Bar]]:
        """The bar dicts after ``start_after``, synchronously (no pacing): the loop of :meth:`__aiter__`."""
        block = self.block
        times = block.times
        start = 0
        if self.start_after is not None:
            cut = to_utc(self.start_after, "start_after")
            start = int(np.searchsorted(times, cut.as_unit("ns").value, side="right"))
        self._start = start
        columns = list(zip(block.symbols, block.data))
        del block
        one = columns[0] if len(columns) == 1 else None
        epoch, us = _EPOCH, timedelta(microseconds=1)
        try:
            # Python ints a chunk at a time: a whole 90-day list would be 5 MB per session
            ns_times = chain.from_iterable(times[a:a + _CHUNK].tolist() for a in range(start, len(times), _CHUNK))
            for i, ns in enumerate(ns_times, start):
                t = epoch + us * (ns // 1000)
                if one is not None:
                    o, h, lo, c, v = one[1][i].tolist()
                    if o == o:  # not NaN
                        yield {one[0]: Bar(t, o, h, lo, c, v)}
                    continue
                out: dict[str, Bar] = {}
                for s, arr in columns:
                    o, h, lo, c, v = arr[i].tolist()
                    if o == o:
                        out[s] = Bar(t, o, h, lo, c, v)
                if out:
                    yield out
        finally:
            if self._reload is not None:  # the cache frees the block with its last user
                self._block = None

    async def batches(self) -> AsyncIterator[list[dict[str, Bar]]]:
        """The bar dicts in lists: as fast as possible, up to ``yield_every`` per list, handing control back
        to the event loop between lists (what a session loop consumes); paced, one per list."""
        if self.speed is not None:
            async for out in self._iterate():
                yield [out]
            return
        batch: list[dict[str, Bar]] = []
        every = self.yield_every
        for out in self.bars():
            batch.append(out)
            if len(batch) >= every:
                self.released += len(batch)
                yield batch
                batch = []
                await asyncio.sleep(0)
        if batch:
            self.released += len(batch)
            yield batch

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        speed, every = self.speed, self.yield_every
        since_yield = 0
        clock = time.perf_counter
        for out in self.bars():
            if speed is not None:
                ns = (next(iter(out.values())).time - _EPOCH) // timedelta(microseconds=1) * 1000
                if self._anchor is None:
                    self._anchor = (clock(), ns)
                t0, ns0 = self._anchor
                due = t0 + (ns - ns0) / 1e9 / speed
                # a late consumer still hands control back once per bar time (controls act between bars)
                await asyncio.sleep(max(due - clock(), 0.0))
                RELEASED_AT.set(due)
            else:
                since_yield += 1
                if since_yield >= every:
                    since_yield = 0
                    await asyncio.sleep(0)
            self.released += 1
            yield out
