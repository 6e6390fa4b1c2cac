"""What the views, the CLI and the host act on: one :class:`SessionHandle` per session, wherever it runs.

* :class:`LocalHandle` wraps a :class:`~workbench.engine.session.Session` running in this kernel:
  ``act`` applies the control now (the session's own ``_do_*`` through the commands table).
* :class:`RemoteHandle` is a session run by another process (``workbench host``, another kernel):
  ``send`` queues a store command for its runner, ``act`` waits for the runner's answer.

Both give ``state``, ``allowed()`` (from :data:`workbench.engine.commands.ALLOWED`), ``act``,
``restart()`` (a new run of the same config and kind; a live one must be armed again, see
:func:`workbench.engine.live.arming_problem`), ``resume_run()`` (an ORPHANED run carried on from its last
checkpoint, with its portfolio: in this kernel, or by ``workbench host``; not ``resume``, which resumes
trading after a pause), ``controls()`` (what a view may offer now) and ``snapshot()``. :func:`handle_for`
picks one.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from workbench.config import SessionConfig
from workbench.domain import TRADE_COLUMNS, SessionState
from workbench.engine import commands
from workbench.engine.commands import Command, CommandRejected
from workbench.engine.exposure import concentration, limit_usage
from workbench.execution.ledger import Portfolio
from workbench.execution.legs import with_legs
from workbench.store import Store
from workbench.store.lease import LEASE_SECONDS
from workbench.team.identity import current_actor

S = SessionState
POSITION_COLUMNS = ("symbol", "quantity", "avg_price", "price", "value")
#: the handle's control beside the commands table's: carry an orphaned run on from its last checkpoint
RESUME_RUN = "resume_run"


def resume_run_problem(session_id: str, state: SessionState | str) -> str | None:
    """Why the run of ``session_id`` in ``state`` cannot be resumed, or None if it can: only an ORPHANED run
    (no runner holds it) is resumed from its checkpoint. The message says what to do instead."""
    st = SessionState(state)
    if st is S.ORPHANED:
        return None
    why = f"cannot resume the run of {session_id}: it is {st.value}"
    if st.is_final:
        return f"{why} (ended); restart it for a new run of its config"
    if st is S.PAUSED:
        return f"{why} and its runner is alive; resume it to resume trading"
    if st is S.REQUESTED:
        return f"{why} already (waiting for `workbench host`); cancel it if it should not run"
    return f"{why} and its runner is alive; nothing to resume (pause, stop or kill it instead)"


def _check_armed(config: SessionConfig, arming: Mapping[str, Any] | None, what: str, session_id: str) -> None:
    """:class:`~workbench.engine.live.LiveNotArmed` (before anything is recorded) if a live run may not start."""
    from workbench.engine.live import LiveNotArmed, arming_problem

    problem = arming_problem(config, arming)
    if problem:
        raise LiveNotArmed(f"cannot {what} {session_id}: {problem}")


@dataclass(frozen=True)
class Snapshot:
    """A session at one moment: state, the risk engine's trading state, positions valued at their last
    marks, trades so far (open ones with status "open"), and exposure with the configured limits."""

    session_id: str
    kind: str
    state: SessionState
    risk_state: str  # running | reducing | halted, "" when unknown (no checkpoint yet)
    positions: pd.DataFrame  # POSITION_COLUMNS
    trades: pd.DataFrame  # TRADE_COLUMNS
    cash: float
    equity: float
    exposure: float
    concentration: pd.DataFrame  # exposure.concentration
    limits: pd.DataFrame  # exposure.limit_usage


def _snapshot(session_id: str, kind: str, state: SessionState, risk_state: str, pf: Portfolio,
              config: SessionConfig | None, trades: pd.DataFrame | None = None) -> Snapshot:
    rows = [(s, p.quantity, p.avg_price, pf.marks.get(s, p.avg_price), pf.symbol_exposure(s))
            for s, p in sorted(pf.positions.items()) if p.quantity != 0.0]  # shorts (< 0) too
    positions = pd.DataFrame(rows, columns=list(POSITION_COLUMNS))
    values = dict(zip(positions["symbol"], positions["value"]))
    equity = pf.equity
    if trades is None:
        trades = pd.DataFrame(pf.trade_log(include_open=True), columns=list(TRADE_COLUMNS))
    if config is not None and config.legs:  # each trade's leg (execution.legs)
        trades = with_legs(trades, config)
    limits = limit_usage(config, values, equity) if config is not None else pd.DataFrame()
    return Snapshot(session_id, kind, state, risk_state, positions, trades, pf.cash, equity, pf.exposure,
                    concentration(pd.Series(values, dtype=float), equity), limits)


def stored_portfolio(store: Store, session_id: str, initial_cash: float,
                     marks: Mapping[str, float] | None = None, saved: Mapping[str, Any] | None = None) -> Portfolio:
    """The portfolio the session's stored fills give (in booking order), marked at ``marks``, with the
    carrying costs of ``saved`` (its runner checkpoint's portfolio: funding and interest are not fills)."""
    pf = Portfolio.replay_stored(initial_cash, store.fills(session_id), store.orders(session_id), saved)
    pf.marks.update({s: float(v) for s, v in (marks or {}).items()})
    return pf


class SessionHandle(ABC):
    """One session to act on. See the module docstring."""

    session_id: str
    store: Store
    actor: str
    local: bool = False

    @property
    @abstractmethod
    def state(self) -> SessionState:
        """The session's state now."""

    @property
    def kind(self) -> str:
        """backtest | paper | live."""
        return str(self.store.get_session(self.session_id)["kind"])

    def allowed(self) -> frozenset[Command]:
        """The commands the current state allows (:data:`workbench.engine.commands.ALLOWED`)."""
        return commands.allowed(self.state)

    def controls(self) -> frozenset[str]:
        """What a view may offer now: the allowed commands' names, plus :data:`RESUME_RUN` for an orphaned run."""
        state = self.state
        resumable = resume_run_problem(self.session_id, state) is None
        return frozenset({c.value for c in commands.allowed(state)} | ({RESUME_RUN} if resumable else set()))

    def cancel_request(self, reason: str = "") -> SessionState:
        """Withdraw a request no host has claimed yet; returns the state it leaves. A new run ends (stopped,
        :meth:`Store.cancel_requested`); a run requested back to be resumed (it has a runner checkpoint, so
        it may hold positions) goes back to orphaned, still resumable. Any other state is refused naming it."""
        sid, why = self.session_id, f": {reason}" if reason else ""
        if self.store.load_runner_state(sid) is None:
            self.store.cancel_requested(sid, actor=self.actor, reason=reason)
        elif self.store.set_state(sid, S.ORPHANED, expect=S.REQUESTED, actor=self.actor,
                                  message=f"resume request withdrawn by {self.actor}{why}; still resumable"):
            self.store.add_event(sid, "cancelled", f"resume request withdrawn by {self.actor}{why}",
                                 {"reason": reason}, self.actor)
        else:
            raise CommandRejected(f"cannot cancel session {sid}: it is {self.state.value}; only a requested "
                                  "session (not yet picked up by a host) can be cancelled; stop or kill a running one")
        return self.state

    def _check_resumable(self) -> SessionConfig:
        """The config of an orphaned run, else :class:`CommandRejected` naming its state and what to do."""
        problem = resume_run_problem(self.session_id, self.state)
        if problem:
            raise CommandRejected(problem)
        return self._config("resume")

    @abstractmethod
    def act(self, command: Command | str, **args: Any) -> str:
        """Apply ``command``; returns the runner's message or raises :class:`CommandRejected` saying why."""

    @abstractmethod
    def restart(self, **kwargs: Any) -> SessionHandle:
        """A new run of the same config and kind (``parent_id`` = this session)."""

    @abstractmethod
    def resume_run(self, **kwargs: Any) -> SessionHandle:
        """Carry an ORPHANED run on from its last checkpoint, positions and resting orders kept (the same
        session id); :class:`CommandRejected` in any other state, naming it and what to do instead."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """State, risk state, positions, trades so far and exposure."""

    @abstractmethod
    def risk_state(self) -> str:
        """The risk engine's trading state (running | reducing | halted); "" if not known yet."""

    def _config(self, what: str = "restart") -> SessionConfig:
        row = self.store.get_session(self.session_id)
        if row["config"] is None:
            raise CommandRejected(f"cannot {what} {self.session_id}: its stored config no longer validates "
                                  f"({row.get('config_error')}); create a new session instead")
        return row["config"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.session_id} {self.state.value}>"


class LocalHandle(SessionHandle):
    """A session running in this kernel: controls are applied at once by the session itself."""

    local = True
    #: settings of the old run that a restart keeps (the feed is made anew from the config)
    CARRY = ("poll_interval", "equity_interval", "checkpoint_interval", "replay_speed")

    def __init__(self, session: Any, *, actor: str = "user"):
        self.session, self.actor = session, current_actor(actor)  # a dashboard kernel's hub user wins
        self.session_id, self.store = session.id, session.store

    @property
    def state(self) -> SessionState:
        return SessionState(self.session.state)

    def act(self, command: Command | str, **args: Any) -> str:
        cmd = commands.parse(command)
        if cmd is Command.RESTART:
            raise CommandRejected("restart makes a new run: call restart() (it returns the new run's handle)")
        actor = str(args.pop("actor", self.actor))
        try:
            return str(self.session._control(cmd, actor, **args))
        except CommandRejected:
            raise
        except ValueError as e:  # invalid values (params, symbols, order fields): the message says which
            raise CommandRejected(f"{cmd.value} rejected: {e}") from e

    def restart(self, *, arming: Mapping[str, Any] | None = None, start: bool = True, **kwargs: Any) -> LocalHandle:
        """A new local run of the same config and kind, started on the running loop (``start``). Keeps the
        old run's poll/checkpoint settings and replay speed; a live session needs ``arming`` again (and
        may take ``exchange``/``credentials`` as :func:`~workbench.engine.live.open_session` does)."""
        from workbench.engine.session import Session

        commands.check_allowed(self.state, Command.RESTART)
        new = Session.restart(self.session_id, self.store, **self._run_kwargs(arming, kwargs))
        if start:
            new.start()
        return LocalHandle(new, actor=self.actor)

    def _run_kwargs(self, arming: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A new Session's keywords: the old run's :data:`CARRY` settings, then ``arming`` and ``kwargs``."""
        carried = {k: getattr(self.session, k) for k in self.CARRY if hasattr(self.session, k)}
        return {**carried, **({"arming": arming} if arming is not None else {}), **kwargs}

    def resume_run(self, *, arming: Mapping[str, Any] | None = None, start: bool = True,
                   **kwargs: Any) -> LocalHandle:
        """Resume the orphaned run in this kernel from its last checkpoint (the same session id), started on
        the running loop (``start``). Settings and arming as :meth:`restart`. The session's lease is claimed
        first, with the move orphaned -> starting in one transaction (as a host claims it), so a host
        resuming it at the same time cannot double it (:class:`~workbench.store.lease.LeaseHeld` while a
        dead runner's lease has not expired); if the new runner cannot be made it is left orphaned."""
        from workbench.engine.live import open_session
        from workbench.engine.session import runner_id

        config = self._check_resumable()
        run_kwargs = self._run_kwargs(arming, kwargs)
        _check_armed(config, run_kwargs.get("arming"), "resume", self.session_id)
        sid, ttl = self.session_id, float(run_kwargs.get("lease_seconds", LEASE_SECONDS))
        token = self.store.claim_session(sid, runner_id(), ttl=ttl, expect=[S.ORPHANED], state=S.STARTING,
                                         actor=self.actor, message=f"run resumed from its last checkpoint by "
                                                                   f"{self.actor} (in a kernel)")
        if token is None:
            raise CommandRejected(resume_run_problem(sid, self.store.get_session(sid)["state"])
                                  or f"cannot resume the run of {sid}: another runner claimed it")
        try:
            new = open_session(config, self.store, resume=sid, **run_kwargs)
            if start:
                new.start()
        except BaseException as e:
            self.store.set_state(sid, S.ORPHANED, expect=S.STARTING, actor=self.actor,
                                 message=f"resume failed: {e}; still resumable")
            self.store.release_lease(sid)
            raise
        return LocalHandle(new, actor=self.actor)

    def risk_state(self) -> str:
        return str(self.session.risk.state.value)

    def snapshot(self) -> Snapshot:
        s = self.session
        return _snapshot(self.session_id, s.config.kind.value, self.state, self.risk_state(), s.portfolio, s.config)


class RemoteHandle(SessionHandle):
    """A session run elsewhere: commands go through the store to whichever runner polls them.

    ``send`` rejects at once only what no runner could answer (an unknown command, arguments that do not
    fit the command, a state without a runner); the runner applies the state table itself, since the
    state read here may already be out of date. ``act`` waits up to ``timeout`` s for the answer
    (``clock``/``sleep`` are injectable)."""

    def __init__(self, session_id: str, store: Store, *, actor: str = "user", timeout: float = 10.0,
                 poll: float = 0.1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        store.get_session(session_id)  # NotFoundError for a bad id
        self.session_id, self.store, self.actor = session_id, store, current_actor(actor)  # the hub user wins
        self.timeout, self.poll, self.clock, self.sleep = float(timeout), float(poll), clock, sleep

    @property
    def state(self) -> SessionState:
        return SessionState(self.store.get_session(self.session_id)["state"])

    def send(self, command: Command | str, **args: Any) -> int:
        """Queue ``command`` for the runner; returns the store command id (see :meth:`result`)."""
        from workbench.engine.session import Session

        cmd = commands.parse(command)
        if cmd is Command.RESTART:
            raise CommandRejected("restart makes a new run: call restart() (it returns the new run's handle)")
        actor = str(args.pop("actor", self.actor))
        state = self.state
        if not any(c in commands.RUNNER_COMMANDS for c in commands.allowed(state)):
            commands.check_allowed(state, cmd)  # rejects, naming the state and what it allows
        commands.bind(partial(getattr(Session, f"_do_{cmd.value}"), None), cmd, actor=actor, **args)
        return self.store.send_command(self.session_id, cmd.value, args or None, actor=actor)

    def result(self, cmd_id: int) -> dict[str, Any] | None:
        """The finished command (``status`` applied/rejected, ``result`` text), or None while pending."""
        cmd = self.store.get_command(cmd_id)
        return None if cmd["status"] == "pending" else cmd

    def act(self, command: Command | str, **args: Any) -> str:
        cmd_id = self.send(command, **args)
        deadline = self.clock() + self.timeout
        while (done := self.result(cmd_id)) is None:
            if self.clock() >= deadline:
                raise TimeoutError(f"no runner answered {commands.parse(command).value} (command {cmd_id}) within "
                                   f"{self.timeout:g}s; it stays queued: is the session's runner "
                                   "(workbench host) alive?")
            self.sleep(self.poll)
        if done["status"] != "applied":
            raise CommandRejected(str(done["result"]))
        return str(done["result"])

    def restart(self, *, arming: Mapping[str, Any] | None = None, **kwargs: Any) -> RemoteHandle:
        """Request a new run of the same config and kind from ``workbench host`` (state "requested"). A live
        session needs ``arming`` again (the host still needs ``--allow-live``)."""
        from workbench.engine.host import request_session

        if kwargs:
            raise TypeError(f"a remote restart takes only arming (got {', '.join(kwargs)}); "
                            "the host decides how it runs the session")
        commands.check_allowed(self.state, Command.RESTART)
        config = self._config()
        _check_armed(config, arming, "restart", self.session_id)
        new_id = request_session(self.store, config, arming=arming, actor=self.actor, parent_id=self.session_id)
        return RemoteHandle(new_id, self.store, actor=self.actor, timeout=self.timeout, poll=self.poll,
                            clock=self.clock, sleep=self.sleep)

    def resume_run(self, *, arming: Mapping[str, Any] | None = None, **kwargs: Any) -> RemoteHandle:
        """Ask ``workbench host`` to resume the orphaned run from its last checkpoint: the session goes back
        to "requested" (compare-and-set on orphaned, the state event naming who asked) and the host that
        claims it resumes it with its portfolio. A live one needs ``arming`` again (the host still needs
        ``--allow-live``). Returns this handle (the session id is kept)."""
        if kwargs:
            raise TypeError(f"a remote resume takes only arming (got {', '.join(kwargs)}); "
                            "the host decides how it runs the session")
        config = self._check_resumable()
        _check_armed(config, arming, "resume", self.session_id)
        if config.kind.value == "live":  # before the move: a host may claim it at once
            from workbench.engine.host import record_arming

            record_arming(self.store, self.session_id, arming, actor=self.actor)
        if not self.store.set_state(self.session_id, S.REQUESTED, expect=S.ORPHANED, actor=self.actor,
                                    message=f"resume of the run requested by {self.actor}: workbench host "
                                            "resumes it from its last checkpoint"):
            raise CommandRejected(resume_run_problem(self.session_id, self.state)
                                  or f"cannot resume the run of {self.session_id}: another runner claimed it")
        return self

    def _runner_state(self) -> dict[str, Any]:
        try:
            return self.store.load_runner_state(self.session_id) or {}
        except Exception:  # an unreadable checkpoint: nothing known yet
            return {}

    def risk_state(self) -> str:
        return str((self._runner_state().get("risk") or {}).get("state") or "")

    def snapshot(self) -> Snapshot:
        row = self.store.get_session(self.session_id)
        state, config = SessionState(row["state"]), row["config"]
        runner = self._runner_state()
        saved = runner.get("portfolio") or {}
        risk_state = str((runner.get("risk") or {}).get("state") or "")
        pf = stored_portfolio(self.store, self.session_id, float(row["initial_balance"]), saved.get("marks"), saved)
        trades = self.store.trades(self.session_id) if state.is_final else None
        if trades is not None and trades.empty and pf.fill_count:
            trades = None  # ended without saving its trades (killed hard): rebuild them from the fills
        return _snapshot(self.session_id, str(row["kind"]), state, risk_state, pf, config, trades)


def handle_for(session_id: str, store: Store, local_sessions: Mapping[str, Any] | None = None, *,
               actor: str = "user", **remote: Any) -> SessionHandle:
    """The handle of ``session_id``: local if ``local_sessions`` (id -> Session started in this kernel)
    holds it, else remote through ``store`` (``remote``: :class:`RemoteHandle` options)."""
    session = (local_sessions or {}).get(session_id)
    if session is not None:
        return LocalHandle(session, actor=actor)
    return RemoteHandle(session_id, store, actor=actor, **remote)


__all__ = ["Snapshot", "SessionHandle", "LocalHandle", "RemoteHandle", "handle_for", "stored_portfolio",
           "POSITION_COLUMNS", "RESUME_RUN", "resume_run_problem"]
