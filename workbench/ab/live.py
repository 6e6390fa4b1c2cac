"""A/B beside a live session: paper variants fed exactly the bars a running session on live bars is
handed, compared with that session itself as the baseline arm ``live``.

The live session's feed stores each closed bar before the session acts on it
(:mod:`workbench.store.session_bars`). Each variant is a paper session made from the live session's config
plus its changes, with ``data.beside`` (:class:`workbench.config.blocks.Beside`) naming the live session,
its last stored bar when the A/B began and the ``bars`` budget, and recorded as the live session's child
(``parent_id``: :func:`workbench.ab.ab_sessions` lists the parent as arm ``live``). Whoever runs it (this
process, :func:`ab_beside`, or ``workbench host``, :func:`ab_beside_request`) feeds it those stored bars
(:class:`~workbench.engine.stored_feed.StoredBarsFeed`), never the exchange, so it is crash-only like any
hosted session: a host resumes an orphaned variant from its checkpoint on the same bars. The comparison
is over the A/B window (:func:`workbench.ab.paper.live_window`). The variants end when the live session
has ended and its stored bars are consumed, after ``bars`` bars, or when cancelled (killed); early stop
never stops the live session.
"""
from __future__ import annotations

import uuid
from typing import Any

from workbench.ab.paper import LIVE_ARM, EarlyStop, Variants, caught_up, judged, labelled, run_arms
from workbench.ab.result import ABResult
from workbench.ab.stats import Method
from workbench.ab.variants import Variant, make_variants
from workbench.config import SessionConfig
from workbench.domain import SessionKind, SessionState
from workbench.engine.stored_feed import StoredBarsFeed
from workbench.store.session_bars import last_session_bar

__all__ = ["LIVE_ARM", "StoredBarsFeed", "ab_beside", "ab_beside_request", "beside_arms"]


def beside_arms(store: Any, session_id: str, variants: Variants, *, bars: int | None = None,
                label: str | None = None) -> tuple[SessionConfig, list[Variant]]:
    """(the live session's config, the variants as paper configs beside it, named ``A/B <label> ...``):
    refused, saying why, unless ``session_id`` runs on live bars and has not ended."""
    from workbench.ab.paper import ab_sessions

    row = store.get_session(session_id)
    config = row.get("config")
    if config is None:
        raise ValueError(f"session {session_id}: its stored config does not load ({row.get('config_error')})")
    if not (config.kind is SessionKind.LIVE or config.data.live) or config.data.beside is not None:
        raise ValueError(f"session {session_id} replays stored bars; an A/B beside a session needs one on live "
                         "bars (kind live, or paper with data.live). For replayed bars run "
                         "`workbench ab --kind paper` on its config")
    if SessionState(row["state"]).is_final:
        raise ValueError(f"session {session_id} has ended ({row['state']}); an A/B beside it runs while it runs")
    if bars is not None and bars < 2:
        raise ValueError(f"bars must be at least 2 (got {bars})")
    label = label or uuid.uuid4().hex[:6]
    if ab_sessions(store, label):
        raise ValueError(f"A/B {label!r} exists already; give another label")
    beside = {"session": session_id, "after": last_session_bar(store, session_id), "bars": bars}
    base = config.replace(kind=SessionKind.PAPER.value, data={**config.data.model_dump(), "beside": beside})
    arms = labelled(make_variants(base, variants), label)
    if any(a.name == LIVE_ARM for a in arms):
        raise ValueError(f"{LIVE_ARM!r} names the session the A/B runs beside; give the variants other names")
    return config, arms


def ab_beside_request(store: Any, session_id: str, variants: Variants, *, bars: int | None = None,
                      label: str | None = None) -> tuple[str, dict[str, str]]:
    """Request the variants of an A/B beside running session ``session_id`` from ``workbench host``:
    (label, name -> id). Follow them with :func:`workbench.ab.host.ab_follow`."""
    from workbench.engine.host import request_session

    label = label or uuid.uuid4().hex[:6]
    _, arms = beside_arms(store, session_id, variants, bars=bars, label=label)
    return label, {a.name: request_session(store, a.config, actor="ab", parent_id=session_id) for a in arms}


async def ab_beside(
    store: Any, session_id: str, variants: Variants, *, bars: int | None = None, poll_interval: float = 0.5,
    early_stop: EarlyStop | None = None, period: str = "auto", confidence: float = 0.95, n_boot: int = 2000,
    seed: int | None = 0, method: Method = "stationary", label: str | None = None, catch_up: float = 30.0,
    **session_kwargs: Any,
) -> ABResult:
    """Run ``variants`` of running session ``session_id``'s config (on live bars: kind live, or paper with
    ``data.live``) as paper sessions in this process on the bars it is handed from now on, until it ends
    or for ``bars`` bars, then judge them with the session as arm :data:`LIVE_ARM` (waiting up to
    ``catch_up`` s for its equity to reach their last bar). ``session_kwargs`` go to each variant's
    session (e.g. ``lease_seconds``). See the module docstring."""
    from workbench.engine.live import open_session

    config, arms = beside_arms(store, session_id, variants, bars=bars, label=label)
    base = arms[0].config
    sessions = {}
    for a in arms:
        sid = store.create_session(a.config, parent_id=session_id)
        sessions[a.name] = open_session(a.config, store, session_id=sid, poll_interval=poll_interval,
                                        **{"actor": "ab", **session_kwargs})
    stopped = await run_arms(sessions, store, early_stop, base.initial_balance, seed,
                             others={LIVE_ARM: session_id})
    ids = {LIVE_ARM: session_id, **{name: s.id for name, s in sessions.items()}}
    equity = await caught_up(store, ids, catch_up, poll_interval)
    return judged(store, base, [Variant(LIVE_ARM, {}, config), *arms], equity, ids, stopped, "beside",
                  period=period, confidence=confidence, n_boot=n_boot, seed=seed, method=method)
