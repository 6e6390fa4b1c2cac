"""Limit orders resting on the exchange, for :class:`~workbench.engine.brokers.exchange.ExchangeBroker`.

* A watcher task polls the session's open orders (one request per symbol holding resting orders, every
  ``resting_poll`` s and when woken: after each bar, a new limit order, a cancel-all) and applies new
  fills once each; an order that closed is recorded (canceled: an ``order_canceled`` event) and no
  longer followed.
* :meth:`RestingOrders.adopt` takes over an order left resting by an earlier runner (reconciliation at
  start and resume): fills made while no runner ran are applied once, an order canceled meanwhile is
  recorded as canceled, one still open rests on under the watcher.
* Cancels (:meth:`RestingOrders.cancel_resting`) retry while the exchange errors; at the end of a run
  :meth:`RestingOrders.end_resting` cancels what still rests. A hand-back cancels nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import ccxt

from workbench.domain import Fill, Order, OrderStatus
from workbench.engine.ccxt_broker import CcxtBroker, order_status
from workbench.retry import RetryPolicy
from workbench.store import Store

OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class RestingOrders:
    """The resting-order half of the exchange broker (a mixin: it uses the broker's client, store,
    events and :meth:`apply_fills`). See the module docstring."""

    client: CcxtBroker
    store: Store
    session_id: str
    venue: str
    fill_timeout: float
    resting_poll: float
    order_policy: RetryPolicy
    resting: dict[str, Order]  # limit orders acknowledged by the exchange, not closed
    cancel_asked: set[str]  # limit orders to cancel as soon as the exchange acknowledges them
    _wake: asyncio.Event

    if TYPE_CHECKING:
        def apply_fills(self, order: Order, fills: list[Fill]) -> int: ...

        def open_summary(self) -> str: ...

        def _event(self, kind: str, message: str, data: dict[str, Any] | None = None,
                   actor: str = "exchange") -> None: ...

    async def _watch_resting(self) -> None:
        """Every ``resting_poll`` seconds, or when woken (a bar, a new limit order), sync resting orders."""
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: on Python 3.11 wait_for
                async with asyncio.timeout(self.resting_poll):  # loses a cancel that lands as the wait ends
                    await self._wake.wait()
            self._wake.clear()
            if not self.resting:
                continue
            try:
                await self.sync_resting_orders()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the client already retried; try again at the next round
                self._event("error", f"resting orders not synced: {type(e).__name__}: {e}; "
                            f"still open: {self.open_summary()}")

    async def sync_resting_orders(self) -> int:
        """Compare the resting operator orders with the exchange (one open-orders request per symbol);
        apply new fills once each and record orders that closed. Returns how many fills were new."""
        n = 0
        for symbol in sorted({o.symbol for o in self.resting.values()}):
            rows = {o.get("clientOrderId"): o for o in await self.client.open_orders([symbol])}
            for order in [o for o in self.resting.values() if o.symbol == symbol]:
                if order.client_id not in self.resting:
                    continue  # closed meanwhile (a cancel)
                row = rows.get(self.client.client_order_id(order))
                if row is not None and float(row.get("filled") or 0.0) <= order.filled_quantity * (1 + 1e-9):
                    continue  # still resting, nothing new
                res = row if row is not None else await self.client.fetch(order, {"id": order.exchange_id})
                n += await self._sync_order(order, res)
        return n

    async def adopt(self, order: Order, res: dict[str, Any]) -> int:
        """Take over a limit order an earlier runner left open (``res``: the exchange's view of it): apply
        its fills not applied yet, record it if it closed meanwhile (canceled: an ``order_canceled`` event),
        else follow it under the watcher. Returns the new fills."""
        order.exchange_id = str(res.get("id"))
        self.resting[order.client_id] = order
        n = await self._sync_order(order, res)
        self._wake.set()
        return n

    async def _sync_order(self, order: Order, res: dict[str, Any]) -> int:
        """Apply the fills of ``order`` (exchange view ``res``) not applied yet; once it is closed and all its
        trades are in, record the final status and stop following it. Returns the new fills."""
        filled = float(res.get("filled") or 0.0)
        fills = await self.client.fills(order, res) if filled > 0.0 else []
        n = self.apply_fills(order, fills)
        complete = sum(f.quantity for f in fills) >= filled * (1 - 1e-9)
        status = order_status(res)
        if status not in OPEN and not complete:
            status = OrderStatus.PARTIALLY_FILLED  # trades lag the order: look again at the next round
        if order.client_id in self.resting:
            order.status = status
            order.filled_quantity = max(order.filled_quantity, min(filled, order.quantity))
            if status not in OPEN:
                self.resting.pop(order.client_id, None)
                self.cancel_asked.discard(order.client_id)
                if status is OrderStatus.CANCELED:
                    self._event("order_canceled", f"order {order.client_id} canceled on {self.venue} "
                                f"({order.filled_quantity:g} of {order.quantity:g} filled)",
                                {"client_id": order.client_id})
            if n or status not in OPEN:
                self.store.upsert_order(self.session_id, order)
        return n

    async def cancel_resting(self, order: Order, why: str) -> None:
        """Cancel a resting order on the exchange (retrying while it errors), then record its final state
        and any fills it had before (a fill racing the cancel is applied, once)."""
        if order.exchange_id is None:
            return
        try:
            res = await self.client.call("cancel_order", order.exchange_id, order.symbol,
                                         self.client.order_params(order), policy=self.order_policy)
        except ccxt.OrderNotFound:
            res = None  # no longer open there (filled or canceled meanwhile): fetch below says which
        if res is None or float(res.get("filled") or 0.0) > order.filled_quantity:
            res = await self.client.fetch(order, {"id": order.exchange_id})
        deadline = time.monotonic() + self.fill_timeout
        while True:
            await self._sync_order(order, res)
            if order.client_id not in self.resting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # closed, but its trades are not all visible yet
            res = await self.client.fetch(order, {"id": order.exchange_id})
        self._event("control", f"order {order.client_id}: {why}; it is {order.status.value}",
                    {"client_id": order.client_id})

    async def end_resting(self) -> None:
        """At the run's end: cancel what still rests on the exchange (like paper, resting orders end with
        the run), recording each final state; leftovers after ``fill_timeout`` are reported."""
        if not self.resting:
            return
        tasks = [asyncio.ensure_future(self.cancel_resting(o, "canceled: the run ended"))
                 for o in list(self.resting.values())]
        done, pending = await asyncio.wait(tasks, timeout=self.fill_timeout)
        for t in pending:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                self._event("error", f"resting order not canceled at the end: {type(t.exception()).__name__}: "
                            f"{t.exception()}")
        if self.resting:
            self._event("error", f"orders still resting on {self.venue} after the end: {self.open_summary()}; "
                        "resume the session to reconcile them")
