"""Sending a session's orders to the exchange and settling them, for
:class:`~workbench.engine.brokers.exchange.ExchangeBroker` (a mixin).

* :meth:`OrderPlacement._queue_order` rounds an order to the lot size (too small: rejected, never sent) and
  hands it to the one worker task, which writes it to the store (status new; off the event loop) and only
  then sends it through the client (idempotent client ids, lookup before any resend). A refusal is an
  ``order_rejected`` event that counts toward the breaker.
* A market order is settled: waited for (up to ``fill_timeout``) until it closes, then its exchange fills are
  reported through ``on_fill`` once each (fill ids ``<exchange>:<trade id>``) and stored. A limit order
  rests: the watcher (:mod:`~workbench.engine.brokers.resting`) follows it.
* Sells: a strategy or stop exit of a spot symbol first cancels resting operator sells of it (they lock the
  coins) and sells at most what is still held; an operator sell first releases the symbol's protective
  order (:mod:`~workbench.engine.brokers.protect`). A perpetual's close is sent reduce-only.
"""
from __future__ import annotations

import asyncio
import copy
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import ccxt

from workbench import execution as ex
from workbench.config import is_perp
from workbench.diagnostics.orderflow import ACKED, SENT, step_event
from workbench.domain import Fill, Order, OrderStatus, OrderType, Side
from workbench.engine.brokers.base import FillSink
from workbench.engine.brokers.resting import OPEN
from workbench.engine.ccxt_broker import CcxtBroker, order_status
from workbench.retry import RetryPolicy, is_transient
from workbench.store import Store

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio

OPERATOR = "operator"  # the reason of operator orders


class OrderPlacement:
    """The sending half of the exchange broker (a mixin: it uses the broker's client, store, events, resting
    orders and protection). See the module docstring."""

    client: CcxtBroker
    store: Store
    session_id: str
    venue: str
    fill_timeout: float
    order_policy: RetryPolicy
    on_fill: FillSink
    queue: asyncio.Queue[Order]
    inflight: dict[str, Order]  # sent or queued, not closed
    resting: dict[str, Order]  # limit orders acknowledged by the exchange, not closed
    cancel_asked: set[str]  # limit orders to cancel as soon as the exchange acknowledges them
    applied: set[str]  # fill ids booked
    fees_paid: dict[str, tuple[float, float]]  # third fee asset -> (amount, quote booked), this run
    _wake: asyncio.Event

    if TYPE_CHECKING:
        @property
        def pf(self) -> Portfolio: ...

        def _event(self, kind: str, message: str, data: dict[str, Any] | None = None,
                   actor: str = "exchange") -> None: ...

        def _refused(self, order: Order, why: str) -> None: ...

        def spawn(self, coro: Any) -> asyncio.Task[Any]: ...

        def open_orders(self, symbol: str | None = None) -> list[Order]: ...

        async def cancel_resting(self, order: Order, why: str) -> None: ...

        async def release_protection(self, symbol: str) -> None: ...

        @staticmethod
        def is_protective(order: Order) -> bool: ...

    def _queue_order(self, order: Order) -> None:
        """Round to the lot size, write ahead to the store, and hand to the worker (or reject if too small)."""
        try:
            q = self.client.amount(order.symbol, order.quantity)
        except Exception:
            q = 0.0
        if not q > 0.0 or q < self.client.min_amount(order.symbol):
            order.status = OrderStatus.REJECTED
            self.store.upsert_order(self.session_id, order)
            self._event("order_rejected", f"{order.side.value} {order.quantity:g} {order.symbol} is below the "
                        f"exchange's lot size ({order.reason}); not sent", {"client_id": order.client_id}, "broker")
            self._refused(order, "lot_size")
            return
        order.quantity = q
        if order.created_at is None:
            order.created_at = datetime.now(timezone.utc)
        self.inflight[order.client_id] = order  # written ahead by the worker, before it is sent
        self.queue.put_nowait(order)

    async def _work(self) -> None:
        while True:
            order = await self.queue.get()
            try:
                await self._send(order)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._event("error", f"order {order.client_id}: {type(e).__name__}: {e}",
                            {"client_id": order.client_id})
            finally:
                if order.status not in OPEN or order.exchange_id is None:
                    self.inflight.pop(order.client_id, None)

    async def _store_order(self, order: Order, sent: datetime | None = None, acked: datetime | None = None) -> None:
        """Upsert the order as it is now, off the event loop (a store lock never stalls the bars), with the
        order flow's events of when it was ``sent`` and ``acked`` if given (workbench.diagnostics.orderflow)."""
        snap = copy.copy(order)

        def write() -> None:
            self.store.upsert_order(self.session_id, snap)
            for kind, at in ((SENT, sent), (ACKED, acked)):
                if at is not None:
                    self.store.add_event(self.session_id, *step_event(snap, kind, at), actor="broker")

        await asyncio.to_thread(write)

    async def _send(self, order: Order) -> None:
        await self._store_order(order)  # write-ahead: a crash after this is reconciled by client id
        perp = is_perp(order.symbol)
        if (order.side is Side.SELL and order.reason != OPERATOR and not perp
                and not await self._make_room_to_sell(order)):
            return
        if order.side is Side.SELL and order.reason == OPERATOR:
            await self.release_protection(order.symbol)  # its stop locks the coins (brokers/protect.py)
        sent = datetime.now(timezone.utc)
        try:
            reduce = perp and self.client.reduce_only(order, self.pf.quantity(order.symbol))
            res = await self.client.submit(order, policy=self.order_policy, params={"reduceOnly": True} if reduce
                                           else None)
        except ccxt.BaseError as e:
            if is_transient(e):
                raise
            order.status = OrderStatus.REJECTED
            await self._store_order(order, sent)
            self._event("order_rejected", f"{order.side.value} {order.quantity:g} {order.symbol} refused by "
                        f"{self.venue} ({type(e).__name__}): {e}", {"client_id": order.client_id,
                                                                    "error": type(e).__name__})
            self._refused(order, type(e).__name__)
            return
        order.exchange_id = str(res.get("id"))
        await self._store_order(order, sent, datetime.now(timezone.utc))
        if order.type is OrderType.LIMIT:  # rests on the exchange: the watcher picks up its fills
            self.inflight.pop(order.client_id, None)
            self.resting[order.client_id] = order
            if order.client_id in self.cancel_asked:
                self.spawn(self.cancel_resting(order, "canceled before the exchange acknowledged it"))
            self._wake.set()
            return
        await self.settle(order, res)

    async def settle(self, order: Order, res: dict[str, Any]) -> None:
        """Wait (up to ``fill_timeout``) for the order to close, then apply its fills once each."""
        deadline = time.monotonic() + self.fill_timeout
        while order_status(res) in OPEN and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            res = await self.client.fetch(order, res)
        filled = float(res.get("filled") or 0.0)
        fills = await self.client.fills(order, res)
        while sum(f.quantity for f in fills) < filled * (1 - 1e-9) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # trades can show up a moment after the order closes
            fills = await self.client.fills(order, res)
        self.apply_fills(order, fills)
        order.status = order_status(res)
        order.filled_quantity = filled
        await self._store_order(order)

    def apply_fills(self, order: Order, fills: list[Fill]) -> int:
        """Report fills not applied yet (``on_fill`` books them) and store each; returns how many were new."""
        n = 0
        for f in fills:
            if f.fill_id in self.applied:
                continue
            if order.ref_price is not None:  # slippage against the decision price (0 if unknown, e.g. resumed)
                f.slippage = ex.slippage_cost(f.side, f.quantity, f.price, order.ref_price)
            paid = self.client.third_fees.pop(f.fill_id, None)
            if paid is not None:  # a fee in a third asset (BNB): reconciliation expects it out of that asset
                asset, amount = paid
                spent = self.fees_paid.get(asset, (0.0, 0.0))
                self.fees_paid[asset] = (spent[0] + amount, spent[1] + f.commission)
            self.on_fill(f, order)
            self.applied.add(f.fill_id)
            order.filled_quantity = min(order.quantity, order.filled_quantity + f.quantity)
            self.store.add_fill(self.session_id, f, order=order, position=self.pf.positions[f.symbol])
            n += 1
        return n

    async def settle_and_release(self, order: Order, res: dict[str, Any]) -> None:
        try:
            await self.settle(order, res)
        finally:
            if order.status not in OPEN:
                self.inflight.pop(order.client_id, None)

    def _committed_sells(self, symbol: str) -> float:
        """What open (in-flight or resting) sells of ``symbol`` still have to sell."""
        return sum(o.remaining for o in self.open_orders(symbol) if o.side is Side.SELL and not self.is_protective(o))

    async def _make_room_to_sell(self, order: Order) -> bool:
        """A strategy/stop/stop-session sell takes the position: cancel resting operator sells of the symbol
        first (they lock the coins), then sell at most what is still held. False: nothing left to sell."""
        resting = [o for o in self.resting.values() if o.symbol == order.symbol and o.side is Side.SELL]
        if not resting:
            return True
        for o in resting:
            await self.cancel_resting(o, f"canceled: the {order.reason} exit sells the position")
        q = self.client.amount(order.symbol, min(order.quantity, self.pf.quantity(order.symbol)))
        if not q > 0.0 or q < self.client.min_amount(order.symbol):
            order.status = OrderStatus.CANCELED
            self.store.upsert_order(self.session_id, order)
            self._event("order_canceled", f"{order.reason} exit of {order.symbol} not sent: the resting sells it "
                        "canceled had sold the position", {"client_id": order.client_id}, "broker")
            return False
        order.quantity = q
        return True
