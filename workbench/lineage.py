"""Cloning and promotion: a new session made from an existing one, with its lineage in the store.

* :func:`clone`: the source's config plus ``changes`` (dotted fields such as ``risk.stop_loss``,
  ``params`` merged into the strategy's, ``kind``), started at once: a backtest runs and is saved, a
  paper or live session is requested from ``workbench host`` (:func:`workbench.engine.host.request_session`).
* :func:`promote`: a finished backtest becomes a paper session, a finished paper session a live one, with
  the same config; a live one only if the live pre-flight (:mod:`workbench.engine.preflight`) has no
  failing check, else :class:`PreflightRefused` naming the checks.

Either way the new session records ``parent_id`` and ``changes`` (what differs from the parent's config;
:func:`workbench.store.sessions.lineage_values`, the one rule). A bad change raises the config's own
:class:`~workbench.config.ConfigError` naming the field. This module sits beside ``research``: it runs
backtests and requests sessions, which ``engine`` and ``backtest`` may not do for each other.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.config import ConfigError, SessionConfig, make_config
from workbench.domain import SessionKind, SessionState
from workbench.store import Store

#: what a finished session of a kind is promoted to
NEXT_KIND: Mapping[SessionKind, SessionKind] = {SessionKind.BACKTEST: SessionKind.PAPER,
                                                SessionKind.PAPER: SessionKind.LIVE}
#: the states a session may be promoted from (a paper session on live bars ends stopped, not completed)
PROMOTABLE = frozenset({SessionState.COMPLETED, SessionState.STOPPED})
#: runs the live pre-flight for a config: config -> list of workbench.engine.preflight.Check
Preflight = Callable[[SessionConfig], list[Any]]


class PreflightRefused(ValueError):
    """A live session was not created: its pre-flight has failing checks (``checks``, all of them)."""

    def __init__(self, what: str, checks: list[Any]):
        self.checks = checks
        bad = [c for c in checks if c.status == "fail"]
        lines = "; ".join(f"{c.name}: {c.detail}" + (f" ({c.todo})" if c.todo else "") for c in bad)
        super().__init__(f"{what} refused: the live pre-flight failed {', '.join(c.name for c in bad)}: {lines}")


@dataclass(frozen=True)
class Made:
    """A clone or promotion: the new session, its parent, kind, state, what changed and where it runs
    (``"backtest"``: run and saved here; ``"host"``: requested from ``workbench host``)."""

    session_id: str
    parent_id: str
    kind: str
    state: str
    where: str
    changes: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "parent_id": self.parent_id, "kind": self.kind,
                "state": self.state, "where": self.where, "changes": self.changes}


def apply_changes(config: SessionConfig, changes: Mapping[str, Any]) -> SessionConfig:
    """``config`` with ``changes``: ``{"risk.stop_loss": 0.02}`` (``risk__stop_loss`` too, for keyword
    arguments), a dict for a group changes only the settings it names (``risk={"stop_loss": 0.02}``),
    ``params`` merge into the strategy's (a new ``strategy`` starts from its defaults instead). Raises
    :class:`ConfigError` naming the field a change breaks."""
    data = config.to_dict()
    if "strategy" in changes and changes["strategy"] != data["strategy"]:
        data["params"] = {}
    for key, value in changes.items():
        path = key.replace("__", ".").split(".")
        if not all(path):
            raise ConfigError([(key, value, "not a field name; use dotted names such as risk.stop_loss")])
        node: dict[str, Any] = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[:i + 1])
                raise ConfigError([(key, value, f"{where} is a single setting, not a group; set {where} itself")])
            node = child
        _merge(node, path[-1], copy.deepcopy(value))
    return make_config(**data)


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    """Set ``node[key]``; a dict merges into a dict already there (so it changes only what it names)."""
    old = node.get(key)
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge(old, k, v)
    else:
        node[key] = value


def _open(store: Store | str | None) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _source(store: Store, session_id: str) -> tuple[dict[str, Any], SessionConfig]:
    row = store.get_session(session_id)  # NotFoundError for a bad id
    if row["config"] is None:
        raise ValueError(f"session {session_id}'s config no longer validates, so it cannot be copied: "
                         f"{row.get('config_error')}")
    return row, row["config"]


def default_preflight(store: Store) -> Preflight:
    """The live pre-flight against ``store`` (its rehearsal check reads that store's history)."""
    from workbench.engine.preflight import preflight

    return lambda config: preflight(config, store)


def _start(store: Store, config: SessionConfig, parent_id: str, what: str, *,
           arming: Mapping[str, Any] | None, actor: str, preflight: Preflight | None) -> Made:
    """Run (backtest) or request (paper, live) ``config`` as a new session of ``parent_id``'s lineage."""
    if config.kind is SessionKind.BACKTEST:
        from workbench.backtest import run_backtest

        sid = store.save_backtest(config, run_backtest(config, progress=False), parent_id=parent_id)
        where = "backtest"
    else:
        from workbench.engine.host import request_session
        from workbench.engine.live import LiveNotArmed, arming_problem

        if config.kind is SessionKind.LIVE:
            problem = arming_problem(config, arming)
            if problem:
                raise LiveNotArmed(f"{what} not armed: {problem}")
            checks = (preflight or default_preflight(store))(config)
            if any(c.status == "fail" for c in checks):
                raise PreflightRefused(what, checks)
        sid = request_session(store, config, arming=arming, actor=actor, parent_id=parent_id)
        where = "host"
    row = store.get_session(sid)
    return Made(sid, parent_id, config.kind.value, str(row["state"]), where, row["changes"] or {})


def clone(session_id: str, *, store: Store | str | None = None, arming: Mapping[str, Any] | None = None,
          actor: str = "user", preflight: Preflight | None = None, **changes: Any) -> Made:
    """A new session with ``session_id``'s config plus ``changes`` (:func:`apply_changes`; e.g.
    ``clone(sid, kind="paper", params={"fast": 5}, risk__stop_loss=0.02)``), started at once. A live clone
    needs ``arming`` and a passing pre-flight (``preflight``: the checks to run, default
    :func:`default_preflight`)."""
    store = _open(store)
    _, config = _source(store, session_id)
    new = apply_changes(config, changes)
    return _start(store, new, session_id, f"clone of {session_id}", arming=arming, actor=actor, preflight=preflight)


def promote_problem(row: Mapping[str, Any]) -> str | None:
    """Why the session ``row`` (:meth:`Store.get_session`) cannot be promoted, or None if it can."""
    kind, state = SessionKind(row["kind"]), SessionState(row["state"])
    if kind not in NEXT_KIND:
        return f"session {row['id']} is {kind.value}, the last step: clone it to run it again"
    if state not in PROMOTABLE:
        return (f"session {row['id']} is {state.value}; only a completed or stopped {kind.value} session "
                "is promoted (its results are what earns the next step)")
    return None


def promote(session_id: str, *, store: Store | str | None = None, arming: Mapping[str, Any] | None = None,
            actor: str = "user", preflight: Preflight | None = None) -> Made:
    """The next kind (backtest -> paper -> live) of a finished session, with the same config. Paper to
    live needs ``arming`` and a pre-flight without failures, else :class:`PreflightRefused`."""
    store = _open(store)
    row, config = _source(store, session_id)
    problem = promote_problem(row)
    if problem:
        raise ValueError(f"cannot promote: {problem}")
    new = config.replace(kind=NEXT_KIND[SessionKind(row["kind"])].value)
    return _start(store, new, session_id, f"promotion of {session_id} to {new.kind.value}", arming=arming,
                  actor=actor, preflight=preflight)


__all__ = ["NEXT_KIND", "PROMOTABLE", "Made", "PreflightRefused", "apply_changes", "clone", "default_preflight",
           "promote", "promote_problem"]
