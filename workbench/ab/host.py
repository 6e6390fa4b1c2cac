"""A paper A/B run by ``workbench host``: its variants are requested sessions, not tasks of this process.

:func:`ab_request` records each variant as a requested paper session (named ``A/B <label> <variant>: ...``);
a host claims them and replays the config's bars once for all of them (:func:`workbench.engine.feeds.shared_bars`:
one block per host process). They are ordinary hosted sessions, so they are crash-only like any other: a
host killed mid-run leaves them orphaned once their leases expire, and the next host resumes each from its
checkpoint. :func:`ab_follow` watches them from the store until all have ended (early-stopping a clear loser
with a stop command through the store) and judges them; the process that follows may die too: following
again by label picks up where the sessions are. Cancelling a follower leaves the variants running.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from workbench.ab.paper import (
    LIVE_ARM,
    EarlyStop,
    Variants,
    ab_equity,
    ab_sessions,
    caught_up,
    judged,
    losers,
    paper_arms,
)
from workbench.ab.result import ABResult
from workbench.ab.variants import Variant
from workbench.config import SessionConfig
from workbench.domain import SessionState

__all__ = ["ab_follow", "ab_request"]


def ab_request(config: SessionConfig, variants: Variants, store: Any, *, label: str | None = None
               ) -> tuple[str, dict[str, str]]:
    """Request every variant of ``config`` as a paper session for ``workbench host``: (label, name -> id)."""
    from workbench.engine.host import request_session

    label = label or uuid.uuid4().hex[:6]
    if ab_sessions(store, label):
        raise ValueError(f"A/B {label!r} exists already; give another label (or follow it: workbench ab --follow)")
    _, arms = paper_arms(config, variants, label)
    return label, {a.name: request_session(store, a.config, actor="ab") for a in arms}


async def ab_follow(store: Any, label: str, *, early_stop: EarlyStop | None = None, poll: float = 0.5,
                    period: str = "auto", confidence: float = 0.95, n_boot: int = 2000, seed: int | None = 0,
                    method: Any = "stationary", catch_up: float = 30.0) -> ABResult:
    """Wait until every variant of A/B ``label`` has ended (checking the store every ``poll`` seconds;
    with ``early_stop``, sending a stop to a clear loser), then judge them. An A/B beside a session
    (:func:`workbench.ab.live.ab_beside_request`) has that session as arm ``live``: never stopped nor
    waited for, compared over the variants' window once its equity reaches their last bar (up to
    ``catch_up`` seconds)."""
    from workbench.engine.commands import CommandRejected
    from workbench.engine.handle import RemoteHandle

    ids = ab_sessions(store, label)
    variants = {n: sid for n, sid in ids.items() if n != LIVE_ARM}
    if len(ids) < 2:
        raise ValueError(f"found {len(ids)} session(s) of A/B {label!r}; an A/B has 2 or more")
    rows = {name: store.get_session(sid) for name, sid in ids.items()}
    base: SessionConfig = rows[next(iter(variants))]["config"]
    stopped = {n: why for n in variants if rows[n]["state"] == "stopped" and (why := _early_stop(store, ids[n]))}
    while True:
        states = {n: SessionState(store.get_session(sid)["state"]) for n, sid in ids.items()}
        if all(s.is_final for n, s in states.items() if n != LIVE_ARM):
            break
        running = {n: ids[n] for n, s in states.items() if s is SessionState.RUNNING and n not in stopped}
        if early_stop is not None and len(running) >= 2:
            for name, why in losers(ab_equity(store, running), base.initial_balance, early_stop, seed).items():
                if name == LIVE_ARM:
                    continue
                with contextlib.suppress(CommandRejected):  # ending already
                    RemoteHandle(ids[name], store, actor="ab").send("stop", reason=why)
                    stopped[name] = why
        await asyncio.sleep(early_stop.every if early_stop is not None else poll)
    if LIVE_ARM in ids:
        ids = {LIVE_ARM: ids[LIVE_ARM], **variants}
    arms = [Variant(n, {}, rows[n]["config"]) for n in ids]
    equity = await caught_up(store, ids, catch_up, poll)
    return judged(store, base, arms, equity, ids, stopped, "beside" if LIVE_ARM in ids else "paper",
                  period=period, confidence=confidence, n_boot=n_boot, seed=seed, method=method)


def _early_stop(store: Any, session_id: str) -> str | None:
    """Why an earlier follower stopped this variant early, from its events (None: it did not)."""
    messages = store.events(session_id)["message"].astype(str)
    hits = messages[messages.str.contains("A/B early stop", regex=False)]
    return str(hits.iloc[-1]) if len(hits) else None
