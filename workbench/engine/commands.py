"""Session commands as data: the command names, which commands each state allows, the state each
command leads to, and a dispatch that checks arguments before it calls the handler.

The engine (:class:`~workbench.engine.session.Session`), the host, the CLI and the views all read
these tables; nothing else decides what a state allows.

* :data:`ALLOWED` — state -> the commands accepted in it (the engine rejects the others with
  :func:`check_allowed`'s message, naming the state and what it allows). Risk adjustments are
  accepted while stopping; ``restart`` (a new run of the same config, :mod:`workbench.engine.handle`)
  is for ended and orphaned sessions. Before the run (:data:`BEFORE_RUN`: created, starting) every
  runner command is accepted: adjustments apply at once (from the first bar), :data:`QUEUED` ones
  (pause, resume, place_order; :func:`queues`) wait and apply in order once it runs, before its first
  bar, and stop and kill end it at once.
* :data:`TRANSITIONS` — (state, command) -> the state the session is in once the command took
  effect (``kill``: once the run has ended). Commands missing here leave the state as it is.
* :func:`dispatch` binds the arguments with :func:`inspect.signature` first: missing or unknown
  arguments are a :class:`BadArguments` rejection naming the command, the argument and the expected
  signature; a ``TypeError`` raised inside the handler is a bug and propagates as itself.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar

from workbench.domain import SessionState

S = SessionState
T = TypeVar("T")


class CommandRejected(ValueError):
    """A control that cannot be applied now; the message says why."""


class BadArguments(CommandRejected):
    """A command given missing, unknown or surplus arguments; the message names them and the signature."""


class Command(str, Enum):
    """Every control of a session (the store's command names are these values)."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    KILL = "kill"
    CLOSE_ALL = "close_all"
    CANCEL_ALL = "cancel_all"
    TRIP_BREAKER = "trip_breaker"
    RESET_BREAKER = "reset_breaker"
    RISK_OVERRIDE = "risk_override"
    SCALE_SIZING = "scale_sizing"
    TIGHTEN_STOPS = "tighten_stops"
    ENABLE_SYMBOL = "enable_symbol"
    DISABLE_SYMBOL = "disable_symbol"
    SET_PARAMS = "set_params"
    PLACE_ORDER = "place_order"
    CANCEL_ORDER = "cancel_order"
    SET_SCALING = "set_scaling"
    PAUSE_LEG = "pause_leg"  # multi-strategy sessions (workbench.engine.legs): no new entries of one leg
    RESUME_LEG = "resume_leg"
    SET_LEG_PARAMS = "set_leg_params"
    RESTART = "restart"


C = Command
#: commands applied by the session's runner (restart is the handle's: it makes a new run)
RUNNER_COMMANDS: tuple[Command, ...] = tuple(c for c in Command if c is not C.RESTART)
#: the risk limits a ``risk_override`` may change (fields of :class:`workbench.config.RiskConfig`)
OVERRIDABLE: tuple[str, ...] = (
    "max_position", "portfolio_limit", "concentration_limit", "stop_loss", "take_profit", "trailing_stop",
    "max_holding_minutes", "max_orders_per_minute",
)
#: risk and strategy adjustments: accepted whenever the runner can apply them (not after the end)
ADJUST = frozenset({C.CLOSE_ALL, C.CANCEL_ALL, C.TRIP_BREAKER, C.RESET_BREAKER, C.RISK_OVERRIDE, C.SCALE_SIZING,
                    C.TIGHTEN_STOPS, C.ENABLE_SYMBOL, C.DISABLE_SYMBOL, C.SET_PARAMS, C.CANCEL_ORDER,
                    C.SET_SCALING, C.PAUSE_LEG, C.RESUME_LEG, C.SET_LEG_PARAMS})
#: before the run every runner command is accepted: see :data:`BEFORE_RUN` and :data:`QUEUED`
_BEFORE_START = frozenset(RUNNER_COMMANDS)
_ENDED = frozenset({C.RESTART})

#: state -> the commands accepted in it
ALLOWED: Mapping[SessionState, frozenset[Command]] = {
    S.REQUESTED: frozenset(),  # no runner yet: `workbench host` claims it first
    S.CREATED: _BEFORE_START,
    S.STARTING: _BEFORE_START,
    S.RUNNING: frozenset({C.PAUSE, C.STOP, C.KILL, C.PLACE_ORDER, *ADJUST}),
    S.PAUSED: frozenset({C.RESUME, C.STOP, C.KILL, C.PLACE_ORDER, *ADJUST}),  # buys are refused while paused
    S.STOPPING: frozenset({C.KILL, *ADJUST}),
    S.ORPHANED: _ENDED,  # no runner: resume it (`workbench host` does by default) or restart it
    S.STOPPED: _ENDED,
    S.COMPLETED: _ENDED,
    S.KILLED: _ENDED,
    S.FAILED: _ENDED,
}

#: states with no running session yet: stop and kill end it at once (nothing traded); the commands in
#: :data:`QUEUED` wait and apply in the order given once it runs, before its first bar
BEFORE_RUN = frozenset({S.CREATED, S.STARTING})
#: the commands that need a running session (its trading state, its first prices)
QUEUED = frozenset({C.PAUSE, C.RESUME, C.PLACE_ORDER})

#: (state, command) -> the state the command leads to
TRANSITIONS: Mapping[tuple[SessionState, Command], SessionState] = {
    **{(s, C.STOP): S.STOPPED for s in BEFORE_RUN},
    (S.RUNNING, C.PAUSE): S.PAUSED,
    (S.PAUSED, C.RESUME): S.RUNNING,
    (S.RUNNING, C.STOP): S.STOPPING,
    (S.PAUSED, C.STOP): S.STOPPING,
    **{(s, C.KILL): S.KILLED for s, allowed_ in ALLOWED.items() if C.KILL in allowed_},
}


def parse(name: Command | str) -> Command:
    """The :class:`Command` named ``name``; an unknown name is rejected naming the known ones."""
    if isinstance(name, Command):
        return name
    try:
        return Command(str(name))
    except ValueError:
        raise CommandRejected(f"unknown command {name!r}; known: {', '.join(c.value for c in Command)}") from None


def _state(state: SessionState | str) -> SessionState:
    try:
        return SessionState(state)
    except ValueError:
        raise ValueError(f"unknown session state {state!r}; known: {', '.join(s.value for s in S)}") from None


def allowed(state: SessionState | str) -> frozenset[Command]:
    """The commands accepted in ``state``."""
    return ALLOWED[_state(state)]


def check_allowed(state: SessionState | str, command: Command | str) -> Command:
    """``command`` as a :class:`Command` if ``state`` allows it, else :class:`CommandRejected` naming
    the state and the commands it allows."""
    cmd, st = parse(command), _state(state)
    ok = ALLOWED[st]
    if cmd not in ok:
        what = ", ".join(sorted(c.value for c in ok)) or "nothing"
        raise CommandRejected(f"cannot {cmd.value}: the session is {st.value}; {st.value} allows: {what}")
    return cmd


def next_state(state: SessionState | str, command: Command | str) -> SessionState:
    """The state ``command`` (allowed in ``state``) leads to; unchanged if it does not change it."""
    st = _state(state)
    return TRANSITIONS.get((st, check_allowed(st, command)), st)


def queues(state: SessionState | str, command: Command | str, behind: bool = False) -> bool:
    """Whether ``command`` given in ``state`` waits until the session runs: a :data:`QUEUED` one before
    the run, or (``behind``: controls are queued already) any but stop and kill, to keep their order."""
    cmd = parse(command)
    return _state(state) in BEFORE_RUN and (cmd in QUEUED or (behind and cmd not in (C.STOP, C.KILL)))


def signature_text(handler: Callable[..., Any], command: Command | str, hidden: Iterable[str] = ("actor",)) -> str:
    """``scale_sizing(factor: float)``: the arguments a caller gives (``hidden`` ones are the engine's)."""
    skip = set(hidden)
    parts = []
    for p in inspect.signature(handler).parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation
        shown = ann if isinstance(ann, str) else inspect.formatannotation(ann)
        text = p.name if ann is p.empty else f"{p.name}: {shown}"
        parts.append(text if p.default is p.empty else f"{text} = {p.default!r}")
    return f"{parse(command).value}({', '.join(parts)})"


def bind(handler: Callable[..., Any], command: Command | str, /, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
    """Bind the arguments to ``handler``'s signature, or :class:`BadArguments` naming the command, what
    was wrong and the expected signature."""
    try:
        bound = inspect.signature(handler).bind(*args, **kwargs)
    except TypeError as e:
        raise BadArguments(f"bad arguments for {parse(command).value}: {e}; "
                           f"expected {signature_text(handler, command)}") from None
    bound.apply_defaults()
    return bound


def dispatch(handler: Callable[..., T], command: Command | str, /, *args: Any, **kwargs: Any) -> T:
    """Call ``handler`` with arguments bound first (:func:`bind`): a bad call is :class:`BadArguments`,
    anything the handler raises (a ``TypeError`` too) propagates unchanged."""
    bound = bind(handler, command, *args, **kwargs)
    return handler(*bound.args, **bound.kwargs)
