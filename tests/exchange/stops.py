"""Binance spot stop orders on the loopback exchange: ``STOP_LOSS_LIMIT`` and ``TAKE_PROFIT_LIMIT``
(what ccxt's ``binance.create_order(..., 'limit', ..., params={'stopLossPrice'|'takeProfitPrice': p})``
sends), and intrabar trades.

Binance's rules, as the matching engine applies them here:

* The order needs ``quantity``, ``price`` (the limit), ``stopPrice`` and ``timeInForce``; one whose stop
  the current price has already reached is refused (-2010 "Order would trigger immediately."). A
  symbol's ``orderTypes`` in exchangeInfo list the stop types unless the test removed them
  (:meth:`StopControls.without_stops`); then such an order is refused (-1116).
* Until triggered it rests without working (``isWorking`` false) and locks its funds like a limit order.
  A sell stop loss (buy take profit) triggers when the price trades at or below its stop, a sell take
  profit (buy stop loss) at or above it: on a completed bar (at the open if the bar opened beyond the
  stop, else at the stop) or on an intrabar trade (:meth:`StopControls.trade`). Triggered, it is a
  limit order: if its limit is marketable at the trigger price it fills there at once (taker), else it
  rests at its limit like any limit order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .matching import BinanceError, HasBook

if TYPE_CHECKING:
    from .matching import Book, ExOrder

TYPES = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
OPEN = ("NEW", "PARTIALLY_FILLED")


def _triggers_up(side: str, otype: str) -> bool:
    """Does this stop trigger on a rise (sell take profit, buy stop loss)?"""
    return (side == "SELL") == (otype == "TAKE_PROFIT_LIMIT")


def stop_price(book: Book, symbol: str, side: str, otype: str, p: dict[str, str]) -> float:
    """The checked ``stopPrice`` of a new order of type ``otype`` (0.0 for a non-stop type)."""
    if otype not in TYPES:
        return 0.0
    if symbol in book.no_stops:
        raise BinanceError(-1116, "Invalid orderType.")
    try:
        stop = float(p["stopPrice"])
    except (KeyError, ValueError):
        raise BinanceError(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                                  "or malformed.") from None
    if p.get("timeInForce") not in ("GTC", "IOC", "FOK"):
        raise BinanceError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, "
                                  "or malformed.")
    if not stop > 0:
        raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
    now = book.price(symbol)
    if (now >= stop) if _triggers_up(side, otype) else (now <= stop):
        raise BinanceError(-2010, "Order would trigger immediately.")
    return stop


def _trigger(book: Book, o: ExOrder, at: float) -> None:
    """Trigger ``o`` at price ``at``: it works as a limit order from now, filling at once if marketable."""
    o.triggered = True
    o.update_time = book.stamp()
    if (at >= o.price) if o.side == "SELL" else (at <= o.price):
        book._fill(o, o.quantity - o.executed, at, maker=False)


def waiting(book: Book, o: ExOrder, row: Any) -> bool:
    """On the completed bar ``row`` (o, h, l, c, v): trigger ``o`` if it is a stop the bar reached. True if
    the bar is done with ``o`` (a stop still waiting, or triggered and filled), False if it works as a
    limit order against this bar (a plain limit, or a stop triggered but not marketable)."""
    if o.type not in TYPES or o.triggered:
        return False
    op, h, lo = float(row[0]), float(row[1]), float(row[2])
    if _triggers_up(o.side, o.type):
        at = op if op >= o.stop_price else o.stop_price if h >= o.stop_price else None
    else:
        at = op if op <= o.stop_price else o.stop_price if lo <= o.stop_price else None
    if at is None:
        return True
    _trigger(book, o, at)
    return o.status not in OPEN


class StopControls(HasBook):
    """Test controls of the loopback exchange (a mixin of ``LoopbackExchange``): intrabar trades and
    markets without stop order types."""

    _market_id: Any

    def without_stops(self, symbol: str) -> None:
        """``symbol``'s market lists no stop order types (exchangeInfo ``orderTypes``) and refuses them."""
        self.book.no_stops.add(self._market_id(symbol))

    def trade(self, symbol: str, price: float) -> None:
        """A trade at ``price`` inside the forming bar: the current price (ticker, market orders) is ``price``
        until the bar completes; stops it reaches trigger, resting limits it reaches fill at their limit."""
        book, sid = self.book, self._market_id(symbol)
        with book.lock:
            book.last[sid] = float(price)
            if book.perp is not None and sid in book.perp.symbols:  # the perpetual's conditional orders and
                book.perp.on_price(sid, float(price))  # liquidations too
            for o in [o for o in book.orders.values() if o.symbol == sid and o.status in OPEN]:
                if o.type in TYPES and not o.triggered:
                    if (price >= o.stop_price) if _triggers_up(o.side, o.type) else (price <= o.stop_price):
                        _trigger(book, o, price)
                elif (price >= o.price) if o.side == "SELL" else (price <= o.price):
                    book._fill(o, o.quantity - o.executed, o.price, maker=True)
