"""The broker protocol: what the trader and the session need from a paper or an exchange broker.

Orders go in through :meth:`Broker.submit`: with the bar they act on (the trader's strategy and
stop orders: fill now against it), or without (operator orders: rest until a later bar, or go to
the exchange at once). Every fill comes back through ONE callback, ``broker.on_fill(fill, order)``,
which the trader registers (it books the fill, then hands it on to the session); orders that end
without a fill (rejected, canceled by the broker) come back through ``broker.on_order(order, why)``.
A paper broker calls them synchronously, inside ``submit``/``on_bar``; an exchange broker calls them
later, from its worker task, between bars.

A run ends with :meth:`Broker.finish`: the session's end cancels what rests; a hand-back (the host shuts
down, the session goes on under the next runner) cancels nothing and leaves resting orders to the next
runner's :meth:`Broker.start`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from workbench.domain import Fill, Order
from workbench.execution import Bar

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio

FillSink = Callable[[Fill, Order], None]
OrderSink = Callable[[Order, str], None]


def ignore_fill(fill: Fill, order: Order) -> None:
    """The callbacks before anyone registers."""


def ignore_order(order: Order, why: str) -> None:
    """The callbacks before anyone registers."""


@runtime_checkable
class Broker(Protocol):
    """Submit, cancel, cancel all, per-bar work and open orders; fills through ``on_fill``."""

    on_fill: FillSink  # every fill, once, in booking order
    on_order: OrderSink  # an order ended without (more) fills: rejected or canceled by the broker
    #: orders live on an exchange: the broker writes its orders and fills to the store itself
    #: (write-ahead) and acts asynchronously; else the session queues them for its next checkpoint
    remote: bool
    venue: str  # "paper" or the exchange id, for messages

    def submit(self, order: Order, bar: Bar | None = None, cash: float = math.inf) -> Order:
        """Send ``order``: with ``bar``, a market order acting on that bar (paper: fills now at its open
        or ``order.stop_price``, buys capped by ``cash``); without, an operator order (rests)."""
        ...

    def cancel(self, client_id: str) -> Order | None:
        """Cancel one open order by client id; None if there is no such open order."""
        ...

    def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Cancel every open order (of ``symbol``); returns them."""
        ...

    def on_bar(self, bars: Mapping[str, Bar], portfolio: Portfolio) -> None:
        """After the trader's exits and entries of a bar time: work resting orders (paper: fill them)."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open (resting or in-flight) orders, in submission order."""
        ...

    def busy(self, symbol: str) -> bool:
        """Is an order of ``symbol`` in flight (the trader then sends no second one)?"""
        ...

    def exit_now(self, reason: str) -> list[str]:
        """Sell every open position now if the broker can between bars (exchange); returns the symbols
        (paper: [], the trader flattens at the next bar's open)."""
        ...

    def end_run(self) -> list[Order]:
        """The session ended (not on a hand-back): cancel resting orders now if the broker can; returns
        the canceled orders."""
        ...

    def describe(self, order: Order) -> str:
        """How a placed operator order is reported (the command's message)."""
        ...

    def __contains__(self, client_id: object) -> bool:
        """Is an order with this client id open?"""
        ...

    def attach(self, session_id: str, portfolio: Portfolio) -> None:
        """Wire to the session that runs it (exchange: client ids and events need the session id)."""
        ...

    async def start(self) -> None:
        """Before the first bar (exchange: start the order tasks and reconcile with the store)."""
        ...

    async def finish(self, *, hand_back: bool = False) -> None:
        """After the run, once. Always: orders in flight settle (their fills booked through ``on_fill``;
        bounded, leftovers reported for the next start to reconcile), the broker's tasks stop, its own
        connections close. Then either the session ended (``hand_back=False``: stop, kill, feed end,
        failure): resting orders are canceled (exchange; paper's went with :meth:`end_run`); or only this
        runner ends (``hand_back=True``: a host shutting down): nothing is canceled, resting orders stay
        on the exchange and in the runner state (:meth:`snapshot`) for the next runner, whose
        :meth:`start` adopts them."""
        ...

    def snapshot(self) -> list[dict[str, Any]]:
        """What the runner state keeps of the open orders (JSON-able)."""
        ...

    def restore(self, orders: list[dict[str, Any]]) -> None:
        """Replace the open orders with a :meth:`snapshot`."""
        ...
