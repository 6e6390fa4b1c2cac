"""Team members and the audit trail (mixed into :class:`workbench.store.Store`).

* ``users``: name -> role (:data:`ROLES`). A store with at least one row is in team mode
  (:meth:`TeamStore.team_mode`); what each role may do is :mod:`workbench.team.roles`' rule.
* :meth:`TeamStore.audit`: who did what to which session, when, with what result — every command
  (requested by its actor, applied or rejected by the runner) and every ``access`` event (team
  changes, refused or granted admin actions, live arming), newest last.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select, update

from workbench.domain import to_utc
from workbench.store import schema as s
from workbench.store.base import NotFoundError, StoreBase, utc_now
from workbench.store.frames import to_frame
from workbench.store.jsonutil import loads

#: the roles, least to most: a viewer reads, an operator controls sessions, an admin also arms live
#: trading, edits account risk limits and waives cooling-off
ROLES = ("viewer", "operator", "admin")
#: the event kind of the audit trail's own entries (commands are audited from their table)
ACCESS = "access"
AUDIT_COLUMNS = ["time", "actor", "session_id", "session", "action", "status", "result", "source", "id"]


def role_name(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else ValueError naming them."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role


class TeamStore(StoreBase):
    """The ``users`` table and the audit read."""

    def team_mode(self) -> bool:
        """Whether any team member is recorded (then roles are enforced)."""
        return bool(self._read(lambda c: c.execute(select(func.count()).select_from(s.users)).scalar()))

    def role_of(self, name: str) -> str | None:
        """``name``'s role, or None if not a team member."""
        stmt = select(s.users.c.role).where(s.users.c.name == name)
        return self._read(lambda c: c.execute(stmt).scalar())

    def users(self) -> pd.DataFrame:
        """Team members: name, role, created_at, created_by (by name)."""
        u = s.users.c
        return self._read(lambda c: to_frame(c, select(u.name, u.role, u.created_at, u.created_by).order_by(u.name)))

    def set_user(self, name: str, role: str, actor: str) -> str | None:
        """Add ``name`` with ``role`` or change their role (an ``access`` event by ``actor``); returns the
        previous role (None for a new member)."""
        role_name(role)
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise ValueError(f"a user name is 1 to 64 characters, e.g. 'alice' (got {name!r})")

        def run(conn: Connection) -> str | None:
            u = s.users.c
            before = conn.execute(select(u.role).where(u.name == name)).scalar()
            if before is None:
                conn.execute(insert(s.users).values(name=name, role=role, created_at=utc_now(), created_by=actor))
            else:
                conn.execute(update(s.users).where(u.name == name).values(role=role))
            what = f"{name} added as {role}" if before is None else f"{name}: {before} -> {role}"
            self._event(conn, None, ACCESS, f"{what} by {actor}", {"user": name, "role": role, "before": before},
                        actor)
            return before

        return self._write(run)

    def remove_user(self, name: str, actor: str) -> None:
        """Remove ``name`` from the team (an ``access`` event by ``actor``); NotFoundError if absent."""
        def run(conn: Connection) -> None:
            if not conn.execute(delete(s.users).where(s.users.c.name == name)).rowcount:
                raise NotFoundError(f"no team member {name!r}; `workbench users list` shows them")
            self._event(conn, None, ACCESS, f"{name} removed by {actor}", {"user": name, "role": None}, actor)

        self._write(run)

    def audit(self, session_id: str | None = None, actor: str | None = None, since: Any = None,
              limit: int | None = None) -> pd.DataFrame:
        """Who did what to which session, when, with what result (:data:`AUDIT_COLUMNS`), oldest first:
        each command (action = its name and arguments, status pending/applied/rejected, result the
        runner's answer) and each ``access`` event (status "recorded" or "rejected"). ``limit`` keeps
        the newest rows."""
        m, e, ss = s.commands.c, s.events.c, s.sessions.c
        cmd = (select(m.id, m.created_at, m.actor, m.session_id, ss.name, m.command, m.args_json, m.status, m.result)
               .join(s.sessions, ss.id == m.session_id, isouter=True))
        ev = (select(e.id, e.time, e.actor, e.session_id, ss.name, e.message, e.data_json)
              .join(s.sessions, ss.id == e.session_id, isouter=True).where(e.kind == ACCESS))
        if session_id is not None:
            cmd, ev = cmd.where(m.session_id == session_id), ev.where(e.session_id == session_id)
        if actor is not None:
            cmd, ev = cmd.where(m.actor == actor), ev.where(e.actor == actor)
        if since is not None:
            t = to_utc(since, "since").to_pydatetime()
            cmd, ev = cmd.where(m.created_at >= t), ev.where(e.time >= t)
        if limit is not None:
            cmd = cmd.order_by(m.created_at.desc(), m.id.desc()).limit(int(limit))
            ev = ev.order_by(e.time.desc(), e.id.desc()).limit(int(limit))
        cmds, evs = self._read(lambda c: (to_frame(c, cmd), to_frame(c, ev)))
        rows = [{"time": r.created_at, "actor": r.actor, "session_id": r.session_id, "session": r.name,
                 "action": _action(r.command, r.args_json), "status": r.status, "result": r.result,
                 "source": "command", "id": int(r.id)} for r in cmds.itertuples()]
        rows += [{"time": r.time, "actor": r.actor, "session_id": r.session_id, "session": r.name,
                  "action": r.message, "status": (loads(r.data_json) or {}).get("status", "recorded"),
                  "result": "", "source": "event", "id": int(r.id)} for r in evs.itertuples()]
        out = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
        if len(out):
            out["time"] = pd.to_datetime(out["time"], utc=True)
        out = out.sort_values(["time", "source", "id"], kind="stable").reset_index(drop=True)
        return out.iloc[-int(limit):].reset_index(drop=True) if limit is not None else out

    def add_access_event(self, session_id: str | None, message: str, actor: str, status: str = "recorded",
                         **data: Any) -> int:
        """Record an audit entry (an ``access`` event by ``actor``; ``status`` "recorded" or "rejected")."""
        def run(conn: Connection) -> int:
            if session_id is not None:
                self._require(conn, session_id)
            return self._event(conn, session_id, ACCESS, message, {"status": status, **data}, actor)

        return self._write(run)


def _action(command: str, args_json: str | None) -> str:
    """``kill`` or ``scale_sizing(factor=0.5)``: a command as the audit shows it."""
    try:
        args = loads(args_json) if args_json else None
    except ValueError:
        return f"{command}({args_json})"
    if not args:
        return command
    return f"{command}({', '.join(f'{k}={v!r}' for k, v in args.items())})" if isinstance(args, dict) \
        else f"{command}({args!r})"

