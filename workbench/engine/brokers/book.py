"""The paper broker on live data with order-book depth (rule 14 of docs/execution-semantics.md).

:class:`BookPaperBroker` is the :class:`~workbench.engine.brokers.paper.PaperBroker` of a paper session on
a live feed whose config has ``depth.model = 'book'``: it keeps each symbol's current L2 book (ccxt
``watch_order_book`` where the client has it, else ``fetch_order_book`` polled every ``poll`` seconds) and

* fills the trader's market orders (entries and exit signals) by walking that book
  (:func:`workbench.execution.depth.walk_book`): the fill price is the VWAP of the levels taken, a buy
  entry is cut to what the cash pays for at those prices plus the taker fee, and what the book cannot fill
  expires (a partial fill). Stop exits keep the bar rule (their level was crossed inside the bar, not at
  the current book), and with no book younger than ``depth.max_age_s`` the bar rule applies too;
* holds resting limit orders to a queue position (:class:`~workbench.execution.depth.QueuePosition`): placed
  behind the size the book shows at their price; a bar that trades through the limit fills as before; a
  bar that only touches it counts its volume as traded at the price (bars do not split volume by price:
  an upper bound), and the order fills only once that volume has passed the queue ahead.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench import execution as ex
from workbench.config import SessionConfig
from workbench.domain import Fill, Order, OrderStatus, OrderType, Side
from workbench.engine.brokers.paper import PaperBroker
from workbench.execution.depth import QueuePosition, affordable, levels, walk_book

log = logging.getLogger(__name__)
__all__ = ["BookPaperBroker"]


class BookPaperBroker(PaperBroker):
    """A paper broker filling market orders against the exchange's current book (see the module docstring).
    ``exchange``: an async ccxt client (not closed here); ``clock``: wall-clock seconds, for the book's age."""

    def __init__(self, config: SessionConfig, exchange: Any, *, poll: float = 1.0,
                 clock: Callable[[], float] = time.time):
        super().__init__(config)
        if config.depth is None or config.depth.model != "book":
            raise ValueError("BookPaperBroker walks books: give the config depth={'model': 'book'}")
        self.exchange, self.poll, self.clock = exchange, float(poll), clock
        self.depth = config.depth
        self.books: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}  # symbol -> (seen at, bids, asks)
        self.queues: dict[str, QueuePosition] = {}  # resting limit order -> its queue position
        self._tasks: list[asyncio.Task[None]] = []

    # ---- the book ------------------------------------------------------------------
    def update_book(self, symbol: str, order_book: dict[str, Any]) -> None:
        """Take ``order_book`` (ccxt's) as ``symbol``'s current book."""
        self.books[symbol] = (self.clock(), levels(order_book.get("bids") or [], "bids"),
                              levels(order_book.get("asks") or [], "asks"))

    def book(self, symbol: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``symbol``'s (bids, asks) if a book younger than ``depth.max_age_s`` is known, else None."""
        got = self.books.get(symbol)
        if got is None or self.clock() - got[0] > self.depth.max_age_s:
            return None
        return got[1], got[2]

    async def _follow(self, symbol: str) -> None:
        watch = getattr(self.exchange, "watch_order_book", None) if self.exchange.has.get("watchOrderBook") else None
        while True:
            try:
                if watch is not None:
                    ob = await watch(symbol, self.depth.levels)
                else:
                    ob = await self.exchange.fetch_order_book(symbol, self.depth.levels)
                self.update_book(symbol, ob)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a missed book only means the bar rule for a while
                log.warning("order book of %s not updated: %s: %s", symbol, type(e).__name__, e)
            if watch is None:
                await asyncio.sleep(self.poll)

    async def start(self) -> None:
        """Start following each symbol's book."""
        await super().start()
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._follow(s), name=f"book {s}") for s in self.config.symbols]

    async def finish(self, *, hand_back: bool = False) -> None:
        """Stop following the books."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        await super().finish(hand_back=hand_back)

    # ---- market orders: walk the book --------------------------------------------------
    def execute(self, order: Order, bar: ex.Bar, cash: float = math.inf) -> Fill | None:
        """A market order without a stop price walks the current book; otherwise (a stop exit, no fresh
        book) the paper broker's bar rule."""
        got = self.book(order.symbol) if order.stop_price is None else None
        if got is None or order.type is not OrderType.MARKET or order.client_id in self or order.status in (
                OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED):
            return super().execute(order, bar, cash)
        bids, asks = got
        side = asks if order.side is Side.BUY else bids
        q = order.remaining
        c = self.config.commission
        if order.side is Side.BUY and order.reason == ex.ENTRY:  # rule 4's cash cap, at the book's prices
            q = affordable(side, q, cash, c.taker, c.fixed)
        walked = walk_book(side, q) if q > ex.MIN_QUANTITY else None
        if walked is None or walked.quantity <= ex.MIN_QUANTITY:
            order.status = OrderStatus.REJECTED
            return None
        fee = ex.fee(walked.notional, c)
        if order.side is Side.SELL and walked.notional - fee < 0.0:
            order.status = OrderStatus.REJECTED
            return None
        order.filled_quantity += walked.quantity
        order.status = OrderStatus.FILLED if order.remaining <= ex.MIN_QUANTITY else OrderStatus.CANCELED
        ref = order.ref_price if order.ref_price is not None else bar.open
        return Fill(
            client_id=order.client_id, symbol=order.symbol, side=order.side, quantity=walked.quantity,
            price=walked.price, commission=fee, slippage=ex.slippage_cost(order.side, walked.quantity, walked.price,
                                                                          ref),
            time=bar.time, fill_id=f"{order.client_id}@{int(bar.time.timestamp())}", reason=order.reason,
        )

    # ---- resting limit orders: queue positions -------------------------------------------
    def rest(self, order: Order) -> Order:
        """Rest ``order``; a limit order joins the queue at its price in the current book (if one is known)."""
        out = super().rest(order)
        got = self.book(order.symbol)
        if order.type is OrderType.LIMIT and got is not None:
            own = got[0] if order.side is Side.BUY else got[1]
            self.queues[order.client_id] = QueuePosition.join(order.side.value, float(order.limit_price or 0.0),
                                                              order.remaining, own)
        return out

    def cancel(self, client_id: str) -> Order | None:
        self.queues.pop(client_id, None)
        return super().cancel(client_id)

    def snapshot(self) -> list[dict[str, Any]]:
        """The paper broker's snapshot; each resting limit order with a queue position keeps its ``queue_ahead``."""
        out = super().snapshot()
        for d in out:
            if (q := self.queues.get(d["client_id"])) is not None:
                d["queue_ahead"] = q.ahead
        return out

    def restore(self, orders: list[dict[str, Any]]) -> None:
        """Replace the book with a :meth:`snapshot`, queue positions included."""
        super().restore([{k: v for k, v in d.items() if k != "queue_ahead"} for d in orders])
        self.queues = {}
        for d in orders:
            if d.get("queue_ahead") is not None and d["client_id"] in self:
                o = self._by_id[d["client_id"]]
                self.queues[o.client_id] = QueuePosition(o.side.value, float(o.limit_price or 0.0), o.remaining,
                                                         float(d["queue_ahead"]))

    def _try_resting(self, order: Order, bar: ex.Bar, cash: float, held: float = math.inf) -> Fill | None:
        queue = self.queues.get(order.client_id)
        if queue is not None and order.type is OrderType.LIMIT:
            touched = bar.low if order.side is Side.BUY else bar.high
            if touched == queue.price and queue.ahead > 0.0:  # only touched: the volume works through the queue
                queue.on_trade(queue.price, bar.volume)
                if queue.ahead > 0.0:
                    return None
        fill = super()._try_resting(order, bar, cash, held)
        if fill is not None and order.status is OrderStatus.FILLED:
            self.queues.pop(order.client_id, None)
        return fill
