"""Bar feeds for sessions: async iterators of ``{symbol: Bar}``, one dict per bar time, in time order.

:class:`ReplayFeed` replays historical bars frames: as fast as possible (``speed=None``, handing
control back to the event loop every ``yield_every`` bars so a Jupyter kernel stays responsive)
or at ``speed`` × real time between bar timestamps. A symbol without a bar at a time is absent
from that time's dict. ``start_after`` skips every bar at or before a time (resume after a crash).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from workbench.execution import Bar

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COLUMNS = ("open", "high", "low", "close", "volume")


def _ns_to_dt(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _utc_index(index: pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


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
        index = _utc_index(bars[self.symbols[0]].index)
        idx = {s: _utc_index(df.index) for s, df in bars.items()}
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
        self._pos = 0
        self.last_time: datetime | None = None

    def __len__(self) -> int:
        return len(self._times)

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        times = self._times
        start = 0
        if self.start_after is not None:
            cut = pd.Timestamp(self.start_after)
            cut = cut.tz_localize("UTC") if cut.tz is None else cut.tz_convert("UTC")
            start = int(np.searchsorted(times, cut.as_unit("ns").value, side="right"))
        symbols, data, speed, every = self.symbols, self._data, self.speed, self.yield_every
        prev: int | None = None
        since_yield = 0
        for i in range(start, len(times)):
            ns = int(times[i])
            if speed is not None and prev is not None:
                await asyncio.sleep((ns - prev) / 1e9 / speed)
            else:
                since_yield += 1
                if since_yield >= every:
                    since_yield = 0
                    await asyncio.sleep(0)
            prev = ns
            t = _ns_to_dt(ns)
            out: dict[str, Bar] = {}
            for s, arr in zip(symbols, data):
                row = arr[i]
                o = row[0]
                if o == o:  # not NaN
                    out[s] = Bar(t, float(o), float(row[1]), float(row[2]), float(row[3]), float(row[4]))
            self._pos = i + 1
            self.last_time = t
            if out:
                yield out
