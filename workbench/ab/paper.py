"""A/B as paper sessions: every variant a paper session of its own, all replaying one shared block of bars.

The bars are loaded once (:func:`workbench.engine.feeds.shared_bars`, or the ``bars`` given) and each
session replays them through its own :class:`~workbench.engine.feeds.ReplayFeed` over that one block,
on this event loop. The sessions are ordinary store sessions (named ``A/B <label> <variant>: ...``),
so the history, the detail view and :mod:`workbench.ui.ab` show them while they run; the verdict is
read from what they wrote. With ``early_stop``, a variant whose returns are clearly below the
leader's is stopped (an operator's stop, with the numbers as its reason).
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench.ab.result import ABResult, judge, verdict_returns
from workbench.ab.stats import Method, resampled_means
from workbench.ab.variants import Variant, make_variants
from workbench.config import SessionConfig
from workbench.domain import SessionKind

__all__ = ["EarlyStop", "ab_paper", "ab_equity", "ab_sessions", "paper_arms", "run_arms", "stored_result"]

Variants = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]
LIVE_ARM = "live"  # the arm of the session an A/B runs beside (workbench.ab.live)


@dataclass(frozen=True)
class EarlyStop:
    """Stop a variant once, after at least ``min_periods`` bars, the block-bootstrap interval of its
    mean return per period (the verdict's ``auto`` period) minus the leader's lies wholly below 0 at
    ``confidence`` (stricter than the verdict's: it is looked at many times). Checked every ``every`` seconds."""

    min_periods: int = 200
    confidence: float = 0.99
    every: float = 0.5
    n_boot: int = 500

    def __post_init__(self) -> None:
        if self.min_periods < 10:
            raise ValueError(f"early stop needs min_periods >= 10 bars (got {self.min_periods})")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"early stop confidence must be between 0.5 and 1, e.g. 0.99 (got {self.confidence})")
        if not self.every > 0:
            raise ValueError(f"early stop 'every' must be > 0 seconds (got {self.every})")


def losers(equity: pd.DataFrame, initial_balance: float, rule: EarlyStop, seed: int | None = 0) -> dict[str, str]:
    """Variants whose returns are clearly below the leader's under ``rule``: name -> why."""
    equity = equity.dropna()  # the bars every variant has reached
    if len(equity) < rule.min_periods or equity.shape[1] < 2:
        return {}
    returns, _ = verdict_returns(equity, initial_balance, "auto")
    n = len(returns)
    if n < rule.min_periods or returns.shape[1] < 2:
        return {}
    means = returns.mean()
    leader = str(means.idxmax())
    others = [str(c) for c in returns.columns if c != leader]
    diffs = np.array([(returns[name] - returns[leader]).to_numpy() for name in others])
    boot = resampled_means(diffs, n_boot=rule.n_boot, seed=seed)
    out = {}
    for name, row in zip(others, boot):
        high = float(np.quantile(row, rule.confidence))
        if high < 0:
            out[str(name)] = (f"A/B early stop: mean return per period {means[name]:.3g} below {leader}'s "
                              f"{means[leader]:.3g} (difference < {high:.3g} at {rule.confidence:.0%}, {n} bars)")
    return out


def ab_sessions(store: Any, label: str) -> dict[str, str]:
    """variant -> session id of the A/B ``label``'s sessions in ``store`` (by their names); variants all
    made from one session (an A/B beside it, :mod:`workbench.ab.live`) have it as arm ``live``."""
    frame = store.list_sessions()
    prefix = f"A/B {label} "
    out, parents = {}, set()
    for sid, name, parent in zip(frame["id"], frame["name"].fillna(""), frame["parent_id"]):
        if str(name).startswith(prefix):
            out[str(name)[len(prefix):].split(":", 1)[0]] = str(sid)
            parents.add(parent if isinstance(parent, str) else None)
    if out and len(parents) == 1 and (parent := parents.pop()) is not None:
        out[LIVE_ARM] = parent
    return dict(sorted(out.items()))


def ab_equity(store: Any, session_ids: Mapping[str, str]) -> pd.DataFrame:
    """The variants' equity curves from the store, one column per variant (what the view polls).

    The arm :data:`LIVE_ARM` (the session an A/B runs beside, :mod:`workbench.ab.live`) started before the
    others: it is cut at their first time and rescaled so that its equity just before then is their
    initial balance."""
    curves = {name: store.equity(sid)["equity"] for name, sid in session_ids.items()}
    live = curves.get(LIVE_ARM)
    others = [n for n, c in curves.items() if n != LIVE_ARM and len(c)]
    if live is not None and others:
        start = min(curves[n].index[0] for n in others)
        before = live[live.index < start]
        if len(before):
            balance = float(store.get_session(session_ids[others[0]])["initial_balance"])
            curves[LIVE_ARM] = live.loc[start:] * (balance / float(before.iloc[-1]))
    return pd.DataFrame(curves).sort_index()


async def run_arms(sessions: Mapping[str, Any], store: Any, early_stop: EarlyStop | None, initial_balance: float,
                   seed: int | None = 0, *, others: Mapping[str, str] | None = None) -> dict[str, str]:
    """Start the variants' ``sessions`` (name -> Session, on this loop) and wait until every one has ended,
    stopping clearly losing ones under ``early_stop`` (compared with ``others`` too: arms run elsewhere,
    never stopped here); cancelled, it kills the variants still running. Returns the stopped: name -> why."""
    from workbench.engine.commands import CommandRejected
    from workbench.engine.handle import LocalHandle

    ids = {**(others or {}), **{name: s.id for name, s in sessions.items()}}
    stopped: dict[str, str] = {}
    for s in sessions.values():
        s.start()
    waits = asyncio.ensure_future(asyncio.gather(*(s.wait() for s in sessions.values())))
    try:
        while early_stop is not None and not waits.done():
            await asyncio.wait([waits], timeout=early_stop.every)
            live = {n: sid for n, sid in ids.items() if n not in stopped}
            if waits.done() or len(live) < 2:
                continue
            for name, why in losers(ab_equity(store, live), initial_balance, early_stop, seed).items():
                if name not in sessions:
                    continue
                try:
                    LocalHandle(sessions[name], actor="ab").act("stop", reason=why)
                    stopped[name] = why
                except CommandRejected:  # already ending: nothing to stop
                    pass
        await waits
    finally:
        if not waits.done():  # cancelled (Ctrl-C): end every variant still running
            for s in sessions.values():
                with contextlib.suppress(CommandRejected):
                    LocalHandle(s, actor="ab").act("kill", reason="A/B cancelled")
            await asyncio.gather(waits, return_exceptions=True)
    return stopped


async def ab_paper(
    config: SessionConfig, variants: Variants, store: Any, *, bars: Mapping[str, pd.DataFrame] | None = None,
    speed: float | None = None, early_stop: EarlyStop | None = None, poll_interval: float = 0.5,
    period: str = "auto", confidence: float = 0.95, n_boot: int = 2000, seed: int | None = 0,
    method: Method = "stationary", label: str | None = None,
) -> ABResult:
    """Run each variant of ``config`` as a paper session on one replayed feed (``bars``, else the
    config's data loaded once) until every one ends, then judge them. ``speed`` as ReplayFeed's;
    ``label`` names the A/B in the sessions' names (default: a fresh short id)."""
    from workbench.engine.feeds import BarBlock, ReplayFeed, shared_bars
    from workbench.engine.session import Session

    config, arms = paper_arms(config, variants, label or uuid.uuid4().hex[:6])
    block = (BarBlock.from_frames({s: bars[s] for s in config.symbols}) if bars is not None
             else shared_bars(config.data, config.symbols, config.start, config.end, base=config.currency))
    sessions = {a.name: Session(a.config, store, feed=ReplayFeed(block, speed), poll_interval=poll_interval,
                                actor="ab") for a in arms}
    ids = {name: s.id for name, s in sessions.items()}
    stopped = await run_arms(sessions, store, early_stop, config.initial_balance, seed)
    return stored_result(store, config, arms, ids, stopped, period=period, confidence=confidence, n_boot=n_boot,
                         seed=seed, method=method)


def paper_arms(config: SessionConfig, variants: Variants, label: str) -> tuple[SessionConfig, list[Variant]]:
    """(the paper base config, its validated variants named ``A/B <label> <variant>: <changes>``)."""
    if not isinstance(config, SessionConfig):
        raise TypeError(f"a paper A/B takes a SessionConfig (see workbench.make_config), got {type(config).__name__}")
    if config.kind is not SessionKind.PAPER:
        config = config.replace(kind=SessionKind.PAPER.value)
    if config.data.live:
        raise ValueError("a paper A/B replays bars: set data.live to false (live bars reach each session "
                         "at its own time, so the variants would not see one feed)")
    return config, labelled(make_variants(config, variants), label)


def labelled(arms: list[Variant], label: str) -> list[Variant]:
    """``arms`` with their sessions named ``A/B <label> <variant>: <changes>`` (how :func:`ab_sessions` finds them)."""
    return [Variant(a.name, a.changes, a.config.replace(name=f"A/B {label} {a.config.name.removeprefix('A/B ')}"))
            for a in arms]


def stored_result(store: Any, config: SessionConfig, arms: list[Variant], ids: Mapping[str, str],
                  stopped: Mapping[str, str], **judge_args: Any) -> ABResult:
    """The :class:`ABResult` of paper variants that have ended, read from the store."""
    equity = ab_equity(store, ids)
    metrics = pd.DataFrame({name: store.get_session(sid)["metrics"] or {} for name, sid in ids.items()}).T
    v, used = judge(equity, config.initial_balance, **judge_args)
    return ABResult(config, "paper", arms, equity, metrics, v, used, session_ids=dict(ids), stopped=dict(stopped))
