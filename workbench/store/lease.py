"""Runner leases: one runner per session, and fencing of a runner that lost its lease.

A runner holds a session's lease while it runs it: ``lease_token`` (a generation, bumped by every
acquisition: the fencing token) and ``lease_expires``, pushed forward by :meth:`LeaseStore.renew_lease`
with every heartbeat. Another runner can take the session only once the lease has expired or was
released (:meth:`~LeaseStore.claim_session`), and taking it bumps the token.

Fencing: a Store that acquired a session's lease remembers the token, and each write that matters
for that session through that Store (state, session fields, orders, fills, trades, checkpoints)
checks in its own transaction that the token is still the session's; if another runner took the
session meanwhile it raises :class:`LeaseLost` and writes nothing. So a runner that stalled past its
lease (a long store lock, a suspended laptop) cannot write over its successor, nor record an order
it would then send. Writes through a Store that holds no lease of the session (the operator's, a
host marking orphans) are not fenced.

The lease outlasts the worst store stall (:data:`LEASE_SECONDS` > the busy timeout within the write
retries of :mod:`workbench.store.db`): a healthy runner blocked on a lock is never taken over.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from workbench.domain import SessionState
from workbench.store import schema as s
from workbench.store.base import StoreBase, state_name, utc_now
from workbench.store.db import BUSY_TIMEOUT_MS, RETRY_SECONDS
from workbench.store.errors import NotFoundError, StoreError

#: a lease's life unless renewed: longer than the worst stall of one store call (retries + busy timeout)
LEASE_SECONDS = RETRY_SECONDS + BUSY_TIMEOUT_MS / 1000 + 30.0


class LeaseHeld(StoreError):
    """The session's lease is held by another runner and has not expired."""

    def __init__(self, session_id: str, runner: str | None, expires: datetime | None):
        self.session_id, self.runner, self.expires = session_id, runner, expires
        super().__init__(f"session {session_id} is run by {runner or 'another runner'} (lease until {expires}); "
                         "it can be taken over only after its lease expires")


class LeaseLost(StoreError):
    """This runner's lease of the session was taken by another runner: it must stop, writing nothing."""

    def __init__(self, session_id: str, token: int, current: int | None):
        self.session_id, self.token, self.current = session_id, token, current
        super().__init__(f"session {session_id}: this runner's lease (token {token}) was taken over "
                         f"(token now {current}); it stops without writing")


class LeaseStore(StoreBase):
    """Leases and the fence (mixed into the topic stores, so their writes can call :meth:`_fence`)."""

    @property
    def _held(self) -> dict[str, int]:
        """session id -> the lease token this Store acquired for it."""
        held = self.__dict__.get("_held_leases")
        if held is None:
            held = self.__dict__["_held_leases"] = {}
        return held

    def _fence(self, conn: Connection, session_id: str) -> None:
        """Raise :class:`LeaseLost` (in the caller's transaction) if this Store holds a lease of the
        session that is no longer the session's."""
        token = self._held.get(session_id)
        if token is None:
            return
        current = conn.execute(select(s.sessions.c.lease_token).where(s.sessions.c.id == session_id)
                               .with_for_update()).scalar()
        if current != token:
            raise LeaseLost(session_id, token, current)

    def holds_lease(self, session_id: str) -> int | None:
        """The token of the session's lease this Store acquired, or None."""
        return self._held.get(session_id)

    def claim_session(self, session_id: str, runner: str, *, ttl: float = LEASE_SECONDS,
                      expect: Iterable[SessionState | str] | None = None, state: SessionState | str | None = None,
                      actor: str = "system", message: str = "", now: datetime | None = None) -> int | None:
        """Acquire the session's lease for ``runner`` for ``ttl`` seconds, in one transaction; returns the
        new token, or None if the session is not in ``expect`` (when given). With ``state``, also moves it
        there (a 'state' event). :class:`LeaseHeld` if another lease is live: takeover waits for expiry."""
        allowed = None if expect is None else {state_name(e) for e in expect}
        new_state = None if state is None else state_name(state)

        def run(conn: Connection) -> int | None:
            c = s.sessions.c
            row = conn.execute(select(c.state, c.lease_token, c.lease_expires, c.runner, c.started_at)
                               .where(c.id == session_id).with_for_update()).first()
            if row is None:
                raise NotFoundError(f"no session {session_id!r}")
            if allowed is not None and row.state not in allowed:
                return None
            t = now or utc_now()
            if row.lease_expires is not None and row.lease_expires > t:
                raise LeaseHeld(session_id, row.runner, row.lease_expires)
            token = int(row.lease_token or 0) + 1
            values: dict[str, Any] = {"lease_token": token, "lease_expires": t + timedelta(seconds=ttl),
                                      "runner": runner, "heartbeat_at": t}
            if new_state is not None and new_state != row.state:
                values["state"] = new_state
                if new_state in ("starting", "running") and row.started_at is None:
                    values["started_at"] = t
            conn.execute(update(s.sessions).where(c.id == session_id).values(**values))
            if "state" in values:
                self._event(conn, session_id, "state", message or f"{row.state} → {new_state}",
                            {"from": row.state, "to": new_state, "runner": runner, "lease": token}, actor)
            return token

        token = self._write(run)
        if token is not None:
            self._held[session_id] = token
        return token

    def renew_lease(self, session_id: str, *, ttl: float = LEASE_SECONDS, now: datetime | None = None) -> datetime:
        """Push the lease this Store holds ``ttl`` seconds past now (also the heartbeat); returns the new
        expiry. :class:`LeaseLost` if another runner took the session; ValueError if none is held."""
        token = self._held.get(session_id)
        if token is None:
            raise ValueError(f"this store holds no lease of session {session_id}; claim_session() first")

        def run(conn: Connection) -> datetime:
            t = now or utc_now()
            expires = t + timedelta(seconds=ttl)
            c = s.sessions.c
            if conn.execute(update(s.sessions).where(c.id == session_id, c.lease_token == token)
                            .values(lease_expires=expires, heartbeat_at=t)).rowcount == 0:
                current = conn.execute(select(c.lease_token).where(c.id == session_id)).scalar()
                raise LeaseLost(session_id, token, current)
            return expires

        return self._write(run)

    def release_lease(self, session_id: str) -> bool:
        """Give the lease this Store holds back at once (the runner ends; the next can claim without waiting
        for expiry); ``runner`` still names who ran it last. False if it was lost meanwhile (nothing changes)."""
        token = self._held.pop(session_id, None)
        if token is None:
            return False

        def run(conn: Connection) -> bool:
            c = s.sessions.c
            return bool(conn.execute(update(s.sessions).where(c.id == session_id, c.lease_token == token)
                                     .values(lease_expires=None)).rowcount)

        return self._write(run)

    def lease(self, session_id: str) -> dict[str, Any]:
        """The session's lease as stored: ``token``, ``runner``, ``expires`` (None: free), ``heartbeat_at``."""
        c = s.sessions.c
        row = self._read(lambda conn: conn.execute(select(c.lease_token, c.runner, c.lease_expires, c.heartbeat_at)
                                                   .where(c.id == session_id)).first())
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        return {"token": int(row.lease_token or 0), "runner": row.runner, "expires": row.lease_expires,
                "heartbeat_at": row.heartbeat_at}
