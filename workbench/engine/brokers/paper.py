"""The paper broker (:class:`~workbench.engine.brokers.base.Broker`): fills orders against closed bars
with the config's execution model. :meth:`PaperBroker.submit` with a bar is :meth:`execute`, without
one it rests the order; :meth:`PaperBroker.on_bar` fills resting orders; every fill goes to
``on_fill``, orders ending without a fill to ``on_order``.

Two ways in:

* :meth:`PaperBroker.execute` fills a market order now, against this bar: at the open, or at
  ``order.stop_price`` for a stop exit. The session uses it for strategy entries (sized and capped
  at the fill bar by the risk engine, semantics rule 4), exit signals and stop exits, so that a
  paper session reproduces the backtest. No volume rule applies here: the risk check already did.
* :meth:`PaperBroker.rest` rests an order (operator orders, limit orders) until a later bar
  fills it in :meth:`PaperBroker.fill_resting`: market orders at the open, limit orders when the bar
  trades through the limit (buy: low <= limit, at min(open, limit); sell: high >= limit, at
  max(open, limit)), with the maker fee and no slippage. Resting orders obey the volume rule per
  bar: none fill on a bar below ``min_bar_volume``; fills on one bar take at most ``max_share`` of
  its volume together; with ``on_excess='cap'`` an order fills partially and the rest keeps
  resting (partial fills), with ``'skip'`` it waits for a bar that takes all of it. A buy fills
  only what ``cash`` affords; the rest keeps resting.

An order submitted with ``created_at`` fills only on bars that open at or after it (no fills at
prices from before the order existed). Orders are updated in place (status, filled quantity).
Fill ids are ``<client_id>@<bar open, unix seconds>``: deterministic, so a replay after a crash
produces the same ids and the store can drop duplicates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from workbench import execution as ex
from workbench.config import SessionConfig
from workbench.domain import Fill, Order, OrderStatus, OrderType, Side
from workbench.engine.brokers.base import FillSink, OrderSink, ignore_fill, ignore_order
from workbench.execution.codes import EXIT_SIGNAL, LIQUIDATION_CODE, REASONS

if TYPE_CHECKING:
    from workbench.execution.ledger import Portfolio

_DONE = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)
#: reasons of the trader's exits: a buy with one of them covers a short (rule 15)
_COVERS = frozenset(REASONS[EXIT_SIGNAL:LIQUIDATION_CODE + 1])  # signal ... liquidation


class PaperBroker:
    """Resting order book and fill simulation for one paper session."""

    remote = False
    venue = "paper"

    def __init__(self, config: SessionConfig):
        self.config = config
        self.on_fill: FillSink = ignore_fill
        self.on_order: OrderSink = ignore_order
        self._book: dict[str, list[Order]] = {}  # symbol -> resting orders, in submission order
        self._by_id: dict[str, Order] = {}
        self._seen: dict[str, datetime] = {}  # symbol -> the last bar on_bar processed
        self._used: dict[str, tuple[datetime, float]] = {}  # symbol -> (bar, volume filled on it)

    # ---- the protocol ------------------------------------------------------------
    def submit(self, order: Order, bar: ex.Bar | None = None, cash: float = math.inf) -> Order:
        """With ``bar``: :meth:`execute` now, the fill to ``on_fill`` (a rejection to ``on_order``);
        without: :meth:`rest` until a later bar fills it."""
        if bar is None:
            return self.rest(order)
        fill = self.execute(order, bar, cash)
        if fill is None:
            self.on_order(order, f"{order.side.value} {order.symbol} not filled by the broker ({order.reason})")
        else:
            self.on_fill(fill, order)
        return order

    def on_bar(self, bars: Mapping[str, ex.Bar], portfolio: Portfolio) -> None:
        """Fill resting orders on this bar time's bars (:meth:`fill_resting`, cash and position from
        ``portfolio`` as each fill is booked); resting sells left with no position to sell are canceled."""
        if not self._by_id:
            return
        for s, b in bars.items():
            book = self._book.get(s)
            if not book:
                continue
            by_id = {o.client_id: o for o in book}
            for fill in self.fill_resting(s, b, cash=portfolio.cash, held=portfolio.quantity(s)):
                self.on_fill(fill, by_id[fill.client_id])
            if portfolio.position(s) is None:
                for o in [o for o in book if o.side is Side.SELL]:
                    self.cancel(o.client_id)
                    self.on_order(o, f"sell {o.client_id} of {s} canceled: no position left to sell (long-only)")

    def busy(self, symbol: str) -> bool:
        """Paper orders fill at once: never in flight."""
        return False

    def exit_now(self, reason: str) -> list[str]:
        """Nothing fills between bars: the trader flattens at the next bar's open. Returns []."""
        return []

    def end_run(self) -> list[Order]:
        """The run ended: resting orders end with it (canceled; returned)."""
        return self.cancel_all()

    def describe(self, order: Order) -> str:
        """How a placed operator order is reported."""
        what = f"{order.side.value} {order.quantity:g} {order.symbol} {order.type.value}"
        return f"order {order.client_id} resting: {what}" + (f" @ {order.limit_price:g}" if order.limit_price else "")

    def attach(self, session_id: str, portfolio: Portfolio) -> None:
        """Nothing to wire: fills go through ``on_fill``."""

    async def start(self) -> None:
        """Nothing to connect or reconcile."""

    async def finish(self, *, hand_back: bool = False) -> None:
        """Nothing in flight at the end; resting orders went with :meth:`end_run`, or on a hand-back stay in
        the runner state (:meth:`snapshot`)."""

    # ---- order book --------------------------------------------------------------
    def rest(self, order: Order) -> Order:
        """Rest ``order`` until a bar fills it. Raises ValueError for a bad or duplicate order."""
        if order.client_id in self._by_id:
            raise ValueError(f"order {order.client_id!r} is already open")
        if not order.remaining > 0.0:
            raise ValueError(f"order {order.client_id!r} has nothing left to fill (quantity {order.quantity})")
        if order.type is OrderType.LIMIT and not (order.limit_price or 0.0) > 0.0:
            raise ValueError(f"limit order {order.client_id!r} needs a positive limit_price")
        if order.status in _DONE:
            raise ValueError(f"order {order.client_id!r} is {order.status.value}")
        self._book.setdefault(order.symbol, []).append(order)
        self._by_id[order.client_id] = order
        return order

    def cancel(self, client_id: str) -> Order | None:
        """Cancel a resting order; returns it, or None if no such order is open."""
        order = self._by_id.pop(client_id, None)
        if order is None:
            return None
        self._book[order.symbol].remove(order)
        order.status = OrderStatus.CANCELED
        return order

    def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Cancel every resting order (of ``symbol``, if given); returns them."""
        out = [self.cancel(o.client_id) for o in self.open_orders(symbol)]
        return [o for o in out if o is not None]

    def __contains__(self, client_id: object) -> bool:
        """Is an order with this client id resting?"""
        return client_id in self._by_id

    @property
    def has_open_orders(self) -> bool:
        return bool(self._by_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Resting orders in submission order."""
        if symbol is not None:
            return list(self._book.get(symbol, ()))
        return list(self._by_id.values())

    # ---- crash recovery --------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """The resting orders, JSON-able, in submission order."""
        return [{"client_id": o.client_id, "symbol": o.symbol, "side": o.side.value, "quantity": o.quantity,
                 "type": o.type.value, "limit_price": o.limit_price, "status": o.status.value,
                 "filled_quantity": o.filled_quantity, "created_at": o.created_at, "reason": o.reason}
                for o in self._by_id.values()]

    def restore(self, orders: list[dict[str, Any]]) -> None:
        """Replace the book with a :meth:`snapshot` (the per-bar volume bookkeeping starts afresh)."""
        self._book, self._by_id, self._seen, self._used = {}, {}, {}, {}
        for d in orders:
            created = d["created_at"]
            self.rest(Order(
                d["client_id"], d["symbol"], Side(d["side"]), float(d["quantity"]), type=OrderType(d["type"]),
                limit_price=d["limit_price"], status=OrderStatus(d["status"]),
                filled_quantity=float(d["filled_quantity"]),
                created_at=datetime.fromisoformat(created) if isinstance(created, str) else created, reason=d["reason"],
            ))

    # ---- fills ---------------------------------------------------------------------
    def execute(self, order: Order, bar: ex.Bar, cash: float = math.inf) -> Fill | None:
        """Fill market ``order`` on ``bar`` now, at the open or ``order.stop_price``, with slippage and the
        taker fee. A buy is reduced to what ``cash`` affords (the rest is canceled), except a short's cover
        (an exit reason); a buy that affords nothing, or a sell of a holding whose fees exceed its proceeds, is
        REJECTED and returns None."""
        if order.client_id in self._by_id or order.status in _DONE:
            raise ValueError(f"order {order.client_id!r} is resting or done; execute takes a new order")
        if order.type is not OrderType.MARKET:
            raise ValueError(f"execute takes market orders; submit limit order {order.client_id!r} instead")
        ref = bar.open if order.stop_price is None else order.stop_price
        q = order.remaining
        if order.side is Side.BUY and order.reason not in _COVERS:  # a short's cover is never cut
            q = ex.affordable_quantity(q, ref, bar.volume, cash, self.config.commission, self.config.slippage)
        fill = self._fill(order, bar, q, ref, limit=False) if q > ex.MIN_QUANTITY else None
        if fill is None:
            order.status = OrderStatus.REJECTED
            return None
        if order.status is OrderStatus.PARTIALLY_FILLED:
            order.status = OrderStatus.CANCELED  # the unaffordable rest
        return fill

    def fill_resting(self, symbol: str, bar: ex.Bar, cash: float = math.inf, held: float = math.inf) -> list[Fill]:
        """Fill resting orders of ``symbol`` on ``bar``: sells first, then buys, each in submission order.
        Sells fill at most ``held`` (the position, long-only) together; the rest keeps resting. A bar
        already processed for ``symbol`` is ignored."""
        if self._seen.get(symbol) == bar.time:
            return []
        self._seen[symbol] = bar.time
        book = self._book.get(symbol)
        if not book or bar.volume < self.config.volume.min_bar_volume:
            return []
        fills: list[Fill] = []
        for side in (Side.SELL, Side.BUY):
            for order in [o for o in book if o.side is side]:
                if order.created_at is not None and order.created_at > bar.time:
                    continue
                fill = self._try_resting(order, bar, cash, held)
                if fill is None:
                    continue
                notional = fill.quantity * fill.price
                cash += notional - fill.commission if side is Side.SELL else -(notional + fill.commission)
                if side is Side.SELL:
                    held -= fill.quantity
                fills.append(fill)
                if order.status is OrderStatus.FILLED:
                    book.remove(order)
                    del self._by_id[order.client_id]
        return fills

    def _try_resting(self, order: Order, bar: ex.Bar, cash: float, held: float = math.inf) -> Fill | None:
        limit = order.type is OrderType.LIMIT
        lp = cast(float, order.limit_price)  # set on every limit order (rest() checks it)
        if not limit:
            ref = bar.open
        elif order.side is Side.BUY:
            if bar.low > lp:
                return None
            ref = min(bar.open, lp)
        else:
            if bar.high < lp:
                return None
            ref = max(bar.open, lp)
        vr = self.config.volume
        room = vr.max_share * bar.volume - self._volume_used(order.symbol, bar.time)
        q = order.remaining
        if q > room:
            if vr.on_excess == "skip":
                return None
            q = room
        if order.side is Side.BUY:
            q = ex.affordable_quantity(q, ref, bar.volume, cash, self.config.commission, self.config.slippage,
                                       maker=limit)
        elif q > held:
            q = held
        if q <= ex.MIN_QUANTITY:
            return None
        return self._fill(order, bar, q, ref, limit)

    def _volume_used(self, symbol: str, t: datetime) -> float:
        used = self._used.get(symbol)
        return used[1] if used is not None and used[0] == t else 0.0

    def _fill(self, order: Order, bar: ex.Bar, q: float, ref: float, limit: bool) -> Fill | None:
        price = ref if limit else ex.fill_price(order.side, ref, q, bar.volume, self.config.slippage)
        commission = ex.fee(q * price, self.config.commission, maker=limit)
        if order.side is Side.SELL and order.reason != ex.ENTRY and q * price - commission < 0.0:
            return None  # fees exceed the proceeds of selling a holding (a short's opening sell is not refused)
        self._used[order.symbol] = (bar.time, self._volume_used(order.symbol, bar.time) + q)
        order.filled_quantity += q
        order.status = OrderStatus.FILLED if order.remaining <= ex.MIN_QUANTITY else OrderStatus.PARTIALLY_FILLED
        return Fill(
            client_id=order.client_id, symbol=order.symbol, side=order.side, quantity=q, price=price,
            commission=commission, slippage=ex.slippage_cost(order.side, q, price, ref), time=bar.time,
            fill_id=f"{order.client_id}@{int(bar.time.timestamp())}", reason=order.reason,
        )
