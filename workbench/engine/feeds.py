"""Bar feeds for sessions: async iterators of ``{symbol: Bar}``, one dict per bar time, in time order.

:class:`ReplayFeed` replays historical bars frames: as fast as possible (``speed=None``, handing
control back to the event loop every ``yield_every`` bars so a Jupyter kernel stays responsive)
or at ``speed`` × real time between bar timestamps. A symbol without a bar at a time is absent
from that time's dict. ``start_after`` skips every bar at or before a time (resume after a crash).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from workbench.domain import to_utc, utc_index
from workbench.execution import Bar

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COLUMNS = ("open", "high", "low", "close", "volume")


class ReplayFeed:
    """Replay ``bars`` (symbol -> OHLCV frame with a time index) as per-time ``{symbol: Bar}`` dicts.

    Symbols keep the order of ``bars``. ``speed=None``: as fast as possible; ``speed=k``: sleeps
    (next time - this time) / k seconds between bar times. Iterate once.
    """

    def __init__(self, bars: Mapping[str, pd.DataFrame], speed: float | None = None, *,
                 start_after: datetime | None = None, yield_every: int = 256):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None (as fast as possible), got {speed!r}")
        if not bars:
            raise ValueError("ReplayFeed needs bars for at least one symbol")
        self.symbols = list(bars)
        self.speed = speed
        self.start_after = start_after
        self.yield_every = max(int(yield_every), 1)
        index = utc_index(bars[self.symbols[0]].index)
        idx = {s: utc_index(df.index) for s, df in bars.items()}
        for i in idx.values():
            index = index.union(i)
        self._times = index.as_unit("ns").asi8
        n = len(self._times)
        # one (n, 5) float array per symbol, NaN where the symbol has no bar
        self._data: list[np.ndarray] = []
        for s, df in bars.items():
            arr = np.full((n, len(_COLUMNS)), np.nan)
            arr[index.get_indexer(idx[s])] = df.loc[:, list(_COLUMNS)].to_numpy(dtype=float)
            self._data.append(arr)

    def __len__(self) -> int:
        return len(self._times)

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    def bars(self) -> Iterator[dict[str, Bar]]:
        """The bar dicts after ``start_after``, synchronously (no pacing): the loop of :meth:`__aiter__`."""
        times = self._times
        start = 0
        if self.start_after is not None:
            cut = to_utc(self.start_after, "start_after")
            start = int(np.searchsorted(times, cut.as_unit("ns").value, side="right"))
        columns = list(zip(self.symbols, self._data))
        one = columns[0] if len(columns) == 1 else None
        epoch, us = _EPOCH, timedelta(microseconds=1)
        for i, ns in enumerate(times[start:].tolist(), start):
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
                yield batch
                batch = []
                await asyncio.sleep(0)
        if batch:
            yield batch

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        speed, every = self.speed, self.yield_every
        prev: datetime | None = None
        since_yield = 0
        for out in self.bars():
            if speed is not None:
                t = next(iter(out.values())).time
                if prev is not None:
                    await asyncio.sleep((t - prev).total_seconds() / speed)
                prev = t
            else:
                since_yield += 1
                if since_yield >= every:
                    since_yield = 0
                    await asyncio.sleep(0)
            yield out
