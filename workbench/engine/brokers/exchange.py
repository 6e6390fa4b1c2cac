"""The exchange broker (:class:`~workbench.engine.brokers.base.Broker`): a session's orders on a ccxt
exchange through :class:`~workbench.engine.ccxt_broker.CcxtBroker`.

* Orders: :meth:`ExchangeBroker.submit` rounds the order to the lot size and queues it; one worker
  task writes it to the store (status new; off the event loop, so a store lock never stalls the bars),
  and only then sends it (idempotent client ids, lookup before any resend), waits for it to close
  and reports its exchange fills through ``on_fill`` once each (fill ids ``<exchange>:<trade id>``),
  writing each to the store (:mod:`~workbench.engine.brokers.placement`). While an order of a symbol is in flight
  (:meth:`busy`) the trader sends no other order of that symbol (no second exit).
* Operator orders (no bar) go to the exchange, never to a simulation. Limit orders rest there, followed
  by a watcher (:mod:`workbench.engine.brokers.resting`). A strategy or stop exit first cancels resting
  operator sells of its symbol (they lock the coins it sells).
* :meth:`start` reconciles (:mod:`workbench.engine.brokers.reconcile`), adopting the orders an earlier
  runner left resting; :meth:`finish` lets orders already sent settle, then at the end of the session
  cancels what still rests, or on a hand-back leaves it resting for the next runner; leftovers are
  reported.
* Controls: :meth:`cancel_all` and :meth:`flatten` keep retrying while the exchange errors, naming
  what is still open in each ``exchange_retry`` event.
* Running checks (:mod:`workbench.engine.brokers.watch`): the exchange's clock is measured at start and
  every ``time_sync_every`` s (after a -1021 refusal entries are refused until a resync succeeds; exits
  go through after it), and orders and balances are reconciled both ways every ``reconcile_every`` s.
* Perpetuals (symbols ``BASE/QUOTE:SETTLE``; a session trades spot or perpetuals, not both): :meth:`start`
  sets each one's leverage on the exchange (``margin.leverage``, rounded up); a sell from flat opens a
  short; a buy or sell that only reduces a position is sent reduce-only; exits of shorts buy; funding the
  exchange pays or charges is booked to the portfolio as it happens (:mod:`~workbench.engine.brokers.perps`:
  after each bar and every ``reconcile_every`` s, once each, checkpointed with the position).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from workbench import execution as ex
from workbench.config import SessionConfig, is_perp
from workbench.domain import Order, OrderStatus, OrderType, Side
from workbench.engine.brokers.base import FillSink, OrderSink, ignore_fill, ignore_order
from workbench.engine.brokers.perps import Perpetuals
from workbench.engine.brokers.placement import OrderPlacement
from workbench.engine.brokers.protect import Protection
from workbench.engine.brokers.resting import RestingOrders
from workbench.engine.brokers.watch import AccountWatch
from workbench.engine.ccxt_broker import CcxtBroker
from workbench.engine.commands import CommandRejected
from workbench.retry import RetryPolicy, is_transient
from workbench.store import Store
from workbench.store.faults import StorageFault

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio


class ExchangeBroker(OrderPlacement, RestingOrders, AccountWatch, Protection, Perpetuals):
    """One session's orders on an exchange. See the module docstring."""

    remote = True

    def __init__(self, client: CcxtBroker, config: SessionConfig, store: Store, *,
                 order_policy: RetryPolicy | None = None, fill_timeout: float = 10.0,
                 resting_poll: float | None = None, owns_client: bool = False, time_sync_every: float = 300.0,
                 reconcile_every: float = 30.0, mismatch_trip: float | None = 0.01):
        """``time_sync_every``, ``reconcile_every``: seconds between clock syncs and reconciliation rounds;
        ``mismatch_trip``: a reconciliation difference worth more than this fraction of the initial
        balance trips the circuit breaker (None: never)."""
        self._init_watch(time_sync_every, reconcile_every, mismatch_trip)
        if resting_poll is not None and not resting_poll > 0:
            raise ValueError(f"resting_poll must be a positive number of seconds (got {resting_poll!r})")
        self.client, self.config, self.store = client, config, store
        self.venue = config.data.exchange
        client.perps = [s for s in config.symbols if is_perp(s)]
        client.conditional = lambda o: is_perp(o.symbol) and self.is_protective(o)  # Binance's algo orders
        if client.perps and len(client.perps) != len(config.symbols):
            raise ValueError(f"a live session trades spot markets or perpetuals, not both (their money is in different "
                             f"wallets): got {', '.join(config.symbols)}; split them into two sessions")
        self.order_policy = order_policy or RetryPolicy(retries=None, base=0.25, cap=5.0)
        self.fill_timeout = float(fill_timeout)
        self.resting_poll = float(resting_poll or config.live.poll_seconds or 5.0)
        self.owns_client = owns_client
        self.on_fill: FillSink = ignore_fill
        self.on_order: OrderSink = ignore_order
        #: an order the exchange refused (or too small to send): the live session counts it toward its breaker
        self.on_refused: Callable[[Order, str], None] | None = None
        self.session_id = ""
        self.portfolio: Portfolio | None = None
        self.queue: asyncio.Queue[Order] = asyncio.Queue()
        self.inflight: dict[str, Order] = {}  # sent or queued, not closed
        self.resting: dict[str, Order] = {}  # limit orders acknowledged by the exchange, not closed
        self.cancel_asked: set[str] = set()  # limit orders to cancel as soon as the exchange acknowledges them
        self.applied: set[str] = set()  # fill ids booked
        self.fees_paid: dict[str, tuple[float, float]] = {}  # third fee asset -> (amount, quote booked), this run
        self.side_tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._checks: list[asyncio.Task[None]] = []
        self._funding_due = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ExchangeBroker {self.venue}:{self.config.live.account} session={self.session_id or '-'}>"

    # ---- wiring ------------------------------------------------------------------------------
    def attach(self, session_id: str, portfolio: Portfolio) -> None:
        self.session_id, self.portfolio = session_id, portfolio
        self.client.session_id = session_id
        self.client.on_event = self._exchange_event

    @property
    def pf(self) -> Portfolio:
        if self.portfolio is None:
            raise RuntimeError("the exchange broker is not attached to a session (attach() it first)")
        return self.portfolio

    def _event(self, kind: str, message: str, data: dict[str, Any] | None = None, actor: str = "exchange") -> None:
        self.store.add_event(self.session_id, kind, message, data or {}, actor=actor)

    def _report(self, kind: str, message: str, data: dict[str, Any] | None = None, actor: str = "exchange") -> None:
        """:meth:`_event` while the run ends: a store that cannot take it (a storage fault, likely why the run
        ends) does not stop the broker finishing; the event goes to the log instead."""
        try:
            self._event(kind, message, data, actor)
        except StorageFault as e:
            log.warning("session %s: %s (not recorded: %s)", self.session_id, message, e)

    def _exchange_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        if kind == "exchange_retry":
            message = f"{message}; still open: {self.open_summary()}"
        self._event(kind, message, data)

    def _refused(self, order: Order, why: str) -> None:
        if self.on_refused is not None:
            self.on_refused(order, why)

    def open_summary(self) -> str:
        """Open positions, orders in flight and resting orders, for events."""
        pf = self.pf
        pos = [f"{pf.quantity(s):g} {s}" for s, p in pf.positions.items() if p.quantity != 0.0]
        orders = [f"{o.side.value} {o.quantity:g} {o.symbol} ({o.reason})" for o in self.inflight.values()]
        orders += [f"{o.client_id} {o.side.value} {o.remaining:g} {o.symbol} "
                   + (f"limit {o.limit_price:g}" if o.limit_price is not None else f"stop {o.stop_price}")
                   + " (resting)" for o in self.resting.values()]
        return ", ".join(pos + [f"order {x}" for x in orders]) or "nothing"

    # ---- the protocol ----------------------------------------------------------------------------
    def submit(self, order: Order, bar: ex.Bar | None = None, cash: float = math.inf) -> Order:
        """With ``bar`` (a strategy or stop order): buys capped by ``cash`` at the bar's open with fee and
        slippage headroom, then queued. Without (an operator order): sells capped at what open sells do not
        already commit; raises CommandRejected if the session is not running or nothing is free to sell."""
        if self._entry(order) and not self.client.clock_ok:
            why = (f"entry paused: {self.venue} refused this host's clock (-1021) and it is not resynced yet; "
                   "exits still go through")
            if bar is None:
                raise CommandRejected(why)
            order.status = OrderStatus.REJECTED
            self.store.upsert_order(self.session_id, order)
            self._event("entry_paused", f"{order.side.value} {order.quantity:g} {order.symbol} not sent: {why}",
                        {"client_id": order.client_id}, "broker")
            return order
        if bar is not None:
            if order.side is Side.BUY and cash != math.inf and self._entry(order):
                c = self.config
                headroom = bar.open * (1.0 + c.commission.taker + c.slippage.bps / 1e4) * 1.01
                order.quantity = min(order.quantity, max(cash, 0.0) / headroom)
            self._queue_order(order)
            return order
        if self._worker is None or self._worker.done():
            raise CommandRejected("the live session is not running; start() it (orders need its exchange connection)")
        if order.side is Side.SELL and not is_perp(order.symbol):  # a perpetual's sell may open a short
            held = self.pf.quantity(order.symbol)
            free = held - self._committed_sells(order.symbol)
            if not free > 0.0:
                raise CommandRejected(f"cannot sell {order.symbol}: the session's {held:g} are all in open sell "
                                      "orders already; cancel one first")
            order.quantity = min(order.quantity, free)
        order.created_at = order.created_at or datetime.now(timezone.utc)
        self._queue_order(order)
        if order.status is OrderStatus.REJECTED:
            raise CommandRejected(f"{order.side.value} {order.quantity:g} {order.symbol} is below the exchange's "
                                  f"lot size or minimum ({self.client.min_amount(order.symbol):g}); raise the quantity")
        return order

    def describe(self, order: Order) -> str:
        """How a placed operator order is reported."""
        what = f"{order.side.value} {order.quantity:g} {order.symbol} {order.type.value}"
        if order.type is OrderType.LIMIT:
            what += f" @ {order.limit_price:g}, resting on {self.venue}"
        return f"order {order.client_id} sent to {self.venue}: {what}"

    def cancel(self, client_id: str) -> Order | None:
        """Cancel a resting order on the exchange (a side task, retrying); a limit order not acknowledged
        yet is canceled once it is. Raises CommandRejected if no such order rests."""
        order = self.resting.get(client_id)
        if order is not None:
            self.spawn(self.cancel_resting(order, "canceled by the operator"))
            return order
        sent = self.inflight.get(client_id)
        if sent is not None and sent.type is OrderType.LIMIT:
            self.cancel_asked.add(client_id)
            return sent
        why = " (a market order in flight cannot be canceled)" if sent is not None else ""
        raise CommandRejected(f"no resting order {client_id!r}{why}; resting: {', '.join(self.resting) or 'none'}")

    def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Ask the exchange to cancel every open order of the session (a side task retrying until it
        answers; the orders are recorded as it confirms). Returns [] (nothing is canceled yet)."""
        self.spawn(self.cancel_open_orders())
        return []

    def exit_now(self, reason: str) -> list[str]:
        """Market orders closing every open position without an order in flight (sells; buys for shorts),
        now; returns the symbols."""
        out = []
        stamp = int(time.time() * 1000)
        busy = {o.symbol for o in self.inflight.values()}
        pf = self.pf
        for s, p in list(pf.positions.items()):
            if p.quantity == 0.0 or s in busy:
                continue
            side = Side.SELL if p.quantity > 0.0 else Side.BUY
            self._queue_order(Order(f"{s}:{reason}:{stamp}", s, side, abs(p.quantity),
                                    created_at=datetime.now(timezone.utc), reason=reason,
                                    ref_price=pf.marks.get(s)))  # decided at the last mark
            out.append(s)
        return out

    def end_run(self) -> list[Order]:
        """Resting orders are canceled on the exchange by :meth:`finish`, after in-flight ones settle."""
        return []

    def on_bar(self, bars: Mapping[str, ex.Bar], portfolio: Portfolio) -> None:
        """Resting orders live on the exchange: a bar only wakes the watcher (and the funding check)."""
        if self.resting:
            self._wake.set()
        if self.client.perps:
            self._funding_due.set()

    def busy(self, symbol: str) -> bool:
        return any(o.symbol == symbol for o in self.inflight.values())

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = list(self.inflight.values()) + list(self.resting.values())
        return [o for o in orders if symbol is None or o.symbol == symbol]

    def __contains__(self, client_id: object) -> bool:
        return client_id in self.inflight or client_id in self.resting

    @property
    def has_open_orders(self) -> bool:
        return bool(self.inflight or self.resting)

    def snapshot(self) -> list[dict[str, Any]]:
        """Nothing: open exchange orders are in the store and reconciled by client id at :meth:`start`."""
        return []

    def restore(self, orders: list[dict[str, Any]]) -> None:
        """See :meth:`snapshot`."""

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the order worker and the resting-order watcher, measure the exchange's clock, check a new
        session's budget against the account's free balance (:mod:`~workbench.engine.brokers.account`;
        raises BudgetExceeded), reconcile with the exchange, then start the running checks (clock keeping,
        continuous reconciliation)."""
        from workbench.engine.brokers.account import check_budget
        from workbench.engine.brokers.reconcile import reconcile

        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._work(), name=f"orders-{self.session_id}")
        self._watcher = loop.create_task(self._watch_resting(), name=f"resting-{self.session_id}")
        await self.sync_clock()
        await self._set_leverage()
        self._announce_carry()
        if self.store.load_runner_state(self.session_id) is None and self.store.orders(self.session_id).empty:
            await check_budget(self.client, self.config, self.store, self.session_id)  # a new session only
        await reconcile(self)
        self.start_protection()  # protective orders (brokers/protect.py), after adopting what rests
        self._checks = [loop.create_task(self._keep_time(), name=f"clock-{self.session_id}"),
                        loop.create_task(self._watch_account(), name=f"reconcile-{self.session_id}")]
        if self.client.perps:
            self._checks.append(loop.create_task(self._watch_funding(), name=f"funding-{self.session_id}"))

    async def finish(self, *, hand_back: bool = False) -> None:
        """After the run (see :meth:`Broker.finish`): let orders already sent settle (up to ``fill_timeout``),
        then cancel what still rests, or with ``hand_back`` leave it resting on the exchange for the next
        runner's :meth:`start` to adopt; stop the tasks (cancels and close-alls the operator already asked
        for get ``fill_timeout`` to finish). Leftovers are reported as events."""
        await self.stop_protection()  # no protective order is placed or amended while the run ends
        if self._worker is not None and not self._worker.done():
            deadline = time.monotonic() + self.fill_timeout
            while self.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        if hand_back:
            if self.resting:
                self._report("handed_back", f"left resting on {self.venue} for the next runner: "
                             f"{', '.join(self.resting)}", {"client_ids": list(self.resting)}, "broker")
        else:
            await self.end_resting()  # after the drain: a limit order acknowledged meanwhile is canceled too
        if self.inflight:
            self._report("error", f"orders still unsettled at the {'hand-back' if hand_back else 'end'}: "
                         f"{self.open_summary()}; resume the session to reconcile them")
        tasks = [t for t in (self._worker, self._watcher, *self._checks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:  # really stopped before the next runner may take over (nothing of this run acts after)
            await asyncio.wait(tasks, timeout=self.fill_timeout)
        if self.side_tasks:  # cancel-all/close-all still retrying: give them time, then report
            _, pending = await asyncio.wait(list(self.side_tasks), timeout=self.fill_timeout)
            for t in pending:
                t.cancel()
            if pending:
                self._report("error", f"gave up on {len(pending)} exchange cleanups after {self.fill_timeout:g}s; "
                             f"still open: {self.open_summary()}")
        if self.owns_client:
            with contextlib.suppress(Exception):
                await self.client.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a side task; its failure becomes an error event."""
        task = asyncio.get_running_loop().create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self._side_done)
        return task

    def _side_done(self, task: asyncio.Task[Any]) -> None:
        self.side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            self._event("error", f"{type(e).__name__}: {e}; still open: {self.open_summary()}")

    # ---- controls ----------------------------------------------------------------------------------
    async def flatten(self, timeout: float | None = None, reason: str = ex.CLOSE_ALL) -> dict[str, float]:
        """Close every open position now (sell longs, buy back shorts), retrying while the exchange errors;
        returns what is still open after ``timeout`` seconds (empty when flat)."""
        pf = self.pf

        def held() -> list[str]:
            return [s for s, p in pf.positions.items() if p.quantity != 0.0]

        self.exit_now(reason)
        deadline = None if timeout is None else time.monotonic() + timeout
        while (held() or self.inflight) and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.05)
            if held() and not self.inflight:
                self.exit_now(reason)
        return {s: pf.quantity(s) for s in held()}

    async def cancel_open_orders(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Cancel this session's open orders on the exchange, retrying while it errors (an event each time,
        naming what is still open); returns the canceled orders, or raises TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        once = RetryPolicy(retries=0)
        while True:
            try:
                done = await self.client.cancel_all(self.config.symbols, policy=once)
                self._event("cancel_all", f"{len(done)} exchange orders canceled", {"ids": [o.get("id") for o in done]})
                self._wake.set()  # the watcher records the canceled resting orders
                return done
            except Exception as e:
                if not is_transient(e):
                    raise
                d = self.order_policy.delay(attempt, e, self.client.exchange)
                attempt += 1
                self._event("exchange_retry", f"cancel_all: {type(e).__name__}; retry {attempt} in {d:.2f}s; "
                            f"still open: {self.open_summary()}", {"error": type(e).__name__})
                if deadline is not None and time.monotonic() + d > deadline:
                    raise TimeoutError(f"cancel_all: the exchange is still failing; still open: "
                                       f"{self.open_summary()}") from e
                await asyncio.sleep(d)
