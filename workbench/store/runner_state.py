"""A runner's crash-recovery state, and its checkpoint: fills, orders, positions, equity and state in
one transaction."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from workbench.domain import Fill, Order, Position
from workbench.secrets import redact
from workbench.store import schema as s
from workbench.store.base import db_values, utc_now
from workbench.store.frames import equity_frame
from workbench.store.jsonutil import dumps, loads
from workbench.store.trading import TradingStore


class RunnerStateStore(TradingStore):
    """Runner state and checkpoints (mixed into :class:`workbench.store.Store`)."""

    # ---- runner state --------------------------------------------------------
    def save_runner_state(self, session_id: str, state: dict[str, Any]) -> None:
        """Replace the runner's recovery state (JSON; datetimes come back as datetimes)."""
        if not isinstance(state, dict):
            raise TypeError(f"runner state: expected a dict, got {type(state).__name__}")
        values = {"state_json": redact(dumps(state)), "updated_at": utc_now()}  # may hold errors' text
        r = s.session_state.c

        def run(conn: Connection) -> None:
            self._require(conn, session_id)
            self._fence(conn, session_id)
            if not conn.execute(update(s.session_state).where(r.session_id == session_id).values(**values)).rowcount:
                conn.execute(insert(s.session_state).values(session_id=session_id, **values))

        self._write(run)

    def load_runner_state(self, session_id: str) -> dict[str, Any] | None:
        """The last saved runner state, or None if there is none."""
        r = s.session_state.c
        return loads(self._read(lambda c: c.execute(select(r.state_json).where(r.session_id == session_id)).scalar()))

    def save_checkpoint(self, session_id: str, state: dict[str, Any] | None = None, *, fills: Iterable[Fill] = (),
                        orders: Iterable[Order] = (), positions: Iterable[Position] = (),
                        equity: Any = None) -> int:
        """A runner's batched writes in ONE transaction: new ``fills`` (those whose ``fill_id`` is stored
        already are skipped), ``orders`` and ``positions`` upserted, ``equity`` points appended (as
        :meth:`add_equity_points` takes them) and, if given, the runner ``state`` replaced. Fills are
        thus durable together with the checkpoint that covers them. Returns how many fills were new."""
        fills, orders, positions = list(fills), list(orders), list(positions)
        for o in orders:
            if not isinstance(o, Order):
                raise TypeError(f"order: expected an Order, got {type(o).__name__}")
        if state is not None and not isinstance(state, dict):
            raise TypeError(f"runner state: expected a dict, got {type(state).__name__}")
        for fill in fills:
            if not isinstance(fill, Fill):
                raise TypeError(f"fill: expected a Fill, got {type(fill).__name__}")
            if not fill.fill_id:
                raise ValueError("fill.fill_id is empty; give every fill a unique id so replays stay idempotent")
        frame = equity_frame(equity) if equity is not None and len(equity) else None
        state_values = None if state is None else {"state_json": redact(dumps(state)), "updated_at": utc_now()}
        f, r = s.fills.c, s.session_state.c

        def run(conn: Connection) -> int:
            self._require(conn, session_id)
            self._fence(conn, session_id)
            seen: set[str] = set()
            ids = [x.fill_id for x in fills]
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                seen.update(conn.execute(select(f.fill_id).where(f.session_id == session_id,
                                                                 f.fill_id.in_(chunk))).scalars())
            rows = []
            for x in fills:
                if x.fill_id in seen:
                    continue
                seen.add(x.fill_id)
                rows.append(db_values({"session_id": session_id, "client_id": x.client_id, "fill_id": x.fill_id,
                                     "symbol": x.symbol, "side": x.side, "quantity": x.quantity, "price": x.price,
                                     "commission": x.commission, "slippage": x.slippage, "time": x.time}))
            if rows:
                conn.execute(insert(s.fills), rows)
            if orders:
                self._upsert_orders(conn, session_id, orders)
            for p in positions:
                self._upsert_position(conn, session_id, p)
            if frame is not None:
                self._insert_equity(conn, session_id, frame)
            if state_values is not None:
                updated = conn.execute(update(s.session_state).where(r.session_id == session_id)
                                       .values(**state_values)).rowcount
                if not updated:
                    conn.execute(insert(s.session_state).values(session_id=session_id, **state_values))
            return len(rows)

        return self._write(run)
