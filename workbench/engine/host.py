"""``workbench host``: a long-running process that runs the sessions others create.

:func:`run_host` marks running sessions whose runner's lease expired as orphaned (at start and every
``ORPHAN_AFTER_POLLS`` polls), and every ``poll`` seconds claims sessions in state "requested" and (by
default, ``resume_orphans``) "orphaned": each claim takes the session's lease in one transaction
(:meth:`~workbench.store.lease.LeaseStore.claim_session`), so two hosts never run one session and a
live runner, even one stalled on a store lock, is never taken over before its lease expires. Each
runs as a :class:`Session` on this event loop; the sessions poll their own commands and renew their
lease. An orphaned session, or a requested one that has a checkpoint (a resume asked for from the
dashboards), is resumed from its last checkpoint with its portfolio. Sessions are made by
:func:`workbench.engine.open_session` (live sessions need ``session_kwargs={"arming": ...}``; otherwise
they fail to start, saying how to arm).

A host that ends (cancelled: Ctrl-C, SIGTERM; or an error in its own loop, e.g. the store failing)
hands its running sessions back (:meth:`Session.hand_back`): checkpointed and ORPHANED, positions and
resting orders kept, for the next host to resume. Only an operator's stop or kill ends a session.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workbench.account import AccountGate
from workbench.account.health import venue_health
from workbench.account.rates import sources_loader
from workbench.config import SessionConfig
from workbench.domain import SessionState
from workbench.engine.exposure import RUNNING_STATES, Clock, is_orphaned, utc_now
from workbench.engine.live import open_session
from workbench.engine.session import Session, runner_id
from workbench.ops import OpsConfig, OpsConsole
from workbench.store import Store
from workbench.store.lease import LEASE_SECONDS, LeaseHeld
from workbench.team import authorize, current_actor

S = SessionState
log = logging.getLogger(__name__)
ORPHAN_AFTER_POLLS = 10
#: the event message of a session a shut-down host hands back (after "<actor> ")
HANDED_BACK = "shut down: handed back, resumable"
#: why a host without ``allow_live`` fails a requested live session (its error event says so)
LIVE_REFUSED = ("this host does not trade live: start it with `workbench up --allow-live` (or `workbench host "
                "--allow-live`), and confirm exchange:account when requesting the session")


def mark_orphans(store: Store, stale_after: float, *, actor: str = "host", clock: Clock = utc_now) -> list[str]:
    """Mark running sessions whose runner's lease expired before ``clock()`` (or, holding no lease, whose
    heartbeat is more than ``stale_after`` seconds old or missing) as orphaned, per
    :func:`~workbench.engine.exposure.is_orphaned`; returns their ids."""
    now = clock()
    out: list[str] = []
    frame = store.list_sessions(states=[s.value for s in (*RUNNING_STATES, S.CREATED)])  # created: claimed, not run
    for row in frame.itertuples(index=False):
        hb = row.heartbeat_at
        hb = None if hb is None or hb != hb else hb  # NaT / NaN
        if not is_orphaned(row.state, hb, now, stale_after, lease_expires=row.lease_expires):
            continue
        msg = (f"orphaned: {row.runner or 'its runner'}'s lease expired at {row.lease_expires}"
               if row.lease_expires == row.lease_expires and row.lease_expires is not None
               else f"orphaned: no heartbeat since {hb}" if hb is not None else "orphaned: never heartbeated")
        if store.set_state(row.id, S.ORPHANED, actor=actor, message=msg, expect=[row.state]):
            out.append(row.id)
    return out


def request_session(store: Store, config: SessionConfig, *, arming: Mapping[str, Any] | None = None,
                    actor: str = "user", parent_id: str | None = None) -> str:
    """Record ``config`` as a session for ``workbench host`` to run (state "requested"); returns its id.
    ``parent_id``: the session this is a new run of (a restart).

    A live request keeps the user's confirmation (``arming['confirmation']``, e.g. ``'binance:main'``;
    not a secret) in an ``arming`` event; the host arms the session only if it was itself started
    with ``allow_live`` and that confirmation names the session's exchange and account."""
    actor = current_actor(actor)  # a dashboard kernel's hub user
    authorize(store, actor, "request_session")  # team mode: operators and admins (a refusal is audited)
    sid = store.create_session(config, state=S.REQUESTED, parent_id=parent_id)
    if config.kind.value == "live":
        record_arming(store, sid, arming, actor=actor)
    return sid


def record_arming(store: Store, session_id: str, arming: Mapping[str, Any] | None, *, actor: str) -> None:
    """Keep a live request's confirmation (not a secret) in an ``arming`` event, which
    :func:`requested_arming` reads when a host claims the session."""
    arming = dict(arming or {})
    confirmation = str(arming.get("confirmation") or "")
    store.add_event(session_id, "arming", f"live session requested with confirmation {confirmation!r}",
                    {"allow_live": bool(arming.get("allow_live")), "confirmation": confirmation}, actor=actor)


def requested_arming(store: Store, session_id: str, host_allows_live: bool) -> dict[str, Any]:
    """The arming a host gives a requested live session: the request's confirmation, and ``allow_live``
    only if both the requester ticked it and the host runs with ``allow_live``."""
    ev = store.events(session_id)
    ev = ev[ev["kind"] == "arming"]
    data = ev["data"].iloc[-1] if len(ev) else {}
    return {"allow_live": bool(host_allows_live and data.get("allow_live")),
            "confirmation": str(data.get("confirmation") or "")}


def tune_gc() -> None:
    """For a host process, once after start-up: warm the kernels, then move every object that exists now
    (modules, compiled kernels) out of the collector's sight (``gc.freeze``) and collect the oldest
    generation a tenth as often. A full collection over a host's heap stalled its event loop, and so
    every session's next bar, for 100-300 ms. Not for notebooks or test processes (frozen objects are
    never collected)."""
    import gc

    from workbench import execution as ex

    ex.warm_up()
    gc.collect()
    gc.freeze()
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, 100)


async def run_host(store_url: str | None, *, poll: float = 0.5, stop_after: float | None = None,
                   resume_orphans: bool = True, session_kwargs: dict[str, Any] | None = None,
                   allow_live: bool = False, actor: str = "host", clock: Clock = utc_now,
                   ops: OpsConfig | None = None, risk_policy: str | Path | None = None) -> list[str]:
    """Run requested (and, with ``resume_orphans``, orphaned) sessions until cancelled or SIGTERM (then
    hand them back and return), or until ``stop_after`` seconds have passed (then stop claiming and wait
    for the running sessions to end). Returns the ids of the sessions it ran. ``clock`` (wall time)
    decides whose heartbeat is stale (:func:`mark_orphans`).

    Live sessions run only on a host started with ``allow_live`` (``workbench up --allow-live`` or
    ``workbench host --allow-live``; otherwise they fail at once with :data:`LIVE_REFUSED`),
    armed with the confirmation their request carries (:func:`request_session`). ``ops``: alerts and a
    metrics endpoint run beside the sessions (:class:`workbench.ops.OpsConsole`; default none).

    Every session's entries pass the account gate (:mod:`workbench.account`) of ``risk_policy`` (default
    ``risk-policy.yaml`` in the workbench home; a bad file stops the host before it runs anything; a
    bad edit while it runs is logged and the policy in force stays), shared by all its sessions."""
    gate = AccountGate.from_file(risk_policy)
    store = Store(store_url)
    console = OpsConsole(store, ops)
    kwargs = {"poll_interval": poll, **(session_kwargs or {})}
    lease = float(kwargs.get("lease_seconds", LEASE_SECONDS))
    running: dict[str, Session] = {}
    ran: list[str] = []
    deadline = None if stop_after is None else time.monotonic() + stop_after
    sigterm = _SigtermCancels()
    polls = 0
    try:
        console.start()
        while deadline is None or time.monotonic() < deadline:
            if polls % ORPHAN_AFTER_POLLS == 0:  # the host's store work runs off the loop: a lock stalls no session
                if problem := gate.reload_if_changed():
                    log.warning("risk policy not reloaded: %s", problem)
                if any(lim.min_venue_health is not None for lim in gate.policy.accounts.values()):
                    health = await asyncio.to_thread(venue_health, store, clock())
                    gate.set_health({v: h.score for v, h in health.items()})
                if sources := [(s.config.data, s.last_bar) for s in running.values() if s.last_bar is not None]:
                    await asyncio.to_thread(gate.load_rates, sources_loader(sources), refresh=True)  # currencies
                await asyncio.to_thread(_mark_orphans, store, ORPHAN_AFTER_POLLS * poll, actor, clock)
            polls += 1
            states = [S.REQUESTED.value] + ([S.ORPHANED.value] if resume_orphans else [])
            for sid, resume in await asyncio.to_thread(_claim, store, states, set(running), lease, actor):
                try:
                    config = store.get_session(sid)["config"]
                    if config is None:
                        problem = store.get_session(sid).get("config_error")
                        raise ValueError(f"the stored config is invalid: {problem}")
                    extra: dict[str, Any] = {}
                    if config.kind.value == "live" and "arming" not in kwargs:
                        if not allow_live:
                            raise ValueError(LIVE_REFUSED)
                        extra["arming"] = requested_arming(store, sid, allow_live)
                    session = (open_session(config, store, resume=sid, **kwargs, **extra) if resume
                               else open_session(config, store, session_id=sid, **kwargs, **extra))
                except Exception as e:
                    await asyncio.to_thread(_failed_to_start, store, sid, e, actor)
                    continue
                session.risk.attach_account(gate, sid)
                running[sid] = session.start()
                ran.append(sid)
            for sid in [sid for sid, sess in running.items() if sess._task is not None and sess._task.done()]:
                del running[sid]
                gate.forget(sid)
            await asyncio.sleep(poll)
        for sess in list(running.values()):
            await sess.wait()
    except asyncio.CancelledError:
        if not sigterm.fired:
            raise
    finally:
        try:
            await hand_back(running.values(), f"{actor} {HANDED_BACK}")
        finally:
            await console.stop()
            sigterm.remove()
            store.close()
    return ran


def _mark_orphans(store: Store, stale_after: float, actor: str, clock: Clock) -> None:
    orphans = mark_orphans(store, stale_after, actor=actor, clock=clock)
    if orphans:
        store.add_event(None, "host", f"marked {len(orphans)} orphaned sessions", {"ids": orphans}, actor=actor)


def _claim(store: Store, states: list[str], running: set[str], lease: float, actor: str) -> list[tuple[str, bool]]:
    """Claim, with their leases, the sessions in ``states`` not running here, oldest first: ``(id, resume)``,
    resume for an orphaned one or a requested one with a checkpoint (a resume asked for)."""
    out: list[tuple[str, bool]] = []
    for row in store.list_sessions(states=states).iloc[::-1].itertuples(index=False):
        if row.id in running:
            continue
        resume = row.state == S.ORPHANED.value or store.load_runner_state(row.id) is not None
        try:
            token = store.claim_session(row.id, runner_id(), ttl=lease, expect=[row.state],
                                        state=S.STARTING if resume else S.CREATED, actor=actor,
                                        message=f"claimed by {actor} ({runner_id()})")
        except LeaseHeld:  # its runner lives on (e.g. stalled): taken over only once the lease expires
            continue
        if token is not None:  # else another host was first
            out.append((row.id, resume))
    return out


def _failed_to_start(store: Store, sid: str, e: Exception, actor: str) -> None:
    store.add_event(sid, "error", f"host could not start the session: {e}", actor=actor)
    store.set_state(sid, S.FAILED, actor=actor, message=f"failed to start: {e}")
    store.release_lease(sid)


async def hand_back(sessions: Iterable[Session], reason: str) -> None:
    """Hand the sessions still running back (:meth:`Session.hand_back`) and wait until each is ORPHANED."""
    live = [s for s in sessions if s._task is not None and not s._task.done()]
    for sess in live:
        sess.hand_back(reason)
    await asyncio.gather(*(sess.wait() for sess in live), return_exceptions=True)


class _SigtermCancels:
    """SIGTERM cancels the current task, as Ctrl-C does under ``asyncio.run``; ``fired`` says it did.
    Installed only in the main thread (where signal handlers can be); :meth:`remove` undoes it."""

    def __init__(self) -> None:
        self.fired = False
        self._loop: asyncio.AbstractEventLoop | None = None
        task = asyncio.current_task()
        if task is None or threading.current_thread() is not threading.main_thread():
            return

        def fire() -> None:
            self.fired = True
            task.cancel()

        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, fire)
        except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows
            return
        self._loop = loop

    def remove(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGTERM)
            self._loop = None
