"""A feed of the bars another session stored: what the paper variants of an A/B beside a session are fed.

A live feed stores each closed bar before its session acts on it (:mod:`workbench.store.session_bars`);
:class:`StoredBarsFeed` tails those rows, so a session fed by it sees the same bars at (nearly) the same
time, in any process with the store, and never calls the exchange. A session whose config says so
(``data.beside``: :class:`workbench.config.blocks.Beside`) gets one from
:func:`workbench.engine.open_session`, by whichever process runs or resumes it: crash-only like any other.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from workbench.config import SessionConfig
from workbench.domain import SessionState
from workbench.execution import Bar
from workbench.store.session_bars import append_session_bars, session_bars

__all__ = ["StoredBarsFeed"]


class StoredBarsFeed:
    """The bars session ``session_id`` stores, after ``after``, as a feed of ``{symbol: Bar}``: polls the
    store every ``poll`` seconds and ends when that session has ended and no bar is left, or once
    ``max_bars`` times have been handed on. ``record_for``: store each time's bars as that session's too,
    before handing them on (as a live feed does), so its fidelity twin backtests them and a resume knows
    how many of ``max_bars`` it has had. ``start_after`` (a resume's checkpoint) skips the bars up to it."""

    def __init__(self, store: Any, session_id: str, symbols: Sequence[str], *, after: datetime | None = None,
                 poll: float = 0.5, max_bars: int | None = None, record_for: str | None = None):
        if not poll > 0:
            raise ValueError(f"poll must be > 0 seconds (got {poll})")
        if max_bars is not None and max_bars < 1:
            raise ValueError(f"max_bars must be at least 1 (got {max_bars})")
        self.store, self.session_id, self.symbols = store, session_id, list(symbols)
        self.after, self.poll, self.max_bars = after, float(poll), max_bars
        self.record_for = record_for
        self.start_after: datetime | None = None

    @classmethod
    def beside(cls, config: SessionConfig, store: Any, *, poll: float = 0.5,
               record_for: str | None = None) -> StoredBarsFeed:
        """The feed of a session whose ``config.data.beside`` names the session it runs beside."""
        b = config.data.beside
        if b is None:
            raise ValueError("config.data.beside is not set: this config is fed from its own data, not another "
                             "session's stored bars")
        return cls(store, b.session, config.symbols, after=b.after, poll=poll, max_bars=b.bars, record_for=record_for)

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    def _read(self) -> tuple[bool, dict[pd.Timestamp, dict[str, Bar]]]:
        """(whether that session had ended before this read, its bars after ``self.after`` by time)."""
        ended = SessionState(self.store.get_session(self.session_id)["state"]).is_final
        out: dict[pd.Timestamp, dict[str, Bar]] = {}
        for symbol in self.symbols:  # a time's bars are stored in one transaction
            frame = session_bars(self.store, self.session_id, symbol, after=self.after)
            for t, row in zip(frame.index, frame.to_numpy(dtype=float).tolist()):
                out.setdefault(t, {})[symbol] = Bar(t.to_pydatetime(), *row)
        return ended, dict(sorted(out.items()))

    def _had(self) -> int:
        """How many bar times the resumed session had up to ``start_after`` (its own stored bars)."""
        if self.record_for is None or self.start_after is None:
            return 0
        times: set[pd.Timestamp] = set()
        for symbol in self.symbols:
            times.update(session_bars(self.store, self.record_for, symbol, after=self.after,
                                      end=self.start_after).index)
        return len(times)

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        sent = await asyncio.to_thread(self._had)
        if self.start_after is not None and (self.after is None or self.start_after > self.after):
            self.after = self.start_after
        while self.max_bars is None or sent < self.max_bars:
            ended, ready = await asyncio.to_thread(self._read)
            for t, bars in ready.items():
                if self.record_for is not None:
                    rows = [(s, b.time, b.open, b.high, b.low, b.close, b.volume) for s, b in bars.items()]
                    await asyncio.to_thread(append_session_bars, self.store, self.record_for, rows)
                yield bars
                self.after, sent = t.to_pydatetime(), sent + 1
                if self.max_bars is not None and sent >= self.max_bars:
                    return
            if ended and not ready:
                return
            if not ready:
                await asyncio.sleep(self.poll)
