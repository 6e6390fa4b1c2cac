"""A/B beside a live session: paper variants fed exactly the bars a running session on live bars is
handed, compared with that session itself as the baseline arm ``live``.

The live session's feed stores each closed bar before the session acts on it
(:mod:`workbench.store.session_bars`); :class:`StoredBarsFeed` tails those rows, so the variants see the
same bars at (nearly) the same time, in this process or any other with the store, and never call the
exchange. Each variant is a paper session made from the live session's config plus its changes, recorded
as its child (``parent_id``: :func:`workbench.ab.ab_sessions` lists the parent as arm ``live``). The
comparison starts at the variants' first bar; the live arm's equity is rescaled there to the variants'
initial balance (:func:`workbench.ab.ab_equity`). The variants end with the live session, after
``bars`` bars, or when cancelled (killed); early stop never stops the live session.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from workbench.ab.paper import LIVE_ARM, EarlyStop, Variants, ab_equity, labelled, run_arms
from workbench.ab.result import ABResult, judge
from workbench.ab.stats import Method
from workbench.ab.variants import Variant, make_variants
from workbench.domain import SessionKind, SessionState
from workbench.execution import Bar
from workbench.store.session_bars import append_session_bars, last_session_bar, session_bars

__all__ = ["LIVE_ARM", "StoredBarsFeed", "ab_beside"]


class StoredBarsFeed:
    """The bars session ``session_id``'s live feed stores, after ``after``, as a feed of ``{symbol: Bar}``:
    polls the store every ``poll`` seconds and ends when that session has ended and no bar is left, or
    after ``max_bars`` times. ``record_for``: store each time's bars as that session's too, before handing
    them on (as a live feed does), so its fidelity twin backtests them."""

    def __init__(self, store: Any, session_id: str, symbols: Sequence[str], *, after: datetime | None = None,
                 poll: float = 0.5, max_bars: int | None = None, record_for: str | None = None):
        if not poll > 0:
            raise ValueError(f"poll must be > 0 seconds (got {poll})")
        self.store, self.session_id, self.symbols = store, session_id, list(symbols)
        self.after, self.poll, self.max_bars = after, float(poll), max_bars
        self.record_for = record_for

    def __aiter__(self) -> AsyncIterator[dict[str, Bar]]:
        return self._iterate()

    def _read(self) -> dict[pd.Timestamp, dict[str, Bar]]:
        out: dict[pd.Timestamp, dict[str, Bar]] = {}
        for symbol in self.symbols:
            frame = session_bars(self.store, self.session_id, symbol, after=self.after)
            for t, row in zip(frame.index, frame.to_numpy(dtype=float).tolist()):
                out.setdefault(t, {})[symbol] = Bar(t.to_pydatetime(), *row)
        return dict(sorted(out.items()))

    async def _iterate(self) -> AsyncIterator[dict[str, Bar]]:
        sent = 0
        while True:
            ended = SessionState(self.store.get_session(self.session_id)["state"]).is_final
            ready = await asyncio.to_thread(self._read)  # a time's bars are stored in one transaction
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


async def _caught_up(store: Any, ids: dict[str, str], timeout: float, poll: float) -> pd.DataFrame:
    """The arms' equity up to the variants' last bar, once the live session's stored equity reaches it
    (its points reach the store with its checkpoints) or after ``timeout`` s (then up to its last point)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        equity = ab_equity(store, ids)
        ran = equity.drop(columns=LIVE_ARM).dropna(how="all")
        if not len(ran):
            return equity.iloc[:0]
        equity = equity.loc[:ran.index[-1]]
        live = equity[LIVE_ARM].dropna()
        if (len(live) and live.index[-1] >= ran.index[-1]) or asyncio.get_running_loop().time() >= deadline:
            return equity.loc[:live.index[-1]] if len(live) else equity.iloc[:0]
        if SessionState(store.get_session(ids[LIVE_ARM])["state"]).is_final:
            deadline = 0.0  # it wrote all it will: one more read
        await asyncio.sleep(poll)


async def ab_beside(
    store: Any, session_id: str, variants: Variants, *, bars: int | None = None, poll_interval: float = 0.5,
    early_stop: EarlyStop | None = None, period: str = "auto", confidence: float = 0.95, n_boot: int = 2000,
    seed: int | None = 0, method: Method = "stationary", label: str | None = None, catch_up: float = 30.0,
) -> ABResult:
    """Run ``variants`` of running session ``session_id``'s config (on live bars: kind live, or paper with
    ``data.live``) as paper sessions on the bars it is handed from now on, until it ends or for ``bars``
    bars, then judge them with the session as arm :data:`LIVE_ARM` (waiting up to ``catch_up`` s for its
    equity to reach their last bar). See the module docstring."""
    from workbench.engine.session import Session
    from workbench.metrics import compute_metrics

    row = store.get_session(session_id)
    config = row.get("config")
    if config is None:
        raise ValueError(f"session {session_id}: its stored config does not load ({row.get('config_error')})")
    if not (config.kind is SessionKind.LIVE or config.data.live):
        raise ValueError(f"session {session_id} replays stored bars; an A/B beside a session needs one on live "
                         "bars (kind live, or paper with data.live). For replayed bars run "
                         "`workbench ab --kind paper` on its config")
    if SessionState(row["state"]).is_final:
        raise ValueError(f"session {session_id} has ended ({row['state']}); an A/B beside it runs while it runs")
    if bars is not None and bars < 2:
        raise ValueError(f"bars must be at least 2 (got {bars})")
    base = config.replace(kind=SessionKind.PAPER.value)
    label = label or uuid.uuid4().hex[:6]
    arms = labelled(make_variants(base, variants), label)
    if any(a.name == LIVE_ARM for a in arms):
        raise ValueError(f"{LIVE_ARM!r} names the session the A/B runs beside; give the variants other names")
    after = last_session_bar(store, session_id)
    sessions = {}
    for a in arms:
        sid = store.create_session(a.config, parent_id=session_id)
        feed = StoredBarsFeed(store, session_id, config.symbols, after=after, poll=poll_interval, max_bars=bars,
                              record_for=sid)
        sessions[a.name] = Session(a.config, store, session_id=sid, feed=feed, poll_interval=poll_interval,
                                   actor="ab")
    stopped = await run_arms(sessions, store, early_stop, base.initial_balance, seed,
                             others={LIVE_ARM: session_id})
    ids = {LIVE_ARM: session_id, **{name: s.id for name, s in sessions.items()}}
    equity = await _caught_up(store, ids, catch_up, poll_interval)
    metrics = {name: store.get_session(sid)["metrics"] or {} for name, sid in ids.items() if name != LIVE_ARM}
    live_eq = equity[LIVE_ARM].dropna()
    metrics = {LIVE_ARM: compute_metrics(live_eq, None, base.initial_balance) if len(live_eq) > 2 else {}, **metrics}
    v, used = judge(equity, base.initial_balance, period=period, confidence=confidence, n_boot=n_boot, seed=seed,
                    method=method)
    return ABResult(base, "beside", [Variant(LIVE_ARM, {}, config), *arms], equity, pd.DataFrame(metrics).T, v, used,
                    session_ids=ids, stopped=stopped)
