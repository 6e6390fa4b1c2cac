"""A session: strategy -> risk -> broker -> portfolio, bar by bar on an asyncio loop, with the store
as the shared truth (docs/architecture.md, "Sessions").

``Session(config, store).start()`` schedules the run on the running loop (from a Jupyter cell it
returns at once); ``await session.wait()``. States: created -> starting -> running <-> paused ->
stopping -> stopped | completed | killed | failed, each via ``store.set_state`` (an event).

A session is lifecycle around one :class:`~workbench.engine.trader.Trader` (the store-free bar step:
signals, exits, entries through the one risk engine, resting orders, breaker), one
:class:`~workbench.engine.brokers.Broker` (paper: :class:`PaperBroker`; live: the exchange broker)
and one feed; the session adds the store (checkpoints, commands, events). Paper and live sessions
are this class (:func:`workbench.engine.live.open_session` picks broker and feed).

Store writes of the bar loop (fills with their orders and positions, equity points) are queued and
written with the runner state in one transaction per checkpoint (every ``checkpoint_interval`` bars
and every poll), so a fill is durable exactly when the checkpoint that covers it is.

Controls are methods and store commands (polled every ``poll_interval`` s by a side task, which
also heartbeats and checkpoints); before the run, stop and kill end it at once and the others apply
at once or wait in order for its first bar (:func:`workbench.engine.commands.queues`), with the
store commands sent meanwhile. Await points are only between bars, so a control never sees a
half-processed bar. Order ids are deterministic (``<symbol>:<reason>:<bar unix s>``; operator
orders ``op<n>`` or ``cmd<command id>``) and so are fill ids, so a runner resumed from its last
checkpoint (:meth:`Session.resume`) replays the bars since then and the store drops the fills it
already has; the closed trades are rebuilt from the stored fills.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any, cast

from workbench import execution as ex
from workbench.config import SessionConfig
from workbench.diagnostics.profiler import Profile
from workbench.domain import Fill, Order, OrderStatus, SessionState
from workbench.engine import commands
from workbench.engine.bookkeeping import SessionBookkeeping, runner_id
from workbench.engine.brokers import Broker, PaperBroker
from workbench.engine.controls import SessionControls
from workbench.engine.feeds import ReplayFeed
from workbench.engine.legs import LegControls, make_trader
from workbench.engine.risk import RiskEngine
from workbench.engine.writes import PostingStore
from workbench.execution import Bar
from workbench.execution.ledger import Portfolio
from workbench.store import Store
from workbench.store.faults import StorageFault
from workbench.store.lease import LEASE_SECONDS, LeaseHeld, LeaseLost
from workbench.strategies.base import Strategy

S = SessionState
#: the commands a runner applies (:data:`workbench.engine.commands.RUNNER_COMMANDS`)
COMMANDS = tuple(c.value for c in commands.RUNNER_COMMANDS)


async def _batches(feed: AsyncIterable[dict[str, Bar]]) -> AsyncIterator[list[dict[str, Bar]]]:
    """``feed.batches()`` if the feed has it (:class:`ReplayFeed`: lists of bar dicts, fewer awaits),
    else each bar dict as a list of one."""
    batches = getattr(feed, "batches", None)
    if batches is not None:
        async for batch in batches():
            yield batch
        return
    async for bars in feed:
        yield [bars]


def _operator_seqs(client_ids: Any) -> list[int]:
    """The ``n`` of operator order ids ``op<n>`` (a new one never reuses an id written before a crash)."""
    return [int(m.group(1)) for c in client_ids if (m := re.fullmatch(r"op(\d+)", str(c)))]


class Session(SessionControls, SessionBookkeeping, LegControls):
    """One session (paper or live) run by this process. See the module docstring; the controls are
    :class:`~workbench.engine.controls.SessionControls`."""

    def __init__(self, config: SessionConfig, store: Store, *, feed: AsyncIterable[dict[str, Bar]] | None = None,
                 session_id: str | None = None, poll_interval: float = 0.5, equity_interval: int = 1,
                 checkpoint_interval: int = 5000, actor: str = "runner", replay_speed: float | None = None,
                 broker: Broker | None = None, lease_seconds: float = LEASE_SECONDS,
                 checkpoint_seconds: float | None = None):
        if equity_interval < 1 or checkpoint_interval < 1 or not poll_interval > 0:
            raise ValueError("equity_interval and checkpoint_interval must be >= 1 and poll_interval > 0")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0 (it is renewed every poll), got {lease_seconds!r}")
        self.config, self.actor = config, actor
        self._posting = PostingStore(store, self._write_failed)  # writes off the loop while the bars run
        self.store: Store = cast(Store, self._posting)
        self.id = session_id if session_id is not None else store.create_session(config, state=S.CREATED)
        self.state = S(store.get_session(self.id)["state"]) if session_id is not None else S.CREATED
        self.poll_interval, self.equity_interval = float(poll_interval), int(equity_interval)
        self.checkpoint_interval = int(checkpoint_interval)
        self._feed = feed
        self.replay_speed = replay_speed  # the default feed's ReplayFeed speed (None: as fast as possible)
        self.trader = make_trader(config, broker if broker is not None else PaperBroker(config))
        self.trader.on_fill, self.trader.on_order = self._queue_fill, self._order_ended
        self.broker.attach(self.id, self.trader.portfolio)
        self.params = dict(self.strategy.p)
        self._equity: list[tuple[int, float, float, float]] = []  # (time ns, equity, cash, exposure)
        self._equity_after = -1  # resume: points up to this time (ns) are already stored
        # written to the store with the next checkpoint, in its transaction (fills are durable with the
        # runner state that covers them: a crash loses both, and the resumed run replays them)
        self._fills: list[Fill] = []
        self._dirty_orders: dict[str, Order] = {}
        self._dirty_positions: set[str] = set()
        self._order_seq = 0  # operator orders placed by method: client ids op<seq>
        self.bars_seen = 0
        self.last_bar: datetime | None = None
        self._kill_reason: str | None = None
        self._hand_back_reason: str | None = None  # hand_back(): end this runner, not the session
        self._task: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._in_loop = False
        self._resumed_state: dict[str, Any] | None = None
        self._start_paused = False  # enter paused (a resumed paused run)
        self._queued: list[tuple[commands.Command, str, dict[str, Any]]] = []  # controls given before the run
        self.error: str | None = None
        self.lease_seconds = float(lease_seconds)
        self._lease_deadline = -math.inf  # time.monotonic() by which the lease must be renewed to act on
        self._renew_due = -math.inf  # when the poll renews the lease next
        # the poll checkpoints at once when fills or orders wait, else this long after the last checkpoint
        self.checkpoint_seconds = (max(self.poll_interval, min(2.0, 10 * self.poll_interval))
                                   if checkpoint_seconds is None else float(checkpoint_seconds))
        self._checkpoint_due = -math.inf
        self._applied_ids: set[int] = set()  # store commands this runner finished (their rows may be on the way)
        self._lost: LeaseLost | None = None  # another runner took the session: end, writing nothing
        self._fault: StorageFault | None = None  # the store could not be written: end as handed back
        self._write_error: BaseException | None = None  # a posted write failed otherwise: the run fails
        self._renewing: Future[Any] | None = None
        self.profile = Profile()  # the runner's measurements, in its runner state (workbench.diagnostics.profiler)

    # the trader's parts
    @property
    def broker(self) -> Broker:
        return self.trader.broker

    @property
    def portfolio(self) -> Portfolio:
        return self.trader.portfolio

    @property
    def risk(self) -> RiskEngine:
        return self.trader.risk

    @property
    def strategy(self) -> Strategy:
        return self.trader.strategy

    @property
    def _close_all(self) -> set[str]:
        return self.trader.close_all

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> Session:
        """Schedule the run on the running event loop and return at once (works from a Jupyter cell)."""
        if self._task is not None:
            raise RuntimeError(f"session {self.id} was already started")
        if self.state.is_final:
            raise RuntimeError(f"session {self.id} is {self.state.value}; restart() makes a new run of its config")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"session-{self.id}")
        return self

    async def wait(self) -> SessionState:
        """Wait for the run to end; returns the final state (never raises the run's errors)."""
        if self._task is None:
            raise RuntimeError("start() the session first")
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.done():
                raise  # the waiter itself was cancelled
            if self._task.cancelled() and not self.state.is_final:  # killed before it ran
                self._finish_killed()
        return self.state

    async def run(self) -> SessionState:
        """``start()`` then ``wait()``."""
        self.start()
        return await self.wait()

    def hand_back(self, reason: str) -> None:
        """End this runner, not the session (a host shutting down): cancel the run, checkpoint it and
        leave it ORPHANED, runner cleared, for the next host to resume with its positions and resting
        orders. A kill already asked for wins. ``await wait()`` for it to take effect."""
        if self._kill_reason is None:
            self._hand_back_reason = reason
        if self._task is not None:
            self._task.cancel()

    @classmethod
    def resume(cls, session_id: str, store: Store, feed: AsyncIterable[dict[str, Bar]] | None = None,
               **kwargs: Any) -> Session:
        """A Session for an existing (e.g. orphaned) session, rebuilt from its last runner state; it
        carries on from the bar after the checkpoint (``feed.start_after`` is set if the feed has it).
        :class:`~workbench.store.lease.LeaseHeld` while another runner's lease of it is live."""
        row = store.get_session(session_id)
        if SessionState(row["state"]).is_final:
            raise ValueError(f"session {session_id} is {row['state']}; restart() makes a new run of its config")
        if row["config"] is None:
            raise ValueError(f"session {session_id} has an invalid config: {row.get('config_error')}")
        lease = store.lease(session_id)
        if store.holds_lease(session_id) is None and lease["expires"] is not None \
                and lease["expires"] > datetime.now(timezone.utc):
            raise LeaseHeld(session_id, lease["runner"], lease["expires"])
        self = cls(row["config"], store, feed=feed, session_id=session_id, **kwargs)
        state = store.load_runner_state(session_id)
        if state is not None:
            self._restore(state)
        eq = store.equity(session_id)
        self._equity_after = int(eq.index.max().value) if len(eq) else -1
        return self

    @classmethod
    def restart(cls, session_id: str, store: Store, feed: AsyncIterable[dict[str, Bar]] | None = None,
                **kwargs: Any) -> Session:
        """A new run (``run_no + 1``, ``parent_id`` = ``session_id``) of the same config and kind, made by
        :func:`workbench.engine.live.open_session`; not started. A live session needs ``arming`` again
        (:class:`~workbench.engine.live.LiveNotArmed` before any new run is recorded)."""
        from workbench.engine.live import LiveNotArmed, arming_problem, open_session

        row = store.get_session(session_id)
        config = row["config"]
        if config is None:
            raise ValueError(f"session {session_id} has an invalid config: {row.get('config_error')}")
        problem = arming_problem(config, kwargs.get("arming"))
        if problem:
            raise LiveNotArmed(f"cannot restart {session_id}: {problem}")
        new_id = store.create_session(config, parent_id=session_id)
        try:
            return open_session(config, store, session_id=new_id, feed=feed, **kwargs)
        except Exception as e:
            store.set_state(new_id, S.FAILED, message=f"failed to start: {e}")
            raise

    def _ensure_feed(self) -> AsyncIterable[dict[str, Bar]]:
        if self._feed is None:  # one read-only copy of the bars per process, shared by every session replaying them
            c = self.config
            self._feed = ReplayFeed.shared(c.data, c.symbols, c.start, c.end, self.replay_speed, base=c.currency)
        if self.last_bar is not None and hasattr(self._feed, "start_after"):
            self._feed.start_after = self.last_bar
        return self._feed

    async def _run(self) -> None:
        """The lease, the broker's start (exchange: reconcile), the bar loop, the broker's finish (settle
        in flight), the lease given back."""
        if self.state.is_final:  # stopped or killed before it began
            await self._finish_broker()
            return
        try:
            self._take_lease()
        except LeaseHeld as e:  # another runner runs it: nothing is started or sent here
            self.error = str(e)
            with contextlib.suppress(Exception):
                self.store.add_event(self.id, "error", f"not run by {runner_id()}: {e}", actor=self.actor)
            return
        except StorageFault as e:  # nothing started: the session stays as it is in the store
            self._storage_fault(e)
            self.error = str(e)
            return
        try:
            await self._started()
            if self._fault is not None:
                await self._await_writable()
        finally:
            if self._lost is None and (self.state.is_final or self.state is S.ORPHANED):
                with contextlib.suppress(Exception):
                    self.store.release_lease(self.id)

    async def _started(self) -> None:
        """The broker's start, then the bar loop; the broker finishes however they ended."""
        try:
            try:
                await self.broker.start()
                self._order_seq = max([self._order_seq, *_operator_seqs(self.store.orders(self.id).client_id)])
            except (asyncio.CancelledError, Exception) as e:
                self._end(e)
                return
            await self._loop()
        finally:
            await self._finish_broker()

    def _end(self, e: BaseException) -> None:
        """End the run on ``e``, never raising it into the caller's kernel: cancelled (a kill or a hand-back;
        nothing to do if it already ended, e.g. stopped before it ran), another runner's lease (write
        nothing), a storage fault (handed back), anything else failed."""
        if isinstance(e, LeaseLost):
            self._lease_lost(e)
        elif isinstance(e, StorageFault):
            self._storage_fault(e)
        elif not isinstance(e, asyncio.CancelledError):
            self._fail(e)
            return
        if not self.state.is_final:
            self._finish_killed()

    async def _finish_broker(self) -> None:
        """Let the broker finish, even if cancelled meanwhile (a hand-back racing the end); handed back, it
        cancels nothing. Fills it books after the final bookkeeping redo it (event ``late_fills``)."""
        before = self.portfolio.fill_count
        handing_back = self._hand_back_reason is not None and not self.state.is_final
        finishing, cancelled = asyncio.ensure_future(self.broker.finish(hand_back=handing_back)), None
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError as e:
            cancelled = e
            await finishing  # bounded by the broker (fill_timeout)
        late = self.portfolio.fill_count - before
        if late and handing_back:
            with contextlib.suppress(Exception):
                self._checkpoint()  # handed back: the run goes on elsewhere, nothing ends here
        elif late:
            self._final_bookkeeping()
            self.store.add_event(self.id, "late_fills", f"{late} fills of orders open at the end were recorded "
                                 f"after it; open positions: {', '.join(self._open_symbols()) or 'none'}",
                                 actor=self.broker.venue)
        if cancelled is not None:
            raise cancelled

    async def _loop(self) -> None:
        self._in_loop = True
        try:
            if self._kill_reason is not None:
                raise asyncio.CancelledError
            paused = self._start_paused or (self._resumed_state is not None and self._resumed_state.get("paused"))
            self._set_state(S.STARTING, "resuming from the last checkpoint" if self._resumed_state else "starting")
            feed = self._ensure_feed()
            ex.warm_up()
            self._beat()
            self._set_state(S.PAUSED if paused else S.RUNNING,
                            f"resumed after {self.last_bar}" if self._resumed_state else "running")
            self._apply_queued()  # controls given before the run, then the store's: before the first bar
            self.poll()
            if self._kill_reason is not None:
                raise asyncio.CancelledError
            self._posting.start()
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop())
            if not self._flat_and_stopping():  # else stopped before the first bar
                await self._bars(feed)
            await self._posting.drain_async()
            self._finish(S.STOPPED if self.state is S.STOPPING else S.COMPLETED)
        except (asyncio.CancelledError, Exception) as e:
            self._end(e)
        finally:
            self._in_loop = False
            if self._poller is not None:
                self._poller.cancel()

    async def _bars(self, feed: AsyncIterable[dict[str, Bar]]) -> None:
        since_ck, every, on_bar, profile = 0, self.checkpoint_interval, self._on_bar, self.profile
        async for batch in _batches(feed):
            if time.monotonic() > self._lease_deadline - self.poll_interval:
                self._renew()  # the poll loop could not renew it: renew before acting (or stop: LeaseLost)
            began = time.perf_counter()
            profile.bars += len(batch)
            for bars in batch:  # no await inside a batch: controls act between batches
                on_bar(bars)
                if self._flat_and_stopping():
                    break
                since_ck += 1
                if since_ck >= every:
                    since_ck = 0
                    self._checkpoint(periodic=True)
            profile.busy += time.perf_counter() - began  # the session's time on its bars (with checkpoints)
            if self._flat_and_stopping():
                return

    # ---- one bar ---------------------------------------------------------------------
    def _on_bar(self, bars: dict[str, Bar]) -> None:
        """One bar time through the trader, then the session's bookkeeping (equity points, risk events); a step
        that placed an order is timed for the profiler (its bar-to-order latency)."""
        state, why, began = self.state, self.trader.why, time.perf_counter()
        placed = why.placed
        equity = self.trader.step(bars, entries=state is S.RUNNING, stopping=state is S.STOPPING)
        if why.placed != placed:
            self.profile.hist["bar_to_order"].add(time.perf_counter() - began)
        self.last_bar = self.trader.last_time
        self.bars_seen = n = self.bars_seen + 1
        if n % self.equity_interval == 0 and self.trader.last_ns > self._equity_after:
            cash = self.trader.portfolio.cash
            self._equity.append((self.trader.last_ns, equity, cash, equity - cash))
        if self.trader.risk.events:
            self._risk_events()

    def _queue_fill(self, fill: Fill, order: Order) -> None:
        """A booked fill: queued (with its order and position) for the next checkpoint, unless the broker
        writes the store itself."""
        if self.broker.remote:
            return
        self._fills.append(fill)
        self._dirty_orders[order.client_id] = order
        self._dirty_positions.add(fill.symbol)

    def _order_ended(self, order: Order, why: str) -> None:
        """An order the broker rejected or canceled without a fill: queued, and an event."""
        if self.broker.remote:
            return
        self._dirty_orders[order.client_id] = order
        kind = "order_rejected" if order.status is OrderStatus.REJECTED else "order_canceled"
        self.store.add_event(self.id, kind, why, {"client_id": order.client_id}, actor="broker")

    def _profiled(self, lag: float) -> None:
        """Each poll: the event loop's ``lag``, the store writes done since, a CPU/memory sample when due."""
        profile, times = self.profile, self._posting.write_times
        profile.lag(lag)
        profile.writes([times.popleft() for _ in range(len(times))])
        profile.sample()

    def _risk_events(self) -> None:
        for ev in self.risk.drain_events():
            self.store.add_event(self.id, ev["kind"], ev["message"], ev["data"],
                                 actor=str(ev["data"].get("actor", "risk")))

    def _open_symbols(self) -> list[str]:
        return self.trader.open_symbols()

    def _flat_and_stopping(self) -> bool:
        """Stopping with nothing left to sell: the run ends as stopped."""
        return self.state is S.STOPPING and not self._open_symbols()

    def _now(self) -> datetime:
        return self.last_bar or datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.config.strategy} {self.state.value} bars={self.bars_seen}>"
