"""A session's store side: its lease, state, checkpoints, final bookkeeping and how a run ends
(completed, stopped, killed, failed, handed back, fenced, or stopped by a storage fault).

:class:`SessionBookkeeping` is mixed into :class:`~workbench.engine.session.Session`. While the bar loop
runs, ``self.store`` posts its writes to a writer thread (:mod:`workbench.engine.writes`), so a store
lock never stalls the loop; a posted write that fails comes back to :meth:`_write_failed`. A storage
fault (disk full, I/O error, a lock past its timeout) ends this runner the way a host's hand-back does:
nothing killed, positions and resting orders kept, ORPHANED (once the store takes writes again) for
the next runner to resume. A lost lease (:class:`~workbench.store.lease.LeaseLost`) ends it writing
nothing more.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.diagnostics.profiler import Profile
from workbench.domain import SessionState
from workbench.engine.writes import PostingStore
from workbench.execution.ledger import Portfolio
from workbench.secrets import redact
from workbench.store.faults import StorageFault
from workbench.store.lease import LeaseLost

if TYPE_CHECKING:
    from workbench.config import SessionConfig
    from workbench.domain import Fill, Order
    from workbench.engine.brokers import Broker
    from workbench.engine.risk import RiskEngine
    from workbench.engine.trader import Trader
    from workbench.store import Store
    from workbench.strategies.base import Strategy

S = SessionState
STATE_VERSION = 2
log = logging.getLogger("workbench")


def runner_id() -> str:
    """``host:pid`` of this process, as written with heartbeats."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SessionBookkeeping:
    """Store-side methods of a :class:`~workbench.engine.session.Session`."""

    if TYPE_CHECKING:  # provided by Session
        id: str
        config: SessionConfig
        store: Store
        state: SessionState
        trader: Trader
        params: dict[str, Any]
        actor: str
        poll_interval: float
        lease_seconds: float
        last_bar: Any
        bars_seen: int
        error: str | None
        _task: asyncio.Task[None] | None
        _kill_reason: str | None
        _hand_back_reason: str | None
        _lease_deadline: float
        _renew_due: float
        _checkpoint_due: float
        checkpoint_seconds: float
        _lost: LeaseLost | None
        _fault: StorageFault | None
        _write_error: BaseException | None
        _renewing: Future[Any] | None
        _posting: PostingStore
        _order_seq: int
        _resumed_state: dict[str, Any] | None
        _equity: list[tuple[int, float, float, float]]
        _fills: list[Fill]
        _dirty_orders: dict[str, Order]
        _dirty_positions: set[str]
        profile: Profile

        @property
        def broker(self) -> Broker: ...
        @property
        def portfolio(self) -> Portfolio: ...
        @property
        def risk(self) -> RiskEngine: ...
        @property
        def strategy(self) -> Strategy: ...
        def _risk_events(self) -> None: ...
        def _open_symbols(self) -> list[str]: ...
        hand_back: Callable[[str], None]

    def _set_state(self, state: SessionState, message: str = "", actor: str | None = None) -> None:
        self.store.set_state(self.id, state, actor=actor or self.actor, message=message or state.value)
        self.state = state

    def _take_lease(self) -> None:
        """Hold the session's lease (a host may have claimed it for this runner already): :class:`LeaseHeld`
        while another runner's is live."""
        if self.store.holds_lease(self.id) is None:
            self.store.claim_session(self.id, runner_id(), ttl=self.lease_seconds, actor=self.actor)
        self._beat()

    def _beat(self) -> None:
        """Renew the lease (the heartbeat): on the writer thread while the bars run (unless a renewal is
        still on its way), else now."""
        if not self._posting.active:
            self._renew()
        elif self._renewing is None or self._renewing.done():
            self._renewing = self._posting.post(self._renew)

    def _renew(self) -> None:
        """Renew the lease now. The runner acts only until ``lease_seconds`` after the last renewal began;
        :class:`LeaseLost` if another runner took the session."""
        began = time.monotonic()
        self._renew_due = began + self.lease_seconds / 10  # the poll renews it when due
        self._posting.store.renew_lease(self.id, ttl=self.lease_seconds)
        self._lease_deadline = began + self.lease_seconds

    def _lease_lost(self, e: LeaseLost) -> None:
        """Another runner took the session (this one stalled past its lease): end this run writing
        nothing more to the session (the store is the new runner's); the broker hands its orders back."""
        if self._lost is not None:
            return
        self._lost = e
        self._hand_back_reason = self._hand_back_reason or str(e)
        self.error = str(e)
        self.state = S.ORPHANED  # as this runner sees it
        with contextlib.suppress(Exception):
            self.store.add_event(self.id, "lease_lost", f"{runner_id()}: {e}",
                                 {"token": e.token, "current": e.current}, actor=self.actor)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _storage_fault(self, e: StorageFault) -> None:
        """The store can't be written (disk full, I/O error, a lock past its timeout): this runner stops as a
        host's hand-back does (nothing killed, positions and resting orders kept); the session is left
        ORPHANED, once the store takes writes again, for the next runner to resume. One CRITICAL line."""
        if self._fault is not None:
            return
        self._fault = e
        log.critical("workbench: session %s stops here, resumable: %s", self.id, e)
        self._hand_back_reason = self._hand_back_reason or f"storage fault ({e.kind}): {e.detail}"
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _write_failed(self, e: BaseException) -> None:
        """A write posted off the loop failed (called on the loop): a lost lease or a storage fault ends the
        run as such; anything else fails it."""
        if isinstance(e, LeaseLost):
            self._lease_lost(e)
        elif isinstance(e, StorageFault):
            self._storage_fault(e)
        elif self._write_error is None:
            self._write_error = e
            if self._task is not None and not self._task.done():
                self._task.cancel()

    async def _await_writable(self) -> None:
        """After a storage fault: wait (up to the lease) until the store takes writes again, then record
        the session ORPHANED (if the fault kept it from being) and an event saying so."""
        fault = self._fault
        assert fault is not None
        store = self._posting.store
        give_up = time.monotonic() + self.lease_seconds
        while not await asyncio.to_thread(store.writable):
            if time.monotonic() > give_up:
                log.critical("workbench: session %s: %s still cannot be written; its lease will expire and "
                             "the next host will find it orphaned", self.id, fault.database)
                return
            await asyncio.sleep(min(2.0, 4 * self.poll_interval))
        with contextlib.suppress(Exception):
            store.set_state(self.id, S.ORPHANED, actor=self.actor, message=f"orphaned: {self._hand_back_reason}",
                            expect=[S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING])
            store.update_session(self.id, runner=None)
            store.add_event(self.id, "storage", f"storage writable again after {fault.kind}: the session is "
                            "orphaned and resumable from its last checkpoint", {"kind": fault.kind}, actor=self.actor)
            log.critical("workbench: session %s: storage writable again; orphaned, resumable", self.id)

    def _flush_equity(self) -> None:
        """Write queued fills, orders, positions and equity points (no runner state)."""
        self._flush(with_state=False)

    def _flush(self, with_state: bool, periodic: bool = False) -> None:
        """One store transaction: queued fills (with their orders and positions), equity points and,
        ``with_state``, the runner state that covers them. While the bars run it is posted (a copy of the
        orders and positions as they are now); a ``periodic`` one is skipped while the last is still on
        its way (the queues wait for the next). A failed write ends the run, so the store keeps its last
        checkpoint and the queues' contents are replayed by the resumed run."""
        if periodic and self._posting.checkpoint_in_flight():
            return
        if with_state:
            self._checkpoint_due = time.monotonic() + self.checkpoint_seconds
        pf = self.portfolio
        equity = None
        if self._equity:
            t, e, c, x = zip(*self._equity)
            index = pd.DatetimeIndex(np.array(t, dtype="M8[ns]"), name="time").tz_localize("UTC")
            equity = pd.DataFrame({"equity": e, "cash": c, "exposure": x}, index=index)
        self.store.save_checkpoint(
            self.id, self.runner_state() if with_state else None, fills=self._fills,
            orders=[copy.copy(o) for o in self._dirty_orders.values()],
            positions=[copy.copy(pf.positions[s]) for s in sorted(self._dirty_positions)], equity=equity,
        )
        self._fills, self._equity = [], []
        self._dirty_orders.clear()
        self._dirty_positions.clear()

    def runner_state(self) -> dict[str, Any]:
        """Everything a resumed runner needs (JSON-able)."""
        return {
            "version": STATE_VERSION, "last_bar": self.last_bar, "bars_seen": self.bars_seen,
            **self.trader.snapshot(), "params": self.params,
            "paused": self.state is S.PAUSED, "stopping": self.state is S.STOPPING, "order_seq": self._order_seq,
            "profile": self.profile.snapshot(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        from workbench.strategies import create

        self._resumed_state = state
        self.last_bar, self.bars_seen = state["last_bar"], int(state["bars_seen"])
        self.trader.restore(state, create(self.config.strategy, state["params"]))
        if "trades" not in state["portfolio"]:
            self.portfolio.trades = self._stored_trades(state["portfolio"], self.portfolio.fill_count)
        self.params = dict(self.strategy.p)
        self._order_seq = int(state.get("order_seq", 0))
        self.profile = Profile.restore(state.get("profile"))

    def _stored_trades(self, saved: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """The closed trades, rebuilt from the first ``count`` fills in the store (stored in booking order;
        a paper runner writes them with the checkpoint that covers them, so there are no others) and the
        checkpoint's carrying costs (``saved``: its portfolio). Their cash must equal the checkpoint's (to
        rounding when funding or interest were booked in between), else the store and the runner state
        disagree."""
        cash = saved["cash"]
        fills = self.store.fills(self.id).iloc[:count]
        pf = Portfolio.replay_stored(self.portfolio.initial_cash, fills, self.store.orders(self.id))
        carry = pf.add_carry(saved)
        if pf.cash != cash and not (carry and math.isclose(pf.cash + carry, cash, rel_tol=1e-9, abs_tol=1e-9)):
            raise RuntimeError(f"session {self.id}: the stored fills give cash {pf.cash!r}, the checkpoint "
                               f"{cash!r}; the store does not match the runner state")
        return pf.trades

    def _checkpoint(self, periodic: bool = False) -> None:
        self._flush(with_state=True, periodic=periodic)

    def _final_bookkeeping(self) -> None:
        from workbench.domain import TRADE_COLUMNS
        from workbench.metrics import compute_metrics

        self._posting.drain()  # the last writes and the reads below are direct

        left = self.broker.end_run()  # resting orders end with the run
        for o in left:
            self._dirty_orders[o.client_id] = o
        self._checkpoint()
        if left:
            self.store.add_event(self.id, "orders_canceled", f"{len(left)} resting orders canceled: the run ended",
                                 {"client_ids": [o.client_id for o in left]}, actor=self.actor)
        if self.risk.events:
            self._risk_events()
        pf = self.portfolio
        trades = pd.DataFrame(pf.trade_log(include_open=True), columns=list(TRADE_COLUMNS))
        self.store.save_trades(self.id, trades)
        equity = pf.equity
        fields: dict[str, Any] = {"final_equity": equity, "pnl": equity - pf.initial_cash,
                                  "total_return": equity / pf.initial_cash - 1.0, "trade_count": len(trades)}
        try:
            curve = self.store.equity(self.id)["equity"]
            if len(curve) >= 2:
                fields["metrics"] = compute_metrics(curve, trades, pf.initial_cash)
        except Exception as e:  # metrics are a report, not the session's outcome
            self.store.add_event(self.id, "error", f"metrics not computed: {e}", actor=self.actor)
        try:
            from workbench.metrics.regime import session_regime_columns

            fields.update(session_regime_columns(self.config, self.last_bar))
        except Exception as e:  # a label for history, not the session's outcome: no error event, no alert
            log.warning("session %s: market regime not computed: %s", self.id, e)
        self.store.update_session(self.id, **fields)

    def _finish(self, state: SessionState) -> None:
        self._final_bookkeeping()
        msg = "feed ended" if state is S.COMPLETED else "stopped: orders canceled, positions flattened"
        left = self._open_symbols()
        if state is S.STOPPED and left:
            msg = f"stopped; feed ended before flattening {', '.join(left)}"
        self._set_state(state, msg)

    def _finish_killed(self) -> None:
        self._posting.drain()
        if self._write_error is not None:
            self._fail(self._write_error)
            return
        if self._hand_back_reason is not None and self._kill_reason is None:
            self._handed_back()
            return
        try:
            self._final_bookkeeping()
        finally:
            left = {s: self.portfolio.quantity(s) for s in self._open_symbols()}
            what = ("positions left open: " + ", ".join(f"{q:g} {s}" for s, q in left.items())) if left \
                else "no open positions"
            self._set_state(S.KILLED, f"killed ({self._kill_reason or 'cancelled'}); {what}")

    def _handed_back(self) -> None:
        """Checkpoint (resting orders stay in the runner state) and mark the session ORPHANED with no
        runner. If the store fails, its last checkpoint stands and the next host resumes from that."""
        if self._lost is not None:  # not ours any more: write nothing
            self.state = S.ORPHANED
            return
        if self._fault is not None:  # the store can't be written: _await_writable records it when it can
            with contextlib.suppress(Exception):
                self._set_state(S.ORPHANED, str(self._hand_back_reason))
                self.store.update_session(self.id, runner=None)
            self.state = S.ORPHANED
            return
        with contextlib.suppress(Exception):
            self._checkpoint()
        try:
            self._set_state(S.ORPHANED, str(self._hand_back_reason))
            self.store.update_session(self.id, runner=None)
        except Exception:
            self.state = S.ORPHANED

    def _fail(self, e: BaseException) -> None:
        self._posting.drain()
        self.error = redact(f"{type(e).__name__}: {e}")  # shown by views; the store redacts what it keeps
        with contextlib.suppress(Exception):
            self._flush_equity()
        try:
            self.store.add_event(self.id, "error", self.error, {"traceback": "".join(traceback.format_exception(e))},
                                 actor=self.actor)
            self.store.update_session(self.id, error=self.error)
            self._set_state(S.FAILED, f"failed: {self.error}")
        except Exception:
            self.state = S.FAILED

