"""Live closed candles from an exchange, for live sessions and paper sessions on live data.

:class:`LiveFeed` is an async iterator of ``{symbol: Bar}`` like :class:`~workbench.engine.feeds.ReplayFeed`.
It takes bars from ccxt.pro websockets (``watch_ohlcv``) where the client has them, else by REST
polling (``fetch_ohlcv``); either way only closed bars reach the strategy: the newest candle an
exchange reports is still forming, so a bar is passed on once a later one exists. A time is passed
on when every symbol has closed it, in time order, each once. Errors are retried through the one
retrier (a websocket reconnects the same way). If no new bar arrives for ``stale_bars`` intervals
the feed is *stale*: it reports that (``on_status(True, message)``), which pauses new entries of
the session it is attached to (exits and stops keep running), and reports recovery when bars flow
again, resuming the session if the feed paused it. The last closed bars are kept with their source
(``seen``: REST or websocket) for the market data validator: :meth:`LiveFeed.watched` and
:meth:`LiveFeed.cross_check` (:mod:`workbench.diagnostics.validator`). A feed attached to a session
stores each time's bars (:mod:`workbench.store.session_bars`) before handing them on, so the session's
fidelity twin backtests exactly the bars it saw (``record=False``: don't).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from workbench.data.schema import timeframe_delta
from workbench.execution import Bar
from workbench.retry import RetryPolicy, is_transient

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
SEEN = 2000  # closed bars kept per symbol for the validator
StatusSink = Callable[[bool, str], None]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


class LiveFeed:
    """Closed candles of ``symbols`` at ``timeframe`` from an async ccxt client. See the module docstring.

    ``bar_seconds`` is the wall-clock length of a bar (default: the timeframe's); ``poll_seconds`` the REST
    poll interval (default a quarter bar, at most 5 s); ``start_after`` (set on resume) first replays the
    closed bars after that time (by REST, as after a websocket reconnect); ``websocket`` None = use
    ``watch_ohlcv`` if the client has it; ``owns_exchange``: close the client when iteration ends;
    ``record``: store the bars handed on to the attached session (see the module docstring).
    """

    def __init__(self, exchange: Any, symbols: list[str], timeframe: str = "1m", *, poll_seconds: float | None = None,
                 stale_bars: int = 3, bar_seconds: float | None = None, start_after: datetime | None = None,
                 websocket: bool | None = None, policy: RetryPolicy | None = None,
                 on_status: StatusSink | None = None, max_bars: int | None = None, owns_exchange: bool = False,
                 record: bool = True):
        if not symbols:
            raise ValueError("LiveFeed needs at least one symbol")
        if stale_bars < 1:
            raise ValueError(f"stale_bars must be >= 1 (got {stale_bars})")
        self.exchange, self.symbols, self.timeframe = exchange, list(symbols), timeframe
        self.step_ms = int(timeframe_delta(timeframe).total_seconds() * 1000)
        self.bar_seconds = float(bar_seconds) if bar_seconds else self.step_ms / 1000.0
        self.poll_seconds = float(poll_seconds) if poll_seconds else min(self.bar_seconds / 4, 5.0)
        self.stale_bars = int(stale_bars)
        self.start_after = start_after
        self.websocket = websocket
        self.policy = policy or RetryPolicy(retries=None, base=min(self.poll_seconds, 1.0),
                                            cap=max(self.bar_seconds, 1.0))
        self.on_status = on_status
        self.max_bars = max_bars
        self.owns_exchange = owns_exchange  # close the client when iteration ends
        self.record = record
        self.stale = False
        self.last_time: datetime | None = None
        self._closed: dict[str, dict[int, list[float]]] = {s: {} for s in self.symbols}
        self._forming: dict[str, dict[int, list[float]]] = {s: {} for s in self.symbols}
        self._last_ms: int | None = None
        self._session: Any = None
        self._paused_session = False
        #: per symbol, the last closed bars as passed on: (open time ms, "rest" | "ws", [o, h, l, c, v])
        self.seen: dict[str, deque[tuple[int, str, list[float]]]] = {s: deque(maxlen=SEEN) for s in self.symbols}

    # ---- wiring to a session -------------------------------------------------------------------
    def attach(self, session: Any) -> LiveFeed:
        """Report staleness to ``session``: a stale feed pauses its new entries (state paused, actor 'feed')
        with an event, and recovery resumes it if the feed paused it. Returns self."""
        self._session = session
        return self

    def _status(self, stale: bool, message: str) -> None:
        self.stale = stale
        log.log(logging.WARNING if stale else logging.INFO, "live feed: %s", message)
        if self.on_status is not None:
            self.on_status(stale, message)
        s = self._session
        if s is None:
            return
        from workbench.domain import SessionState as S

        s.store.add_event(s.id, "feed_stale" if stale else "feed_recovered", message,
                          {"symbols": self.symbols, "timeframe": self.timeframe}, actor="feed")
        if stale and s.state is S.RUNNING:
            s._set_state(S.PAUSED, f"paused: {message}; no new entries until data returns", "feed")
            self._paused_session = True
        elif not stale and self._paused_session:
            self._paused_session = False
            if s.state is S.PAUSED:
                s._set_state(S.RUNNING, f"resumed: {message}", "feed")

    # ---- bars ----------------------------------------------------------------------------------
    def _use_ws(self) -> bool:
        if self.websocket is not None:
            return self.websocket
        return bool(hasattr(self.exchange, "watch_ohlcv") and (self.exchange.has or {}).get("watchOHLCV"))

    def _take(self, symbol: str, rows: list[list[float]], source: str = "rest") -> None:
        """Candle updates of ``symbol``; a candle counts as closed once a later one exists (the newest is
        still forming), and is kept if newer than what was passed on."""
        pend = self._forming[symbol]
        for r in rows:
            pend[int(r[0])] = [float(x) for x in r[1:6]]
        if not pend:
            return
        newest = max(pend)
        floor = self._last_ms
        if floor is None and self.start_after is not None:
            floor = int(self.start_after.timestamp() * 1000)
        for t in sorted(pend):
            if t >= newest:
                break
            row = pend.pop(t)
            if floor is None or t > floor:
                self._closed[symbol][t] = row
                self.seen[symbol].append((t, source, row))

    def _ready(self) -> list[dict[str, Bar]]:
        """Bars of every time all symbols have closed, oldest first; removes them from the buffer."""
        if any(not v for v in self._closed.values()):
            return []
        upto = min(max(v) for v in self._closed.values())
        times = sorted({t for v in self._closed.values() for t in v if t <= upto})
        out = []
        for t in times:
            bars = {}
            for s in self.symbols:
                row = self._closed[s].pop(t, None)
                if row is not None:
                    bars[s] = Bar(_dt(t), *row)
            out.append(bars)
            self._last_ms = t
        return out

    async def _poll_once(self) -> None:
        base = self._last_ms
        if base is None and self.start_after is not None:
            base = int(self.start_after.timestamp() * 1000)
        for s in self.symbols:  # errors are retried by _bars
            if base is None:  # start now: the newest closed bar comes first
                rows = (await self.exchange.fetch_ohlcv(s, self.timeframe, None, 3))[-2:]
            else:
                rows = await self.exchange.fetch_ohlcv(s, self.timeframe, base + 1, 1000)
            self._take(s, rows)

    async def _watch_once(self) -> None:
        for s in self.symbols:
            rows = await self.exchange.watch_ohlcv(s, self.timeframe)
            self._take(s, rows, "ws")

    def watched(self, symbol: str, source: str | None = None) -> pd.DataFrame:
        """The closed bars of ``symbol`` kept in ``seen`` (only those from ``source``, "rest" or "ws", if given)
        as an OHLCV frame indexed by open time."""
        import pandas as pd

        rows = [(t, *v) for t, src, v in self.seen[symbol] if source is None or src == source]
        frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
        frame["time"] = pd.to_datetime(frame["time"], unit="ms", utc=True)
        return frame.set_index("time")

    async def cross_check(self, symbol: str, *, rel_tol: float = 1e-9) -> pd.DataFrame:
        """The bars the websocket closed for ``symbol`` against the same bars fetched now by REST
        (``fetch_ohlcv``): :func:`workbench.diagnostics.validator.cross_check` (empty: they agree)."""
        import pandas as pd

        from workbench.diagnostics.validator import cross_check

        ws = self.watched(symbol, "ws")
        if ws.empty:
            return cross_check(ws, ws)
        since = int(ws.index[0].timestamp() * 1000)
        rows = await self.exchange.fetch_ohlcv(symbol, self.timeframe, since, len(ws) + 2)
        rest = pd.DataFrame([r[:6] for r in rows], columns=["time", "open", "high", "low", "close", "volume"])
        rest["time"] = pd.to_datetime(rest["time"], unit="ms", utc=True)
        return cross_check(rest.set_index("time"), ws, rel_tol=rel_tol)

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        try:
            async for bars in self._bars():
                if self.record and self._session is not None:
                    await self._store(bars)
                yield bars
        finally:
            if self.owns_exchange:
                await self.exchange.close()

    async def _store(self, bars: dict[str, Bar]) -> None:
        """Append ``bars`` to the attached session's stored bars (off the loop). A store that fails is
        logged, not raised: the session trades on, and its twin loads what is missing from the exchange."""
        from workbench.store.session_bars import append_session_bars

        s = self._session
        rows = [(sym, b.time, b.open, b.high, b.low, b.close, b.volume) for sym, b in bars.items()]
        try:
            await asyncio.to_thread(append_session_bars, s.store, s.id, rows)
        except Exception as e:
            log.warning("live feed: bars at %s not stored for session %s: %s: %s",
                        rows[0][1] if rows else "?", s.id, type(e).__name__, e)

    async def _bars(self) -> AsyncIterator[dict[str, Bar]]:
        ws = self._use_ws()
        backfill = True  # websockets: REST first, and after every reconnect (bars may have closed meanwhile)
        last_new = time.monotonic()
        attempt = 0
        sent = 0
        while True:
            try:
                if ws and not backfill:
                    await self._watch_once()
                else:
                    await self._poll_once()
                    backfill = False
                attempt = 0
            except Exception as e:
                if not is_transient(e):
                    raise
                backfill = True
                delay = self.policy.delay(attempt, e, self.exchange)
                attempt += 1
                log.warning("live feed %s: %s; retry in %.2fs",
                            getattr(self.exchange, "id", "?"), type(e).__name__, delay)
                if not self.stale and time.monotonic() - last_new > self.stale_bars * self.bar_seconds:
                    self._status(True, f"feed stale: {type(e).__name__} and no new bar for {self.stale_bars} intervals")
                await asyncio.sleep(delay)
                continue
            ready = self._ready()
            if ready:
                last_new = time.monotonic()
                if self.stale:
                    self._status(False, f"feed recovered: new bar at {ready[0][next(iter(ready[0]))].time}")
                for bars in ready:
                    self.last_time = next(iter(bars.values())).time
                    yield bars
                    sent += 1
                    if self.max_bars is not None and sent >= self.max_bars:
                        return
            elif not self.stale and time.monotonic() - last_new > self.stale_bars * self.bar_seconds:
                self._status(True, f"feed stale: no new {self.timeframe} bar for {self.stale_bars} intervals")
            if not ws:
                await asyncio.sleep(self.poll_seconds)
