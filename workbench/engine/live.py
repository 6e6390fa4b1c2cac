"""Live sessions: the paper session's runner, risk engine and portfolio, with a :class:`CcxtBroker`
and a :class:`LiveFeed` instead of the simulated broker and the replay.

* Arming: :func:`arming_problem` is the one rule (the wizard delegates to it). A live session needs
  ``arming={"allow_live": True, "confirmation": "<exchange>:<account>"}`` naming ``config.data.exchange``
  and ``config.live.account``; without it :class:`LiveSession` refuses to be created, saying how to arm.
* Orders: ``_execute`` (the broker boundary of the bar loop) writes the order to the store first
  (status new), then queues it; one worker task sends it (idempotently, retrying until the exchange
  answers), waits for it to close and applies its exchange fills to the portfolio and the store once
  each (fill ids ``<exchange>:<trade id>``). While an order of a symbol is in flight no other order of
  that symbol is sent (no second exit).
* Reconciliation at start and resume: store orders still open are looked up on the exchange by client
  id (fills that happened while the runner was down are applied; orders the exchange never got are
  marked canceled), stored fills newer than the checkpoint are re-applied to the portfolio, unknown
  open orders of this session and balance shortfalls are reported; every difference is an event.
* Controls: stop flattens now (and the loop ends at the next bar once flat), close_all sells now,
  cancel_all and kill cancel this session's open exchange orders; all keep retrying while the exchange
  errors, recording what is still open, until it answers (:meth:`LiveSession.flatten`,
  :meth:`LiveSession.cancel_open_orders` await that). Orders already sent when a run ends (even by
  kill) are settled first, so their fills are recorded once (event ``late_fills``).
* Operator orders (:meth:`Session.place_order` / ``cancel_order``, methods or store commands) go to
  the exchange, never to the paper simulation: after the same validation and risk check as paper
  they are written ahead and sent by the worker with their idempotent client ids (``op<n>`` /
  ``cmd<command id>``). Market orders settle like any other order. Limit orders rest on the exchange:
  a watcher polls this session's open orders (one request per symbol holding resting orders, every
  ``resting_poll`` seconds and after each bar) and applies new fills once each; an order gone from the
  open list is fetched for its final status and trades. cancel_order cancels on the exchange (then
  records the final state), cancel_all/stop/kill cancel every open session order, a strategy or
  stop exit first cancels resting operator sells of its symbol (they would lock the coins it sells),
  and a run's end cancels what still rests. Resume reconciles them like any open order (fills made
  while down are applied once) and puts those still open back under the watcher.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, Mapping
from datetime import datetime, timezone
from typing import Any

import ccxt

from workbench.config import SessionConfig
from workbench.domain import Fill, Order, OrderStatus, OrderType, SessionKind, SessionState, Side
from workbench import execution as ex
from workbench.engine.ccxt_broker import CcxtBroker, make_async_exchange, order_status
from workbench.execution import Bar
from workbench.engine.live_feed import LiveFeed
from workbench.retry import RetryPolicy, is_transient
from workbench.engine.session import CommandRejected, Session
from workbench.store import Store

S = SessionState
_OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
OPERATOR = "operator"  # the reason of operator orders (Session._new_order)


class LiveNotArmed(ValueError):
    """A live session was requested without arming; the message says how to arm it."""


def _get(obj: Any, *path: str) -> Any:
    for p in path:
        if obj is None:
            return None
        obj = obj.get(p) if isinstance(obj, Mapping) else getattr(obj, p, None)
    return obj


def arming_problem(config: SessionConfig | Mapping[str, Any], arming: Mapping[str, Any] | None) -> str | None:
    """Why a session of ``config`` may not trade live with ``arming``, or None if it may.

    Only ``kind='live'`` needs arming: ``arming['allow_live']`` true and ``arming['confirmation']`` equal
    to ``'<exchange>:<account>'`` (``config.data.exchange``, ``config.live.account``). ``config`` may be a
    mapping of form values; without ``live.account`` there any account name is accepted.
    """
    kind = _get(config, "kind")
    kind = getattr(kind, "value", kind)
    if kind != SessionKind.LIVE.value:
        return None
    exchange = _get(config, "data", "exchange") or "binance"
    account = _get(config, "live", "account")
    example = f"{exchange}:{account or 'main'}"
    if not arming or not arming.get("allow_live"):
        return (f"live trading is not armed: tick 'allow live trading' and type the exchange:account "
                f"(in code: arming={{'allow_live': True, 'confirmation': '{example}'}})")
    confirmation = str(arming.get("confirmation") or "").strip()
    ok = (confirmation == f"{exchange}:{account}" if account
          else re.fullmatch(rf"{re.escape(exchange)}:[\w.\-]+", confirmation) is not None)
    if not ok:
        return f"type the exchange and account to confirm, e.g. '{example}' (got {confirmation!r})"
    return None


class LiveSession(Session):
    """A session trading on an exchange through :class:`CcxtBroker`. See the module docstring."""

    def __init__(self, config: SessionConfig, store: Store, *, broker: CcxtBroker, arming: Mapping[str, Any] | None = None,
                 feed: AsyncIterable[dict[str, Bar]] | None = None, order_policy: RetryPolicy | None = None,
                 fill_timeout: float = 10.0, owns_broker: bool = False, resting_poll: float | None = None,
                 **kwargs: Any):
        problem = arming_problem({"kind": "live", "data": {"exchange": config.data.exchange},
                                  "live": {"account": config.live.account}}, arming)
        if problem:
            raise LiveNotArmed(problem)
        super().__init__(config, store, feed=feed, **kwargs)
        self.exchange = broker
        broker.session_id = self.id
        broker.on_event = self._exchange_event
        self.order_policy = order_policy or RetryPolicy(retries=None, base=0.25, cap=5.0)
        self.fill_timeout = float(fill_timeout)
        self._owns_broker = owns_broker
        self._queue: asyncio.Queue[Order] = asyncio.Queue()
        self._inflight: dict[str, Order] = {}
        self._applied: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        # operator limit orders resting on the exchange (acknowledged, not closed), by client id
        self._resting: dict[str, Order] = {}
        self._cancel_asked: set[str] = set()  # limit orders to cancel as soon as the exchange acknowledges them
        if resting_poll is not None and not resting_poll > 0:
            raise ValueError(f"resting_poll must be a positive number of seconds (got {resting_poll!r})")
        self.resting_poll = float(resting_poll or config.live.poll_seconds or 5.0)
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<LiveSession {self.id} {self.config.data.exchange}:{self.config.live.account} {self.state.value}>"

    # ---- events ------------------------------------------------------------------------------
    def _exchange_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        if kind == "exchange_retry":
            message = f"{message}; still open: {self._open_summary()}"
        self.store.add_event(self.id, kind, message, data, actor="exchange")

    def _open_summary(self) -> str:
        pos = [f"{self.portfolio.quantity(s):g} {s}" for s in self._open_symbols()]
        orders = [f"{o.side.value} {o.quantity:g} {o.symbol} ({o.reason})" for o in self._inflight.values()]
        orders += [f"{o.client_id} {o.side.value} {o.remaining:g} {o.symbol} limit {o.limit_price:g} (resting)"
                   for o in self._resting.values()]
        return ", ".join(pos + [f"order {x}" for x in orders]) or "nothing"

    # ---- lifecycle ---------------------------------------------------------------------------
    def _ensure_feed(self) -> AsyncIterable[dict[str, Bar]]:
        if self._feed is None:
            c = self.config
            self._feed = LiveFeed(self.exchange.exchange, c.symbols, c.data.timeframe, poll_seconds=c.live.poll_seconds,
                                  stale_bars=c.live.stale_bars)
        if isinstance(self._feed, LiveFeed) and self._feed._session is None:
            self._feed.attach(self)
        return super()._ensure_feed()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self._work(), name=f"orders-{self.id}")
        self._watcher = loop.create_task(self._watch_resting(), name=f"resting-{self.id}")
        try:
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                self._finish_killed()
                return
            except Exception as e:
                self._fail(e)
                return
            await super()._run()
        finally:
            await self._settle_in_flight(len(self._applied))
            self._worker.cancel()
            self._watcher.cancel()
            if self._side_tasks:  # cancel-all/close-all still retrying: give them time, then report
                _, pending = await asyncio.wait(list(self._side_tasks), timeout=self.fill_timeout)
                for t in pending:
                    t.cancel()
                if pending:
                    self.store.add_event(self.id, "error", f"gave up on {len(pending)} exchange cleanups after "
                                         f"{self.fill_timeout:g}s; still open: {self._open_summary()}", actor="exchange")
            if self._owns_broker:
                try:
                    await self.exchange.close()
                except Exception:
                    pass

    async def _settle_in_flight(self, before: int) -> None:
        """At the end (stop, kill, feed end): let orders already sent finish and cancel operator orders still
        resting, so their exchange fills are recorded; the final bookkeeping is redone if any fills arrived
        after it (``before``: the count then)."""
        if self._worker is not None and not self._worker.done():
            deadline = time.monotonic() + self.fill_timeout
            while self._inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        await self._end_resting()  # after the drain: a limit order acknowledged meanwhile is canceled too
        late = len(self._applied) - before
        if late:
            self._final_bookkeeping()
            self.store.add_event(self.id, "late_fills", f"{late} fills of orders open at the end were recorded "
                                 f"after it; open: {self._open_summary()}", actor="exchange")
        if self._inflight:
            self.store.add_event(self.id, "error", f"orders still unsettled at the end: {self._open_summary()}; "
                                 "resume the session to reconcile them", actor="exchange")

    # ---- orders ------------------------------------------------------------------------------
    def _execute(self, order: Order, bar: Bar, cash: float = float("inf")) -> Fill | None:
        """Queue ``order`` for the exchange (write-ahead to the store); fills arrive later, from the worker."""
        if any(o.symbol == order.symbol for o in self._inflight.values()):
            return None  # one order per symbol at a time: never a second exit while one is in flight
        if order.side is Side.BUY and cash != float("inf"):
            c = self.config
            headroom = bar.open * (1.0 + c.commission.taker + c.slippage.bps / 1e4) * 1.01
            order.quantity = min(order.quantity, max(cash, 0.0) / headroom)
        return self._queue_order(order)

    def _queue_order(self, order: Order) -> None:
        """Round to the lot size, write ahead to the store, and hand to the worker (or reject if too small)."""
        try:
            q = self.exchange.amount(order.symbol, order.quantity)
        except Exception:
            q = 0.0
        if not q > 0.0 or q < self.exchange.min_amount(order.symbol):
            order.status = OrderStatus.REJECTED
            self.store.upsert_order(self.id, order)
            self.store.add_event(self.id, "order_rejected", f"{order.side.value} {order.quantity:g} {order.symbol} is "
                                 f"below the exchange's lot size ({order.reason}); not sent",
                                 {"client_id": order.client_id}, actor="broker")
            return None
        order.quantity = q
        if order.created_at is None:
            order.created_at = datetime.now(timezone.utc)
        self.store.upsert_order(self.id, order)  # write-ahead: a crash after this is reconciled by client id
        self._inflight[order.client_id] = order
        self._queue.put_nowait(order)
        return None

    async def _work(self) -> None:
        while True:
            order = await self._queue.get()
            try:
                await self._send(order)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.store.add_event(self.id, "error", f"order {order.client_id}: {type(e).__name__}: {e}",
                                     {"client_id": order.client_id}, actor="exchange")
            finally:
                if order.status not in _OPEN or order.exchange_id is None:
                    self._inflight.pop(order.client_id, None)

    async def _send(self, order: Order) -> None:
        if order.side is Side.SELL and order.reason != OPERATOR and not await self._make_room_to_sell(order):
            return
        try:
            res = await self.exchange.submit(order, policy=self.order_policy)
        except ccxt.BaseError as e:
            if is_transient(e):
                raise
            order.status = OrderStatus.REJECTED
            self.store.upsert_order(self.id, order)
            self.store.add_event(self.id, "order_rejected", f"{order.side.value} {order.quantity:g} {order.symbol} "
                                 f"refused by {self.config.data.exchange} ({type(e).__name__}): {e}",
                                 {"client_id": order.client_id, "error": type(e).__name__}, actor="exchange")
            return
        order.exchange_id = str(res.get("id"))
        self.store.upsert_order(self.id, order)
        if order.type is OrderType.LIMIT:  # rests on the exchange: the watcher picks up its fills
            self._inflight.pop(order.client_id, None)
            self._resting[order.client_id] = order
            if order.client_id in self._cancel_asked:
                self._spawn(self._cancel_resting(order, "canceled before the exchange acknowledged it"))
            self._wake.set()
            return
        await self._settle(order, res)

    async def _settle(self, order: Order, res: dict[str, Any]) -> None:
        """Wait (up to ``fill_timeout``) for the order to close, then apply its fills once each."""
        deadline = time.monotonic() + self.fill_timeout
        while order_status(res) in _OPEN and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            res = await self.exchange.fetch(order, res)
        filled = float(res.get("filled") or 0.0)
        fills = await self.exchange.fills(order, res)
        while sum(f.quantity for f in fills) < filled * (1 - 1e-9) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # trades can show up a moment after the order closes
            fills = await self.exchange.fills(order, res)
        self._apply_fills(order, fills)
        order.status = order_status(res)
        order.filled_quantity = filled
        self.store.upsert_order(self.id, order)

    def _apply_fills(self, order: Order, fills: list[Fill]) -> int:
        """Apply fills not applied yet to the portfolio and the store; returns how many were new."""
        n = 0
        for f in fills:
            if f.fill_id in self._applied:
                continue
            self.portfolio.apply_fill(f)
            self._applied.add(f.fill_id)
            order.filled_quantity = min(order.quantity, order.filled_quantity + f.quantity)
            self.store.add_fill(self.id, f, order=order, position=self.portfolio.positions[f.symbol])
            n += 1
        return n

    async def _settle_and_release(self, order: Order, res: dict[str, Any]) -> None:
        try:
            await self._settle(order, res)
        finally:
            if order.status not in _OPEN:
                self._inflight.pop(order.client_id, None)

    # ---- operator orders -----------------------------------------------------------------------
    def _submit_operator_order(self, order: Order) -> str:
        """Send a validated, risk-checked operator order to the exchange (never the paper simulation)."""
        if not self._in_loop or self._worker is None or self._worker.done():
            raise CommandRejected("the live session is not running; start() it (orders need its exchange connection)")
        if order.side is Side.SELL:
            held = self.portfolio.quantity(order.symbol)
            free = held - self._committed_sells(order.symbol)
            if not free > 0.0:
                raise CommandRejected(f"cannot sell {order.symbol}: the session's {held:g} are all in open sell "
                                      "orders already; cancel one first")
            order.quantity = min(order.quantity, free)
        order.created_at = order.created_at or datetime.now(timezone.utc)
        self._queue_order(order)  # lot size, write-ahead to the store, then the worker sends it
        if order.status is OrderStatus.REJECTED:
            raise CommandRejected(f"{order.side.value} {order.quantity:g} {order.symbol} is below the exchange's "
                                  f"lot size or minimum ({self.exchange.min_amount(order.symbol):g}); raise the quantity")
        self._checkpoint()  # the operator order counter is durable before the command is marked applied
        what = f"{order.side.value} {order.quantity:g} {order.symbol} {order.type.value}"
        if order.type is OrderType.LIMIT:
            what += f" @ {order.limit_price:g}, resting on {self.config.data.exchange}"
        return f"order {order.client_id} sent to {self.config.data.exchange}: {what}"

    def _committed_sells(self, symbol: str) -> float:
        """What open (in-flight or resting) sells of ``symbol`` still have to sell."""
        orders = list(self._inflight.values()) + list(self._resting.values())
        return sum(o.remaining for o in orders if o.symbol == symbol and o.side is Side.SELL)

    def _do_cancel_order(self, actor: str, client_id: str) -> str:
        self._require_live("cancel_order")
        order = self._resting.get(client_id)
        if order is None:
            sent = self._inflight.get(client_id)
            if sent is not None and sent.type is OrderType.LIMIT:  # not acknowledged yet: cancel when it is
                self._cancel_asked.add(client_id)
                return f"order {client_id} will be canceled on {self.config.data.exchange} once it acknowledges it"
            open_ = list(self._resting)
            why = " (a market order in flight cannot be canceled)" if sent is not None else ""
            raise CommandRejected(f"no resting order {client_id!r}{why}; resting: {', '.join(open_) or 'none'}")
        self._spawn(self._cancel_resting(order, f"canceled by {actor}"))
        return f"canceling order {client_id} on {self.config.data.exchange} (retrying until it answers)"

    def _on_bar(self, bars: dict[str, Bar]) -> None:
        super()._on_bar(bars)
        if self._resting:
            self._wake.set()  # a new bar: look at the resting orders now

    def _fill_resting(self, bars: dict[str, Bar]) -> None:
        """Live orders are never simulated: resting orders live on the exchange and their fills come from
        :meth:`sync_resting_orders` (the watcher); a bar only wakes it."""
        self._wake.set()

    async def _watch_resting(self) -> None:
        """Every ``resting_poll`` seconds, or when woken (a bar, a new limit order), sync resting orders."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.resting_poll)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self._resting:
                continue
            try:
                await self.sync_resting_orders()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker already retried; try again at the next round
                self.store.add_event(self.id, "error", f"resting orders not synced: {type(e).__name__}: {e}; "
                                     f"still open: {self._open_summary()}", actor="exchange")

    async def sync_resting_orders(self) -> int:
        """Compare the resting operator orders with the exchange (one open-orders request per symbol);
        apply new fills once each and record orders that closed. Returns how many fills were new."""
        n = 0
        for symbol in sorted({o.symbol for o in self._resting.values()}):
            rows = {o.get("clientOrderId"): o for o in await self.exchange.open_orders([symbol])}
            for order in [o for o in self._resting.values() if o.symbol == symbol]:
                if order.client_id not in self._resting:
                    continue  # closed meanwhile (a cancel)
                row = rows.get(self.exchange.client_order_id(order))
                if row is not None and float(row.get("filled") or 0.0) <= order.filled_quantity * (1 + 1e-9):
                    continue  # still resting, nothing new
                res = row if row is not None else await self.exchange.fetch(order, {"id": order.exchange_id})
                n += await self._sync_order(order, res)
        return n

    async def _sync_order(self, order: Order, res: dict[str, Any]) -> int:
        """Apply the fills of ``order`` (exchange view ``res``) not applied yet; once it is closed and all its
        trades are in, record the final status and stop following it. Returns the new fills."""
        filled = float(res.get("filled") or 0.0)
        fills = await self.exchange.fills(order, res) if filled > 0.0 else []
        n = self._apply_fills(order, fills)
        complete = sum(f.quantity for f in fills) >= filled * (1 - 1e-9)
        status = order_status(res)
        if status not in _OPEN and not complete:
            status = OrderStatus.PARTIALLY_FILLED  # trades lag the order: look again at the next round
        if order.client_id in self._resting:
            order.status = status
            order.filled_quantity = max(order.filled_quantity, min(filled, order.quantity))
            if status not in _OPEN:
                self._resting.pop(order.client_id, None)
                self._cancel_asked.discard(order.client_id)
                if status is OrderStatus.CANCELED:
                    self.store.add_event(self.id, "order_canceled", f"order {order.client_id} canceled on "
                                         f"{self.config.data.exchange} ({order.filled_quantity:g} of "
                                         f"{order.quantity:g} filled)", {"client_id": order.client_id},
                                         actor="exchange")
            if n or status not in _OPEN:
                self.store.upsert_order(self.id, order)
        return n

    async def _cancel_resting(self, order: Order, why: str) -> None:
        """Cancel a resting order on the exchange (retrying while it errors), then record its final state
        and any fills it had before (a fill racing the cancel is applied, once)."""
        if order.exchange_id is None:
            return
        try:
            res = await self.exchange.call("cancel_order", order.exchange_id, order.symbol, policy=self.order_policy)
        except ccxt.OrderNotFound:
            res = None  # no longer open there (filled or canceled meanwhile): fetch below says which
        if res is None or float(res.get("filled") or 0.0) > order.filled_quantity:
            res = await self.exchange.fetch(order, {"id": order.exchange_id})
        deadline = time.monotonic() + self.fill_timeout
        while True:
            await self._sync_order(order, res)
            if order.client_id not in self._resting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # closed, but its trades are not all visible yet
            res = await self.exchange.fetch(order, {"id": order.exchange_id})
        self.store.add_event(self.id, "control", f"order {order.client_id}: {why}; it is {order.status.value}",
                             {"client_id": order.client_id}, actor="exchange")

    async def _make_room_to_sell(self, order: Order) -> bool:
        """A strategy/stop/stop-session sell takes the position: cancel resting operator sells of the symbol
        first (they lock the coins), then sell at most what is still held. False: nothing left to sell."""
        resting = [o for o in self._resting.values() if o.symbol == order.symbol and o.side is Side.SELL]
        if not resting:
            return True
        for o in resting:
            await self._cancel_resting(o, f"canceled: the {order.reason} exit sells the position")
        q = self.exchange.amount(order.symbol, min(order.quantity, self.portfolio.quantity(order.symbol)))
        if not q > 0.0 or q < self.exchange.min_amount(order.symbol):
            order.status = OrderStatus.CANCELED
            self.store.upsert_order(self.id, order)
            self.store.add_event(self.id, "order_canceled", f"{order.reason} exit of {order.symbol} not sent: the "
                                 "resting sells it canceled had sold the position", {"client_id": order.client_id},
                                 actor="broker")
            return False
        order.quantity = q
        return True

    async def _end_resting(self) -> None:
        """At the run's end: cancel what still rests on the exchange (like paper, resting orders end with
        the run), recording each final state; leftovers after ``fill_timeout`` are reported."""
        if not self._resting:
            return
        tasks = [asyncio.ensure_future(self._cancel_resting(o, "canceled: the run ended"))
                 for o in list(self._resting.values())]
        done, pending = await asyncio.wait(tasks, timeout=self.fill_timeout)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                self.store.add_event(self.id, "error", f"resting order not canceled at the end: "
                                     f"{type(t.exception()).__name__}: {t.exception()}", actor="exchange")
        if self._resting:
            self.store.add_event(self.id, "error", f"orders still resting on {self.config.data.exchange} after the "
                                 f"end: {self._open_summary()}; resume the session to reconcile them",
                                 actor="exchange")

    # ---- reconciliation ----------------------------------------------------------------------
    def runner_state(self) -> dict[str, Any]:
        out = super().runner_state()
        out["applied_fills"] = sorted(self._applied)
        return out

    def _restore(self, state: dict[str, Any]) -> None:
        super()._restore(state)
        self._applied = set(state.get("applied_fills") or ())

    async def _reconcile(self) -> None:
        """Compare the exchange with the store and apply the differences (see the module docstring)."""
        await self.exchange.load_markets()
        notes: list[str] = []
        orders = self.store.orders(self.id)
        reasons = dict(zip(orders["client_id"], orders["reason"])) if len(orders) else {}
        for r in self.store.fills(self.id).itertuples(index=False):  # stored, but newer than the checkpoint
            if r.fill_id in self._applied:
                continue
            f = Fill(r.client_id, r.symbol, Side(r.side), float(r.quantity), float(r.price), float(r.commission),
                     float(r.slippage), r.time.to_pydatetime() if hasattr(r.time, "to_pydatetime") else r.time,
                     r.fill_id, reasons.get(r.client_id, ""))
            self.portfolio.apply_fill(f)
            self._applied.add(f.fill_id)
            notes.append(f"fill {f.fill_id} re-applied from the store")
        for r in orders.itertuples(index=False):
            if OrderStatus(r.status) not in _OPEN:
                continue
            order = Order(r.client_id, r.symbol, Side(r.side), float(r.quantity), OrderType(r.type),
                          None if r.limit_price != r.limit_price else r.limit_price, OrderStatus(r.status),
                          float(r.filled_quantity), r.created_at.to_pydatetime(), r.reason, r.exchange_id)
            res = await self.exchange.lookup(order)
            if res is None:
                order.status = OrderStatus.CANCELED
                self.store.upsert_order(self.id, order)
                msg = f"order {order.client_id} never reached the exchange; marked canceled"
            else:
                order.exchange_id = str(res.get("id"))
                n = self._apply_fills(order, await self.exchange.fills(order, res))
                order.status, order.filled_quantity = order_status(res), float(res.get("filled") or 0.0)
                self.store.upsert_order(self.id, order)
                msg = f"order {order.client_id} is {order.status.value} on the exchange; {n} fills applied"
                if order.status in _OPEN and order.type is OrderType.LIMIT:
                    self._resting[order.client_id] = order  # rests on: the watcher follows it
                    msg += "; resting"
                elif order.status in _OPEN:
                    self._inflight[order.client_id] = order
                    self._spawn(self._settle_and_release(order, res))
            notes.append(msg)
            self.store.add_event(self.id, "reconcile", msg, {"client_id": order.client_id}, actor="reconcile")
        seqs = [int(m.group(1)) for c in reasons if (m := re.fullmatch(r"op(\d+)", str(c)))]
        self._order_seq = max([self._order_seq, *seqs])  # a new op<n> never reuses an id written before a crash
        known = {self.exchange.client_order_id(Order(c, "", Side.BUY, 0.0)) for c in reasons}
        for o in await self.exchange.open_orders(self.config.symbols):
            if o.get("clientOrderId") not in known:
                msg = f"open order {o.get('clientOrderId')} ({o.get('side')} {o.get('amount')} {o.get('symbol')}) is not in the store"
                notes.append(msg)
                self.store.add_event(self.id, "reconcile", msg, {"exchange_id": o.get("id")}, actor="reconcile")
        held = await self.exchange.positions(self.config.symbols)
        for s in self.config.symbols:
            mine = self.portfolio.quantity(s)
            if mine > held.get(s, 0.0) * (1 + 1e-9) + 1e-12:
                msg = f"the session holds {mine:g} {s} but the exchange balance is {held.get(s, 0.0):g}"
                notes.append(msg)
                self.store.add_event(self.id, "balance_mismatch", msg, {"symbol": s, "session": mine,
                                                                        "exchange": held.get(s, 0.0)}, actor="reconcile")
        self.store.add_event(self.id, "reconciled", f"reconciled with {self.config.data.exchange}: "
                             f"{len(notes)} differences" if notes else f"reconciled with {self.config.data.exchange}: "
                             "no differences", {"notes": notes[:50]}, actor="reconcile")

    # ---- controls ----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_done)
        return task

    def _side_done(self, task: asyncio.Task[Any]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            self.store.add_event(self.id, "error", f"{type(e).__name__}: {e}; still open: {self._open_summary()}",
                                 actor="exchange")

    def _queue_exits(self, reason: str) -> list[str]:
        """Market sells for every open position without an order in flight; returns the symbols."""
        out = []
        stamp = int(time.time() * 1000)
        busy = {o.symbol for o in self._inflight.values()}
        for s in self._open_symbols():
            if s in busy:
                continue
            q = self.portfolio.quantity(s)
            self._queue_order(Order(f"{s}:{reason}:{stamp}", s, Side.SELL, q, created_at=datetime.now(timezone.utc),
                                    reason=reason))
            out.append(s)
        return out

    async def flatten(self, timeout: float | None = None, reason: str = ex.CLOSE_ALL) -> dict[str, float]:
        """Sell every open position now, retrying while the exchange errors; returns what is still open
        after ``timeout`` seconds (empty when flat)."""
        self._queue_exits(reason)
        deadline = None if timeout is None else time.monotonic() + timeout
        while (self._open_symbols() or self._inflight) and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.05)
            if self._open_symbols() and not self._inflight:
                self._queue_exits(reason)
        return {s: self.portfolio.quantity(s) for s in self._open_symbols()}

    async def cancel_open_orders(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Cancel this session's open orders on the exchange, retrying while it errors (an event each time,
        naming what is still open); returns the canceled orders, or raises TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        once = RetryPolicy(retries=0)
        while True:
            try:
                done = await self.exchange.cancel_all(self.config.symbols, policy=once)
                self.store.add_event(self.id, "cancel_all", f"{len(done)} exchange orders canceled",
                                     {"ids": [o.get("id") for o in done]}, actor="exchange")
                self._wake.set()  # the watcher records the canceled resting orders
                return done
            except Exception as e:
                if not is_transient(e):
                    raise
                d = self.order_policy.delay(attempt, e, self.exchange.exchange)
                attempt += 1
                self.store.add_event(self.id, "exchange_retry", f"cancel_all: {type(e).__name__}; retry {attempt} in "
                                     f"{d:.2f}s; still open: {self._open_summary()}", {"error": type(e).__name__},
                                     actor="exchange")
                if deadline is not None and time.monotonic() + d > deadline:
                    raise TimeoutError(f"cancel_all: the exchange is still failing; still open: {self._open_summary()}") from e
                await asyncio.sleep(d)

    def _do_stop(self, actor: str, reason: str = "") -> str:
        msg = super()._do_stop(actor, reason)
        self._spawn(self.cancel_open_orders())
        sent = self._queue_exits(ex.END)
        return f"{msg}; selling {', '.join(sent) or 'nothing'} now"

    def _do_close_all(self, actor: str) -> str:
        self._require_live("close_all")
        sent = self._queue_exits(ex.CLOSE_ALL)
        return f"closing {', '.join(sent) or 'nothing (flat)'} now; still open: {self._open_summary()}"

    def _do_cancel_all(self, actor: str) -> str:
        self._require_live("cancel_all")
        self._spawn(self.cancel_open_orders())
        return f"canceling this session's open orders on {self.config.data.exchange} (retrying until it answers)"

    def _do_kill(self, actor: str, reason: str = "") -> str:
        msg = super()._do_kill(actor, reason)
        self._spawn(self.cancel_open_orders())
        return f"{msg}; canceling open exchange orders"


def open_session(config: SessionConfig, store: Store, *, resume: str | None = None, exchange: Any = None,
                 credentials: Any = None, arming: Mapping[str, Any] | None = None, **kwargs: Any) -> Session:
    """The right session for ``config``: a :class:`LiveSession` for ``kind='live'`` (needs ``arming``; keys
    from ``credentials`` or :func:`workbench.secrets.load_credentials`), a paper :class:`Session` on a
    :class:`LiveFeed` for ``data.live``, else a replaying :class:`Session`. ``exchange``: an async ccxt
    client to use instead of one made from the config; ``broker_policy``: the broker's :class:`RetryPolicy`.
    ``resume``: an existing session id to resume. Other keywords go to the session class."""
    live = config.kind is SessionKind.LIVE
    if live:
        problem = arming_problem(config, arming)
        if problem:
            raise LiveNotArmed(problem)
    owns = exchange is None and (live or config.data.live)
    if owns:
        if live and credentials is None:
            from workbench.secrets import load_credentials

            credentials = load_credentials(config.data.exchange, config.live.account)
        exchange = make_async_exchange(config.data.exchange, credentials if live else None, sandbox=config.live.sandbox)
    if live:
        policy = kwargs.pop("broker_policy", None)
        broker = CcxtBroker(exchange, policy=policy) if policy is not None else CcxtBroker(exchange)
        kwargs.update(broker=broker, arming=arming, owns_broker=owns)
        cls: type[Session] = LiveSession
    else:
        cls = Session
        if config.data.live and kwargs.get("feed") is None:
            c = config
            kwargs["feed"] = LiveFeed(exchange, c.symbols, c.data.timeframe, poll_seconds=c.live.poll_seconds,
                                      stale_bars=c.live.stale_bars, owns_exchange=owns)
    session = cls.resume(resume, store, **kwargs) if resume is not None else cls(config, store, **kwargs)
    feed = session._feed
    if isinstance(feed, LiveFeed) and feed._session is None:
        feed.attach(session)
    return session
