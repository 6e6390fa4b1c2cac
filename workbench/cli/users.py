"""``workbench users add|remove|list``: the team (team mode is on once it has a member).

The shell's actor is ``$WORKBENCH_ACTOR`` (else "cli"): once the team has members only an admin may
change it; the first member must be an admin (they manage the others). Every change is an audit entry.
"""
from __future__ import annotations

import argparse
from typing import Any

from workbench.cli.output import dumps
from workbench.store import Store
from workbench.team import current_actor
from workbench.team.roles import ENGINE_ACTORS, RISK_SET, USERS, Role, authorize

SHELL = "cli"  # the shell's actor when $WORKBENCH_ACTOR is not set


def shell_actor() -> str:
    """Who runs this command: ``$WORKBENCH_ACTOR``, else "cli"."""
    return current_actor(SHELL)


def authorize_shell(store: Store, action: str, session_id: str | None = None) -> str:
    """The shell's actor if their role allows ``action`` (:func:`workbench.team.roles.authorize`: a refusal is
    audited and raised as a ValueError, which the command prints as one line)."""
    actor = shell_actor()
    authorize(store, actor, action, session_id=session_id)
    return actor


def cmd_users(args: argparse.Namespace) -> int:
    with Store(args.db) as store:
        if args.action == "list":
            users = store.users()
            if args.json:
                print(dumps({"team_mode": len(users) > 0, "users": users}))
            elif len(users):
                print(users.to_string(index=False))
            else:
                print("no team members: single-user mode (add the first admin with `workbench users add NAME "
                      "--role admin`)")
            return 0
        if not args.name:
            raise ValueError(f"workbench users {args.action} needs NAME, e.g. `workbench users {args.action} alice"
                             + (" --role operator`" if args.action == "add" else "`"))
        if args.action == "add":
            role = Role.named(args.role)
            if args.name in ENGINE_ACTORS:
                raise ValueError(f"{args.name!r} is reserved for the engine ({', '.join(sorted(ENGINE_ACTORS))}); "
                                 "pick another name")
            if not store.team_mode() and role is not Role.ADMIN:
                raise ValueError(f"the first team member must be an admin (they manage the others): "
                                 f"`workbench users add {args.name} --role admin`")
            before = store.set_user(args.name, str(role), authorize_shell(store, USERS))
            print(f"{args.name}: {before} -> {role}" if before else f"added {args.name} as {role}")
            return 0
        actor = authorize_shell(store, USERS)
        others = store.users().query("name != @args.name")
        if len(others) and not (others["role"] == "admin").any():
            raise ValueError(f"{args.name} is the last admin; make another member an admin first")
        store.remove_user(args.name, actor)
        print(f"removed {args.name}" + ("" if len(others) else "; no members left: single-user mode"))
        return 0


def add_users_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("users", parents=[common], help="team members and their roles (viewer, operator, admin)")
    p.add_argument("action", choices=["add", "remove", "list"],
                   help="add NAME --role ROLE (or change their role); remove NAME; list")
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="the user's JupyterHub name")
    p.add_argument("--role", default="operator", choices=[str(r) for r in Role],
                   help="viewer: reads; operator: controls sessions; admin: also arms live trading, sets account "
                        "risk limits, waives cooling-off, manages the team (default: operator)")
    p.add_argument("--json", action="store_true", help="list: one JSON document")
    p.set_defaults(func=cmd_users)


def audit_risk_set(db: str | None, file: str) -> None:
    """``workbench risk set FILE``'s gate: in team mode only an admin may install account risk limits; the
    install is an audit entry."""
    with Store(db) as store:
        actor = authorize_shell(store, RISK_SET)
        if store.team_mode():
            store.add_access_event(None, f"risk policy {file} installed by {actor}", actor, action=RISK_SET)
