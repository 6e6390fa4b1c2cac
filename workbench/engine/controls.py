"""The controls of a session: the public methods (each a command applied now, as a 'control' event)
and their implementations ``_do_<command>`` (return a message or raise CommandRejected/ValueError).

:class:`SessionControls` is mixed into :class:`~workbench.engine.session.Session`. It also holds the
poll loop (heartbeat, pending store commands, checkpoint). Store commands
(:meth:`~SessionControls.apply_command`) and method calls (``_control``) go through one dispatch,
:mod:`workbench.engine.commands` (arguments bound first, the state table). Where paper and
exchange brokers differ (cancel now or on the exchange, flatten at the next bar or now) the broker
decides (:class:`~workbench.engine.brokers.Broker`).
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import traceback
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from workbench import execution as ex
from workbench.domain import Order, SessionState
from workbench.engine import commands
from workbench.engine.commands import Command, CommandRejected
from workbench.engine.operator_orders import OperatorOrders
from workbench.engine.scaling_control import ScalingControls
from workbench.store.faults import StorageFault
from workbench.store.lease import LeaseLost
from workbench.team.roles import authorize

if TYPE_CHECKING:
    from workbench.config import SessionConfig
    from workbench.engine.brokers import Broker
    from workbench.engine.risk import RiskEngine
    from workbench.engine.trader import Trader
    from workbench.engine.writes import PostingStore
    from workbench.execution.ledger import Portfolio
    from workbench.store import Store
    from workbench.strategies.base import Strategy

S = SessionState
#: what a control given before the session runs answers (:func:`workbench.engine.commands.queues`)
QUEUED_MESSAGE = "queued: applies when the session runs"


def _waiver(waive: str) -> dict[str, str]:
    """The ``waive`` argument of a control that may raise risk, only when given (a cooling-off waiver)."""
    return {"waive": waive} if waive else {}


class SessionControls(ScalingControls, OperatorOrders):
    """Control methods and implementations of a :class:`~workbench.engine.session.Session`."""

    if TYPE_CHECKING:  # provided by Session
        id: str
        config: SessionConfig
        store: Store
        state: SessionState
        trader: Trader
        params: dict[str, Any]
        last_bar: datetime | None
        _task: asyncio.Task[None] | None
        _kill_reason: str | None
        _queued: list[tuple[Command, str, dict[str, Any]]]
        _order_seq: int
        _in_loop: bool
        _dirty_orders: dict[str, Order]

        @property
        def broker(self) -> Broker: ...
        @property
        def portfolio(self) -> Portfolio: ...
        @property
        def risk(self) -> RiskEngine: ...
        @property
        def strategy(self) -> Strategy: ...
        @property
        def _close_all(self) -> set[str]: ...
        actor: str
        poll_interval: float
        def _beat(self) -> None: ...
        _posting: PostingStore
        _renew_due: float
        _checkpoint_due: float
        _fills: list[Any]
        _applied_ids: set[int]
        def _lease_lost(self, e: LeaseLost) -> None: ...
        def _storage_fault(self, e: StorageFault) -> None: ...
        def _risk_events(self) -> None: ...
        def _set_state(self, state: SessionState, message: str = "", actor: str | None = None) -> None: ...
        def _open_symbols(self) -> list[str]: ...
        def _checkpoint(self, periodic: bool = False) -> None: ...
        def _final_bookkeeping(self) -> None: ...
        def _now(self) -> datetime: ...
        def _profiled(self, lag: float) -> None: ...

    # ---- polling: heartbeat, commands, checkpoints -----------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            due = time.monotonic() + self.poll_interval
            await asyncio.sleep(self.poll_interval)
            self._profiled(time.monotonic() - due)  # the event loop's lag
            if not self._in_loop:
                return
            try:
                pending = (await self._pending_off_loop() if self._posting.active
                           else self.store.pending_commands(self.id))
                if self._in_loop:
                    self._poll_with(pending, now=False)
            except LeaseLost as e:
                self._lease_lost(e)
                return
            except StorageFault as e:
                self._storage_fault(e)
                return
            except Exception as e:
                with contextlib.suppress(Exception):
                    self.store.add_event(self.id, "error", f"poll failed: {e}", actor=self.actor)

    async def _pending_off_loop(self) -> list[dict[str, Any]]:
        """This session's pending commands, read on the store's thread after the writes posted before; only
        if the store's list of sessions with pending commands (one query per half poll, shared by every
        session of the process) names it."""
        store = self._posting.store
        max_age = self.poll_interval / 2
        ids = await asyncio.wrap_future(self._posting.read(store.sessions_with_pending_commands, max_age))
        if self.id not in ids:
            return []
        return list(await asyncio.wrap_future(self._posting.read(store.pending_commands, self.id)))

    def poll(self) -> None:
        """Heartbeat, apply pending store commands, checkpoint, all now. Runs between bars. (While the bars
        run, the read waits for the writes posted before it, so it sees the commands already finished.)"""
        read = self._posting.store.pending_commands
        self._poll_with(self._posting.read(read, self.id).result() if self._posting.active else read(self.id),
                        now=True)

    def _poll_with(self, pending: list[dict[str, Any]], now: bool) -> None:
        """Apply ``pending`` store commands; renew the lease and checkpoint when due (or ``now``): the lease a
        tenth of its life after the last renewal, the checkpoint at once if fills or orders wait, else
        ``checkpoint_seconds`` after the last (a poll loop's pending commands are read off the loop)."""
        if now or time.monotonic() >= self._renew_due:
            self._beat()
        for cmd in pending:
            if cmd["id"] not in self._applied_ids:  # finished by this runner, its row not written yet
                self.apply_command(cmd)
        if self._in_loop and not self.state.is_final and (
                now or self._fills or self._dirty_orders or time.monotonic() >= self._checkpoint_due):
            self._checkpoint(periodic=True)

    # ---- dispatch: store commands and method calls alike ---------------------------------------
    def apply_command(self, cmd: dict[str, Any]) -> None:
        """Apply one store command and finish it as applied or rejected (a bug inside the handler is
        rejected as a failure with an error event holding the traceback, never as bad arguments)."""
        name, actor = cmd["command"], cmd.get("actor") or "user"
        self._applied_ids.add(cmd["id"])
        try:
            args = _command_args(cmd)
            command = commands.parse(name)
            if command is Command.PLACE_ORDER:  # the command's id names the order: re-applying it is a no-op
                args.setdefault("client_id", f"cmd{cmd['id']}")
            msg = self._apply_command(command, actor, args)
        except ValueError as e:  # CommandRejected, BadArguments, invalid values
            self.store.finish_command(cmd["id"], "rejected", str(e))
            return
        except Exception as e:
            self.store.add_event(self.id, "error", f"{name} failed: {type(e).__name__}: {e}",
                                 {"command": name, "traceback": traceback.format_exc()}, actor=self.actor)
            self.store.finish_command(cmd["id"], "rejected", f"{name} failed: {type(e).__name__}: {e}")
            return
        self.store.finish_command(cmd["id"], "applied", msg)
        self._after_control(command)

    def _apply_command(self, command: Command, actor: str, args: dict[str, Any]) -> str:
        """Run ``_do_<command>`` with ``args`` bound first (:func:`workbench.engine.commands.dispatch`)."""
        if command not in commands.RUNNER_COMMANDS:
            raise CommandRejected(f"{command.value} is not applied by the runner: it makes a new run "
                                  "(SessionHandle.restart or Session.restart)")
        if "actor" in args:
            raise commands.BadArguments(f"bad arguments for {command.value}: 'actor' is set by the caller, "
                                        "not an argument")
        authorize(self.store, actor, command.value, args, self.id)  # team mode: the actor's role (rejected: audited)
        handler = getattr(self, f"_do_{command.value}")
        if commands.queues(self.state, command, behind=bool(self._queued)):
            commands.check_allowed(self.state, command)
            commands.bind(handler, command, actor=actor, **args)  # bad arguments are refused now
            self._queued.append((command, actor, dict(args)))
            return QUEUED_MESSAGE
        return commands.dispatch(handler, command, actor=actor, **args)

    def _control(self, name: Command | str, actor: str, **args: Any) -> str:
        """A control called as a method: applied now (or queued before the run), as a 'control' event."""
        command = commands.parse(name)
        msg = self._apply_command(command, actor, args)
        if msg == QUEUED_MESSAGE:
            self.store.add_event(self.id, "control", f"{command.value} {msg}",
                                 {"command": command.value, "args": args}, actor=actor)
            return msg
        self.store.add_event(self.id, "control", f"{command.value} applied: {msg}",
                             {"command": command.value, "args": args}, actor=actor)
        self._after_control(command)
        return msg

    def _after_control(self, name: Command | str) -> None:
        """What follows any applied control: flush risk events, end the task on kill, else checkpoint."""
        if self.risk.events:
            self._risk_events()
        if name == Command.KILL:
            self._cancel_task()
        elif self._in_loop and not self.state.is_final:
            self._checkpoint()

    def _apply_queued(self) -> None:
        """Apply the controls given before the run, in their order (the session calls it once running,
        before its first bar); one that no longer applies is a 'control' event saying why."""
        queue, self._queued = self._queued, []
        for command, actor, args in queue:
            try:
                self._control(command, actor, **args)
            except ValueError as e:
                self.store.add_event(self.id, "control", f"{command.value} rejected: {e}",
                                     {"command": command.value, "args": args}, actor=actor)

    def _end_before_run(self, state: SessionState, actor: str, reason: str) -> str:
        """Stop or kill a session that has not run yet: it ends now (no bar seen, the queue dropped)
        and its task, if started, is cancelled."""
        self._queued.clear()
        task = self._task
        begun = task is not None and inspect.getcoroutinestate(cast(Coroutine[Any, Any, None], task.get_coro())) \
            != inspect.CORO_CREATED
        if task is not None and begun and not task.done() and task is not asyncio.current_task():
            task.cancel()  # in the broker's start; a run not begun sees the end and only finishes the broker
        self._final_bookkeeping()
        what = "stopped" if state is S.STOPPED else "killed"
        msg = f"{what} before it ran; open positions: {self._open_symbols() or 'none'}"
        self._set_state(state, f"{msg} (by {actor}{': ' + reason if reason else ''})", actor)
        return msg

    def _cancel_task(self) -> None:
        """End the run (a kill applied from inside the run's own task is seen before its next bar)."""
        if (self._task is not None and not self._task.done() and self._in_loop
                and self._task is not asyncio.current_task()):
            self._task.cancel()

    def _require_live(self, name: Command | str) -> None:
        """Reject ``name`` unless the current state allows it (:data:`workbench.engine.commands.ALLOWED`)."""
        commands.check_allowed(self.state, name)

    # ---- controls (methods) ----------------------------------------------------------------
    def pause(self, actor: str = "user") -> str:
        """No new entries; positions, exits and stops keep running."""
        return self._control("pause", actor)

    def resume_trading(self, actor: str = "user") -> str:
        """Back to running after pause."""
        return self._control("resume", actor)

    def stop(self, actor: str = "user", reason: str = "") -> str:
        """Cancel orders, flatten at the next bar's open, end as stopped."""
        return self._control("stop", actor, reason=reason)

    def kill(self, actor: str = "user", reason: str = "") -> str:
        """End now; positions are left as they are (the event lists them)."""
        return self._control("kill", actor, reason=reason)

    def close_all(self, actor: str = "user") -> str:
        """Sell every position at each symbol's next bar open."""
        return self._control("close_all", actor)

    def cancel_all(self, actor: str = "user") -> str:
        return self._control("cancel_all", actor)

    def trip_breaker(self, reason: str = "manual", state: str | None = None, actor: str = "user") -> str:
        return self._control("trip_breaker", actor, reason=reason, state=state)

    def reset_breaker(self, reason: str = "manual reset", actor: str = "user") -> str:
        return self._control("reset_breaker", actor, reason=reason)

    def risk_override(self, changes: dict[str, Any], reason: str, expires_minutes: float, actor: str = "user",
                      waive: str = "") -> str:
        """Change risk limits until ``expires_minutes`` after the current bar time. During the cooling-off
        after a breaker trip, a change that loosens a limit needs ``waive``: the reason, recorded."""
        return self._control("risk_override", actor, changes=changes, reason=reason, expires_minutes=expires_minutes,
                             **_waiver(waive))

    def scale_sizing(self, factor: float, actor: str = "user", waive: str = "") -> str:
        return self._control("scale_sizing", actor, factor=factor, **_waiver(waive))

    def tighten_stops(self, delta: float, actor: str = "user", waive: str = "") -> str:
        return self._control("tighten_stops", actor, delta=delta, **_waiver(waive))

    def enable_symbol(self, symbol: str, actor: str = "user") -> str:
        return self._control("enable_symbol", actor, symbol=symbol)

    def disable_symbol(self, symbol: str, actor: str = "user") -> str:
        return self._control("disable_symbol", actor, symbol=symbol)

    def set_params(self, params: dict[str, Any], actor: str = "user") -> str:
        """Change strategy parameters (validated; unknown or out-of-range values are rejected)."""
        return self._control("set_params", actor, params=params)

    # ---- control implementations: return a message or raise CommandRejected/ValueError -------
    def _do_pause(self, actor: str) -> str:
        self._set_state(commands.next_state(self.state, Command.PAUSE),
                        f"paused by {actor}: no new entries, exits and stops still run", actor)
        return "paused"

    def _do_resume(self, actor: str) -> str:
        self._set_state(commands.next_state(self.state, Command.RESUME), f"resumed by {actor}", actor)
        return "running"

    def _do_stop(self, actor: str, reason: str = "") -> str:
        stopping = commands.next_state(self.state, Command.STOP)
        if self.state in commands.BEFORE_RUN:  # ends at once: stopped
            return self._end_before_run(stopping, actor, reason)
        canceled = self._cancel_all()
        self._set_state(stopping, f"stopping ({actor}{': ' + reason if reason else ''}): "
                        f"{len(canceled)} orders canceled, flattening at the next bar", actor)
        msg = f"stopping; {len(canceled)} orders canceled; open positions: {self._open_symbols() or 'none'}"
        if self.broker.remote:
            sent = self.broker.exit_now(ex.END)
            msg += f"; canceling open orders on {self.broker.venue}; selling {', '.join(sent) or 'nothing'} now"
        return msg

    def _do_kill(self, actor: str, reason: str = "") -> str:
        killed = commands.next_state(self.state, Command.KILL)  # refused where the table refuses it
        if self.state in commands.BEFORE_RUN:
            return self._end_before_run(killed, actor, reason)
        if self._task is None or self._task.done():
            raise CommandRejected("cannot kill: the session is not running in this process")
        self._kill_reason = f"by {actor}" + (f": {reason}" if reason else "")
        msg = f"killing; positions left open: {self._open_symbols() or 'none'}"
        if self.broker.remote:  # paper: resting orders end with the run
            self._cancel_all()
            msg += "; canceling open exchange orders"
        return msg

    def _do_close_all(self, actor: str) -> str:
        self._require_live("close_all")
        self.trader.close_all = set(self._open_symbols())
        if self.broker.remote:
            sent = self.broker.exit_now(ex.CLOSE_ALL)
            return f"closing {', '.join(sent) or 'nothing (flat)'} now; still open: {self._open_symbols() or 'none'}"
        return f"closing {', '.join(sorted(self._close_all)) or 'nothing (flat)'} at the next bar"

    def _do_cancel_all(self, actor: str) -> str:
        self._require_live("cancel_all")
        canceled = self._cancel_all()
        if self.broker.remote:
            return f"canceling this session's open orders on {self.broker.venue} (retrying until it answers)"
        return f"{len(canceled)} orders canceled"

    def _cancel_all(self) -> list[Order]:
        """``broker.cancel_all()``, recording what it canceled (an exchange broker records them itself)."""
        canceled = self.broker.cancel_all()
        if not self.broker.remote:
            for o in canceled:
                self.store.upsert_order(self.id, o)
        return canceled

    def _do_trip_breaker(self, actor: str, reason: str = "manual", state: str | None = None) -> str:
        self._require_live("trip_breaker")
        self.risk.trip(reason, actor=actor, state=state)
        return f"breaker: {self.risk.state.value}"

    def _do_reset_breaker(self, actor: str, reason: str = "manual reset") -> str:
        self._require_live("reset_breaker")
        self.risk.reset(actor, reason)
        return "breaker reset: running"

    def _do_risk_override(self, actor: str, changes: dict[str, Any], reason: str, expires_minutes: float,
                          waive: str = "") -> str:
        self._require_live("risk_override")
        if not float(expires_minutes) > 0:
            raise CommandRejected(f"expires_minutes must be positive (got {expires_minutes!r})")
        now = self._now()
        until = now + timedelta(minutes=float(expires_minutes))
        self.risk.override(dict(changes), reason, until, actor=actor, now=now, waive=waive)
        return f"override {changes} until {until.isoformat()}"

    def _do_scale_sizing(self, actor: str, factor: float, waive: str = "") -> str:
        self._require_live("scale_sizing")
        self.risk.scale_sizing(float(factor), actor=actor, waive=waive)
        return f"sizing x{float(factor):g}"

    def _do_tighten_stops(self, actor: str, delta: float, waive: str = "") -> str:
        self._require_live("tighten_stops")
        self.risk.tighten_stops(float(delta), actor=actor, waive=waive)
        return f"stops tightened by {float(delta):g}"

    def _do_enable_symbol(self, actor: str, symbol: str) -> str:
        self._require_live("enable_symbol")
        self.risk.enable_symbol(symbol, actor=actor)
        return f"{symbol} enabled"

    def _do_disable_symbol(self, actor: str, symbol: str) -> str:
        self._require_live("disable_symbol")
        self.risk.disable_symbol(symbol, actor=actor)
        return f"{symbol} disabled"

    def _do_set_params(self, actor: str, params: dict[str, Any]) -> str:
        from workbench.strategies import create, registry

        self._require_live("set_params")
        merged = registry.validate_params(self.config.strategy, {**self.params, **dict(params)})
        self.trader.set_strategy(create(self.config.strategy, merged))
        self.params = dict(self.strategy.p)
        return f"params {self.params}"

def _command_args(cmd: dict[str, Any]) -> dict[str, Any]:
    """A store command's arguments as a dict, or BadArguments saying what the row holds instead."""
    if cmd.get("args_error"):
        raise commands.BadArguments(f"bad arguments for {cmd['command']!r}: {cmd['args_error']}")
    args = cmd.get("args")
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise commands.BadArguments(f"bad arguments for {cmd['command']!r}: args must be an object of argument "
                                    f"names to values, got {type(args).__name__} {args!r}")
    return dict(args)

