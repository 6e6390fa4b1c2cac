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
from workbench.domain import SessionKind, SessionState

__all__ = ["EarlyStop", "ab_equity", "ab_paper", "ab_sessions", "arm_metrics", "caught_up", "judged", "live_window",
           "paper_arms", "run_arms", "stored_result"]

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

    The arm :data:`LIVE_ARM` (the session an A/B runs beside, :mod:`workbench.ab.live`) ran before and may run
    after the others: it is cut to the A/B window (:func:`live_window`) and rescaled so that its equity
    just before the window is their initial balance (empty until the variants have a bar)."""
    curves = {name: store.equity(sid)["equity"] for name, sid in session_ids.items()}
    if LIVE_ARM in curves and len(curves) > 1:
        start, end, scale = live_window(store, session_ids, curves)
        live = curves[LIVE_ARM]
        curves[LIVE_ARM] = live.iloc[:0] if start is None else live.loc[start:end] * scale
    return pd.DataFrame(curves).sort_index()


def live_window(store: Any, session_ids: Mapping[str, str], curves: Mapping[str, pd.Series]
                ) -> tuple[pd.Timestamp | None, pd.Timestamp | None, float]:
    """The A/B window (the variants' first and last bar; None, None before their first) and the factor
    taking the live arm's money to the variants' (its equity just before the window -> their initial
    balance; 1 when it has no point before it): the one rule of what the live arm is compared over."""
    ran = [c for n, c in curves.items() if n != LIVE_ARM and len(c)]
    if not ran:
        return None, None, 1.0
    start, end = min(c.index[0] for c in ran), max(c.index[-1] for c in ran)
    live = curves[LIVE_ARM]
    before = live[live.index < start]
    if not len(before):
        return start, end, 1.0
    variant = next(sid for n, sid in session_ids.items() if n != LIVE_ARM)
    return start, end, float(store.get_session(variant)["initial_balance"]) / float(before.iloc[-1])


def arm_metrics(store: Any, session_ids: Mapping[str, str], equity: pd.DataFrame, initial_balance: float
                ) -> dict[str, dict[str, Any]]:
    """Each arm's metrics: an ended variant's stored ones, else computed from its curve in ``equity``
    (:func:`ab_equity`'s); the live arm's always over the A/B window only, whether it runs or has ended:
    its windowed curve and the round trips it opened in the window (saved when it ends), P&L rescaled."""
    from workbench.metrics import compute_metrics

    out: dict[str, dict[str, Any]] = {}
    for name, sid in session_ids.items():
        eq = equity[name].dropna() if name in equity else pd.Series(dtype=float)
        stored = None if name == LIVE_ARM else store.get_session(sid)["metrics"]
        if stored:
            out[name] = dict(stored)
        elif len(eq) <= 2:
            out[name] = {}
        else:
            trades = store.trades(sid) if name == LIVE_ARM else None
            if trades is not None and len(trades):
                _, _, scale = live_window(store, session_ids, {n: store.equity(s)["equity"]
                                                               for n, s in session_ids.items()})
                trades = trades[(trades["entry_time"] >= eq.index[0]) & (trades["entry_time"] <= eq.index[-1])]
                trades = trades.assign(pnl=trades["pnl"] * scale)
            out[name] = compute_metrics(eq, trades if trades is not None and len(trades) else None, initial_balance)
    return out


async def caught_up(store: Any, session_ids: Mapping[str, str], timeout: float, poll: float) -> pd.DataFrame:
    """:func:`ab_equity` once the live arm's stored equity reaches the variants' last bar (its points
    reach the store with its checkpoints), or it has ended, or after ``timeout`` seconds; then cut at
    the last time every arm has reached. Without a live arm, at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ended = LIVE_ARM not in session_ids or SessionState(
            store.get_session(session_ids[LIVE_ARM])["state"]).is_final  # read before: it wrote all it will
        equity = ab_equity(store, session_ids)
        if LIVE_ARM not in equity:
            return equity
        ran = equity.drop(columns=LIVE_ARM).dropna(how="all")
        live = equity[LIVE_ARM].dropna()
        if not len(ran):
            return equity.iloc[:0]
        if (len(live) and live.index[-1] >= ran.index[-1]) or ended or loop.time() >= deadline:
            return equity.loc[:live.index[-1]] if len(live) else equity.iloc[:0]
        await asyncio.sleep(poll)


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
    return judged(store, config, arms, ab_equity(store, ids), ids, stopped, "paper", **judge_args)


def judged(store: Any, config: SessionConfig, arms: list[Variant], equity: pd.DataFrame, ids: Mapping[str, str],
           stopped: Mapping[str, str], kind: str, **judge_args: Any) -> ABResult:
    """The :class:`ABResult` of arms that have ended, on ``equity`` (:func:`ab_equity`'s), metrics by
    :func:`arm_metrics`."""
    metrics = pd.DataFrame(arm_metrics(store, ids, equity, config.initial_balance)).T
    v, used = judge(equity, config.initial_balance, **judge_args)
    return ABResult(config, kind, arms, equity, metrics, v, used, session_ids=dict(ids), stopped=dict(stopped))
