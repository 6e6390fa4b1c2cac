"""Roles: the one rule of who may do what in team mode.

A store with at least one team member (``workbench users add``) is in team mode; without one every
actor may do everything, as on a single-user laptop. In team mode (:func:`permission_problem`):

* viewer: reads only; no command.
* operator: every session command (pause ... restart), requesting paper sessions.
* admin: also arming live trading (``arm_live``), installing account risk limits (``risk_set``),
  managing the team (``users``), and any command that waives a cooling-off (a ``waive`` argument).

An actor who is not a team member may do nothing. The engine's own actors (:data:`ENGINE_ACTORS`,
e.g. reconciliation tripping a breaker) are not people and are never refused; no user may take
those names. :func:`authorize` records a refusal as a ``rejected`` audit entry and raises
:class:`NotPermitted`, which the runner turns into the command's rejection.
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from workbench.engine.commands import Command, CommandRejected
from workbench.store import Store


class Role(IntEnum):
    """A team member's role; a higher one may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; use one of: {', '.join(r.name.lower() for r in cls)}") from None

    def __str__(self) -> str:
        return self.name.lower()


#: the actions beyond session commands that need a role
ARM_LIVE, RISK_SET, USERS = "arm_live", "risk_set", "users"
#: action -> the least role that may do it (session commands by their name)
REQUIRED: Mapping[str, Role] = {**{c.value: Role.OPERATOR for c in Command},
                                "request_session": Role.OPERATOR,
                                ARM_LIVE: Role.ADMIN, RISK_SET: Role.ADMIN, USERS: Role.ADMIN}
#: how a refusal names an action that is not a session command
SAID = {"request_session": "request a session", ARM_LIVE: "arm live trading", RISK_SET: "set account risk limits",
        USERS: "manage the team"}
#: the engine's own actors: never refused, never a user's name
ENGINE_ACTORS = frozenset({"risk", "reconcile", "broker", "feed", "system", "runner", "store"})


class NotPermitted(CommandRejected):
    """The actor's role does not allow the action; the message names both and how to change it."""


def required_role(action: str, args: Mapping[str, Any] | None = None) -> Role:
    """The least role that may do ``action`` with ``args`` (a cooling-off waiver needs an admin)."""
    if action not in REQUIRED:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(REQUIRED))}")
    if args and args.get("waive"):
        return Role.ADMIN
    return REQUIRED[action]


def permission_problem(store: Store, actor: str, action: str, args: Mapping[str, Any] | None = None) -> str | None:
    """Why ``actor`` may not do ``action`` (with ``args``) on ``store``, or None if they may."""
    need = required_role(action, args)
    if actor in ENGINE_ACTORS or not store.team_mode():
        return None
    role = store.role_of(actor)
    what = SAID.get(action, action) + (" with a cooling-off waiver" if REQUIRED[action] < need else "")
    if role is None:
        return (f"{actor} is not a team member and may not {what}; an admin adds them with "
                f"`workbench users add {actor} --role {need}`")
    have = Role.named(role)
    if have < need:
        return f"{have} {actor} may not {what} (needs {need}; an admin: `workbench users add {actor} --role {need}`)"
    return None


def authorize(store: Store, actor: str, action: str, args: Mapping[str, Any] | None = None,
              session_id: str | None = None) -> None:
    """Return if ``actor`` may do ``action``; else record a ``rejected`` audit entry (by ``actor``, on
    ``session_id``) and raise :class:`NotPermitted` saying why."""
    problem = permission_problem(store, actor, action, args)
    if problem is None:
        return
    store.add_access_event(session_id, f"{action} rejected: {problem}", actor, status="rejected", action=action)
    raise NotPermitted(problem)


def authorize_live(store: Store, session_id: str) -> None:
    """A requested live session runs only if an admin armed it (in team mode): the actor of its latest
    ``arming`` event (:func:`workbench.engine.host.record_arming`) must be an admin; else a ``rejected``
    audit entry and :class:`NotPermitted`. A session with no arming event was armed by the code opening it."""
    ev = store.events(session_id, kinds=["arming"])
    if len(ev):
        authorize(store, str(ev["actor"].iloc[-1]), ARM_LIVE, session_id=session_id)
