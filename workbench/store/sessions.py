"""The sessions a store holds (create, read, update, state, heartbeat, list, delete), their history
table, their events, and config templates."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select, update

from workbench.config import ConfigError, SessionConfig
from workbench.domain import SessionKind, SessionState
from workbench.secrets import redact
from workbench.store import schema as s
from workbench.store.base import NotFoundError, StoreError, config_fields, db_value, state_name, utc_now
from workbench.store.frames import to_frame, utc
from workbench.store.jsonutil import dumps, loads
from workbench.store.lease import LeaseStore

_SESSION_FIELDS = frozenset(c.name for c in s.sessions.c) - {"id", "state"}


def config_changes(before: Any, after: Any, prefix: str = "") -> dict[str, list[Any]]:
    """What differs between two configs as plain dicts (``SessionConfig.to_dict()``):
    ``{"dotted.field": [before, after]}`` for every leaf that differs (lists compare whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: dict[str, list[Any]] = {}
        for key in [*before, *(k for k in after if k not in before)]:
            out.update(config_changes(before.get(key), after.get(key), f"{prefix}{key}."))
        return out
    return {} if before == after else {prefix.rstrip("."): [before, after]}


def lineage_values(conn: Connection, parent_id: str | None, config_json: str) -> dict[str, Any]:
    """The lineage columns of a new session with config ``config_json``: run 1 without a parent, else
    ``parent_id``, the parent's ``run_no + 1`` and ``changes_json`` (:func:`config_changes` of the parent's
    config and this one); :class:`NotFoundError` for an unknown parent."""
    if parent_id is None:
        return {"run_no": 1}
    parent = conn.execute(select(s.sessions.c.run_no, s.sessions.c.config_json)
                          .where(s.sessions.c.id == parent_id)).first()
    if parent is None:
        raise NotFoundError(f"no parent session {parent_id!r}")
    changes = config_changes(loads(parent.config_json), loads(config_json))
    return {"parent_id": parent_id, "run_no": parent.run_no + 1, "changes_json": dumps(changes)}


class SessionsStore(LeaseStore):
    """Sessions, history, events and templates (mixed into :class:`workbench.store.Store`)."""

    # ---- sessions --------------------------------------------------------
    def create_session(self, config: SessionConfig, *, state: SessionState | str = "created",
                       name: str | None = None, parent_id: str | None = None) -> str:
        """Record a new session for ``config`` and return its id; with ``parent_id`` it is run
        ``parent.run_no + 1`` of the same lineage (a restart, clone or promotion), its config's
        differences from the parent's recorded as ``changes`` (:func:`lineage_values`)."""
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config: expected a SessionConfig, got {type(config).__name__}")
        sid = uuid.uuid4().hex[:12]
        row = {"id": sid, "name": config.name if name is None else name, "state": state_name(state),
               "created_at": utc_now(), **config_fields(config)}

        def run(conn: Connection) -> str:
            row.update(lineage_values(conn, parent_id, row["config_json"]))
            conn.execute(insert(s.sessions).values(**row))
            self._event(conn, sid, "state", f"session created ({row['state']})",
                        {"to": row["state"], "run_no": row["run_no"], "parent_id": parent_id}, "system")
            return sid

        return self._write(run)

    def get_session(self, session_id: str) -> dict[str, Any]:
        """Every column of the session, with ``symbols`` (list), ``metrics`` (dict) and ``config``
        (the SessionConfig; None plus ``config_error`` if it no longer validates) parsed."""
        row = self._read(lambda c: c.execute(select(s.sessions).where(s.sessions.c.id == session_id)).first())
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        out = dict(row._mapping)
        out["symbols"] = loads(out["symbols"])
        out["metrics"] = loads(out.pop("metrics_json")) or {}
        out["changes"] = loads(out.pop("changes_json"))
        try:
            out["config"] = SessionConfig.from_json(out["config_json"])
        except ConfigError as e:
            out["config"], out["config_error"] = None, str(e)
        return out

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Set columns of a session. ``config`` (SessionConfig) also updates kind, strategy,
        symbols and balance; ``metrics`` (dict) and ``symbols`` (list) are stored as JSON.
        Use :meth:`set_state` for the state."""
        values: dict[str, Any] = {}
        for key, val in fields.items():
            if key == "config":
                if not isinstance(val, SessionConfig):
                    raise TypeError(f"config: expected a SessionConfig, got {type(val).__name__}")
                values.update(config_fields(val))
            elif key == "metrics":
                values["metrics_json"] = dumps(val)
            elif key == "symbols":
                values["symbols"] = dumps(list(val))
            elif key == "state":
                raise ValueError("change the state with set_state(), which also records the event")
            elif key in _SESSION_FIELDS:  # e.g. ``error``, an exception's text: redacted
                values[key] = redact(val) if isinstance(val, str) else db_value(val)
            else:
                allowed = sorted(_SESSION_FIELDS | {"config", "metrics"})
                raise ValueError(f"unknown session field {key!r}; use one of {allowed}")
        if not values:
            return

        def run(conn: Connection) -> None:
            self._fence(conn, session_id)
            if conn.execute(update(s.sessions).where(s.sessions.c.id == session_id).values(**values)).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    def set_lineage(self, session_id: str, parent_id: str) -> dict[str, list[Any]]:
        """Record that ``session_id`` was made from ``parent_id`` (a clone made in the wizard): its
        ``parent_id``, ``run_no`` and ``changes``, which it returns; also a 'lineage' event."""
        def run(conn: Connection) -> dict[str, list[Any]]:
            text = conn.execute(select(s.sessions.c.config_json).where(s.sessions.c.id == session_id)).scalar()
            if text is None:
                raise NotFoundError(f"no session {session_id!r}")
            values = lineage_values(conn, parent_id, text)
            conn.execute(update(s.sessions).where(s.sessions.c.id == session_id).values(**values))
            changes: dict[str, list[Any]] = loads(values["changes_json"])
            self._event(conn, session_id, "lineage", f"made from session {parent_id}",
                        {"parent_id": parent_id, "changes": changes}, "system")
            return changes

        return self._write(run)

    def set_state(self, session_id: str, state: SessionState | str, *, actor: str = "system", message: str = "",
                  expect: SessionState | str | Iterable[SessionState | str] | None = None) -> bool:
        """Move a session to ``state`` and record a 'state' event (who, from, to, why).

        Sets ``started_at`` on the first move to starting/running and ``ended_at`` on a final
        state. With ``expect``, only moves from those states (an atomic compare-and-set, e.g. for
        a host claiming a 'requested' session) and returns False, changing nothing, otherwise.
        """
        new = state_name(state)
        allowed = None
        if expect is not None:
            if isinstance(expect, (str, SessionState)):
                allowed = {state_name(expect)}
            else:
                allowed = {state_name(e) for e in expect}

        def run(conn: Connection) -> bool:
            self._fence(conn, session_id)
            row = conn.execute(select(s.sessions.c.state, s.sessions.c.started_at)
                               .where(s.sessions.c.id == session_id)).first()
            if row is None:
                raise NotFoundError(f"no session {session_id!r}")
            if allowed is not None and row.state not in allowed:
                return False
            now = utc_now()
            values: dict[str, Any] = {"state": new}
            if new in ("starting", "running") and row.started_at is None:
                values["started_at"] = now
            if SessionState(new).is_final:
                values["ended_at"] = now
            done = conn.execute(update(s.sessions).values(**values)
                                .where(s.sessions.c.id == session_id, s.sessions.c.state == row.state)).rowcount
            if not done:  # changed under us (only possible without SQLite's write lock)
                return False
            self._event(conn, session_id, "state", message or f"{row.state} → {new}",
                        {"from": row.state, "to": new}, actor)
            return True

        return self._write(run)

    def cancel_requested(self, session_id: str, *, actor: str = "user", reason: str = "") -> None:
        """End a "requested" session no host has claimed yet (it becomes stopped, with a 'cancelled'
        event); :class:`StoreError` naming its state if it is not requested any more."""
        why = f": {reason}" if reason else ""
        if not self.set_state(session_id, SessionState.STOPPED, actor=actor, expect=SessionState.REQUESTED,
                              message=f"cancelled by {actor} before a host picked it up{why}"):
            state = self.get_session(session_id)["state"]
            raise StoreError(f"cannot cancel session {session_id}: it is {state}; only a requested session "
                             "(not yet picked up by a host) can be cancelled; stop or kill a running one")
        self.add_event(session_id, "cancelled", f"cancelled by {actor}{why}", {"reason": reason}, actor)

    def heartbeat(self, session_id: str, runner: str) -> None:
        """Record that ``runner`` (host:pid) is alive and running the session now."""
        def run(conn: Connection) -> None:
            stmt = update(s.sessions).where(s.sessions.c.id == session_id).values(heartbeat_at=utc_now(), runner=runner)
            if conn.execute(stmt).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    def list_sessions(self, kind: SessionKind | str | None = None, strategy: str | None = None,
                      states: Iterable[SessionState | str] | None = None, since: Any = None,
                      until: Any = None) -> pd.DataFrame:
        """Sessions, newest first, filtered by kind, strategy, states and creation time
        (``since`` inclusive, ``until`` exclusive). Config and metrics JSON are left out."""
        cols = [c for c in s.sessions.c if c.name not in ("config_json", "metrics_json", "changes_json")]
        stmt = self._filtered(select(*cols), kind, strategy, states, since, until)
        frame = self._read(lambda c: to_frame(c, stmt))
        frame["symbols"] = [loads(x) for x in frame["symbols"]]
        return frame

    @staticmethod
    def _filtered(stmt: Any, kind: Any, strategy: str | None, states: Any, since: Any, until: Any) -> Any:
        c = s.sessions.c
        if kind is not None:
            try:
                stmt = stmt.where(c.kind == SessionKind(db_value(kind)).value)
            except ValueError:
                raise ValueError(f"unknown kind {kind!r}; use one of {[k.value for k in SessionKind]}") from None
        if strategy is not None:
            stmt = stmt.where(c.strategy == strategy)
        if states is not None:
            stmt = stmt.where(c.state.in_([state_name(x) for x in ([states] if isinstance(states, str) else states)]))
        if since is not None:
            stmt = stmt.where(c.created_at >= utc(since, "since"))
        if until is not None:
            stmt = stmt.where(c.created_at < utc(until, "until"))
        return stmt.order_by(c.created_at.desc(), c.id)

    def delete_session(self, session_id: str) -> None:
        """Delete a session with all its rows; its restarts/clones keep existing, unparented."""
        def run(conn: Connection) -> None:
            if conn.execute(delete(s.sessions).where(s.sessions.c.id == session_id)).rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")

        self._write(run)

    # ---- events ----------------------------------------------------------
    def add_event(self, session_id: str | None, kind: str, message: str, data: Any = None,
                  actor: str = "system") -> int:
        """Record an event (``session_id`` None for store-wide ones); returns its id."""
        if not kind or not isinstance(kind, str):
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")

        def run(conn: Connection) -> int:
            if session_id is not None:
                self._require(conn, session_id)
            return self._event(conn, session_id, kind, message, data, actor)

        return self._write(run)

    def events(self, session_id: str | None = None, limit: int | None = None,
               kinds: Iterable[str] | None = None) -> pd.DataFrame:
        """Events in time order (all sessions if ``session_id`` is None), only of ``kinds`` if given;
        ``limit`` keeps the newest."""
        e = s.events.c
        stmt = select(e.id, e.session_id, e.time, e.kind, e.message, e.data_json, e.actor)
        if session_id is not None:
            stmt = stmt.where(e.session_id == session_id)
        if kinds is not None:
            stmt = stmt.where(e.kind.in_(list(kinds)))
        stmt = stmt.order_by(e.time.desc(), e.id.desc())
        if limit is not None:
            stmt = stmt.limit(int(limit))
        frame = self._read(lambda c: to_frame(c, stmt))
        frame["data"] = [loads(x) for x in frame.pop("data_json")]
        return frame.iloc[::-1].reset_index(drop=True)

    # ---- history -----------------------------------------------------------
    def history(self, kind: SessionKind | str | None = None, strategy: str | None = None, since: Any = None,
                until: Any = None, regime: str | None = None) -> pd.DataFrame:
        """The guide's session history, newest first: date, strategy, kind, pnl, return (a fraction),
        trades, plus id, name, state and lineage (``parent_id``, ``changes``: see :func:`lineage_values`).
        Sessions still running show P&L from their latest equity point."""
        c, e, t = s.sessions.c, s.equity.c, s.trades.c
        last_equity = (select(e.equity).where(e.session_id == c.id).order_by(e.time.desc(), e.id.desc())
                       .limit(1).scalar_subquery())
        n_trades = select(func.count()).select_from(s.trades).where(t.session_id == c.id).scalar_subquery()
        pnl = func.coalesce(c.pnl, last_equity - c.initial_balance)
        stmt = select(c.created_at.label("date"), c.strategy, c.kind, pnl.label("pnl"),
                      func.coalesce(c.total_return, pnl / c.initial_balance).label("return"),
                      func.coalesce(c.trade_count, n_trades).label("trades"), c.id, c.name, c.state,
                      c.parent_id, c.changes_json)
        stmt = self._filtered(stmt, kind, strategy, None, since, until).add_columns(c.regime)
        if regime is not None:  # the market regime of the session's bars (workbench.metrics.regime)
            from workbench.metrics.regime import REGIMES

            if regime not in REGIMES:
                raise ValueError(f"unknown regime {regime!r}; use one of {list(REGIMES)}")
            stmt = stmt.where(c.regime == regime)
        frame = self._read(lambda conn: to_frame(conn, stmt))
        frame["changes"] = [loads(x) for x in frame.pop("changes_json")]
        return frame

    # ---- templates ---------------------------------------------------------
    def save_template(self, name: str, config: SessionConfig, description: str = "", builtin: bool = False) -> None:
        """Save (or overwrite) a named config template."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"template name must be a non-empty string, got {name!r}")
        if not isinstance(config, SessionConfig):
            raise TypeError(f"config: expected a SessionConfig, got {type(config).__name__}")
        values = {"description": description, "config_json": config.to_json(), "builtin": bool(builtin)}

        def run(conn: Connection) -> None:
            if not conn.execute(update(s.templates).where(s.templates.c.name == name).values(**values)).rowcount:
                conn.execute(insert(s.templates).values(name=name, created_at=utc_now(), **values))

        self._write(run)

    def get_template(self, name: str) -> SessionConfig:
        """The config saved under ``name`` (validated again)."""
        text = self._read(lambda c: c.execute(select(s.templates.c.config_json)
                                              .where(s.templates.c.name == name)).scalar())
        if text is None:
            raise NotFoundError(f"no template {name!r}")
        return SessionConfig.from_json(text)

    def list_templates(self) -> pd.DataFrame:
        """Templates by name: name, description, builtin, created_at, kind, strategy, symbols."""
        stmt = select(s.templates).order_by(s.templates.c.name)
        frame = self._read(lambda c: to_frame(c, stmt))
        configs = [loads(x) for x in frame.pop("config_json")]
        for key in ("kind", "strategy", "symbols"):
            frame[key] = [cfg.get(key) for cfg in configs]
        return frame

    def delete_template(self, name: str) -> None:
        """Delete a template."""
        def run(conn: Connection) -> None:
            if conn.execute(delete(s.templates).where(s.templates.c.name == name)).rowcount == 0:
                raise NotFoundError(f"no template {name!r}")

        self._write(run)
