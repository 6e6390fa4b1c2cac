"""Control commands queued for a session's runner: pending -> applied | rejected, each also an event."""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from workbench.secrets import redact
from workbench.store import schema as s
from workbench.store.base import NotFoundError, StoreBase, StoreError, new_id, utc_now
from workbench.store.jsonutil import dumps, loads

COMMAND_STATUSES = ("applied", "rejected")


class CommandsStore(StoreBase):
    """The command queue (mixed into :class:`workbench.store.Store`)."""

    # ---- commands ----------------------------------------------------------
    def send_command(self, session_id: str, command: str, args: dict[str, Any] | None = None,
                     actor: str = "user") -> int:
        """Queue a command for the session's runner (also recorded as a 'command' event); returns its id."""
        if not command or not isinstance(command, str):
            raise ValueError(f"command must be a non-empty string, got {command!r}")
        if args is not None and not (isinstance(args, Mapping) and all(isinstance(k, str) for k in args)):
            raise ValueError(f"args of {command!r} must be a dict of argument names to values, e.g. "
                             f"{{'factor': 0.5}}, or None; got {type(args).__name__} {args!r}")

        def run(conn: Connection) -> int:
            self._require(conn, session_id)
            cmd_id = new_id(conn.execute(insert(s.commands).values(
                session_id=session_id, created_at=utc_now(), command=command,
                args_json=None if args is None else dumps(args), actor=actor, status="pending", result="",
            )))
            self._event(conn, session_id, "command", f"{command} requested", {"id": cmd_id, "args": args}, actor)
            return cmd_id

        return self._write(run)

    def sessions_with_pending_commands(self, max_age: float = 0.0) -> frozenset[str]:
        """Ids of the sessions that have pending commands. A result at most ``max_age`` seconds old is
        reused, so the many sessions one process runs share one query per interval."""
        now = time.monotonic()
        with self._pending_lock:
            cached = self.__dict__.get("_pending_ids")
            if cached is not None and now - cached[0] <= max_age:
                return cached[1]
            m = s.commands.c
            stmt = select(m.session_id).where(m.status == "pending").distinct()
            ids = frozenset(self._read(lambda c: c.execute(stmt).scalars().all()))
            self.__dict__["_pending_ids"] = (now, ids)
            return ids

    @property
    def _pending_lock(self) -> threading.Lock:
        lock = self.__dict__.get("_pending_ids_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_pending_ids_lock", threading.Lock())
        return lock

    def pending_commands(self, session_id: str) -> list[dict[str, Any]]:
        """Commands not yet applied or rejected, oldest first, with ``args`` parsed."""
        m = s.commands.c
        stmt = select(s.commands).where(m.session_id == session_id, m.status == "pending").order_by(m.id)
        return self._read(lambda c: [self._command_dict(r) for r in c.execute(stmt)])

    def get_command(self, cmd_id: int) -> dict[str, Any]:
        """One command with its status and result (e.g. to see that a runner applied it)."""
        row = self._read(lambda c: c.execute(select(s.commands).where(s.commands.c.id == cmd_id)).first())
        if row is None:
            raise NotFoundError(f"no command {cmd_id!r}")
        return self._command_dict(row)

    @staticmethod
    def _command_dict(row: Any) -> dict[str, Any]:
        """A command row with ``args`` parsed; a row whose text is not JSON gets ``args`` None and the
        reason in ``args_error`` (the runner rejects it on its own; it never stops the rows after it)."""
        out = dict(row._mapping)
        raw = out.pop("args_json")
        try:
            out["args"] = {} if raw is None else loads(raw)
        except ValueError as e:
            out["args"], out["args_error"] = None, f"args are not JSON ({e}): {raw!r}"
        return out

    def finish_command(self, cmd_id: int, status: str, result: str = "") -> None:
        """Mark a pending command 'applied' or 'rejected' with a result text (also a 'command' event)."""
        if status not in COMMAND_STATUSES:
            raise ValueError(f"command status must be one of {COMMAND_STATUSES}, got {status!r}")
        m = s.commands.c

        def run(conn: Connection) -> None:
            row = conn.execute(select(m.session_id, m.command, m.status).where(m.id == cmd_id)).first()
            if row is None:
                raise NotFoundError(f"no command {cmd_id!r}")
            if row.status != "pending":
                raise StoreError(f"command {cmd_id} ({row.command}) is already {row.status}")
            conn.execute(update(s.commands).where(m.id == cmd_id)
                         .values(status=status, applied_at=utc_now(), result=redact(result)))
            self._event(conn, row.session_id, "command", f"{row.command} {status}" + (f": {result}" if result else ""),
                        {"id": cmd_id, "status": status}, "system")

        self._write(run)
