"""Binance spot stop orders on the loopback exchange: ``STOP_LOSS_LIMIT`` and ``TAKE_PROFIT_LIMIT`` (what
ccxt's ``binance.create_order(..., 'limit', ..., params={'stopLossPrice'|'takeProfitPrice': p})`` sends),
``STOP_LOSS`` and ``TAKE_PROFIT`` (the same with ``'market'``), trailing stops (``trailingDelta``: ccxt's
``trailingPercent``), and intrabar trades.

Binance's rules, as the matching engine applies them here:

* The order needs ``quantity`` and ``stopPrice``; the ``*_LIMIT`` types also ``price`` (the limit) and
  ``timeInForce``. One whose stop the current price has already reached is refused (-2010 "Order would
  trigger immediately."). A symbol's ``orderTypes`` in exchangeInfo list the stop types unless the test
  removed them (:meth:`StopControls.without_stops`); then such an order is refused (-1116).
* Until triggered it rests without working (``isWorking`` false) and locks its funds like a limit order (a
  market stop buy: at its stop price).
  A sell stop loss (buy take profit) triggers when the price trades at or below its stop, a sell take
  profit (buy stop loss) at or above it: on a completed bar (at the open if the bar opened beyond the
  stop, else at the stop) or on an intrabar trade (:meth:`StopControls.trade`). Triggered, a
  ``STOP_LOSS``/``TAKE_PROFIT`` is a market order, filled there at once (taker); a ``*_LIMIT`` is a limit
  order: if its limit is marketable at the trigger price it fills there at once (taker), else it rests at
  its limit like any limit order.
* A trailing stop (any of these types with ``trailingDelta``, in BIPS within the ``TRAILING_DELTA`` filter,
  else -1013) may omit ``stopPrice``: then it tracks prices from where it was placed, else from when the price
  first meets its stop price condition (as the stop would trigger). A sell triggers after a fall of
  ``trailingDelta`` from the highest price tracked, a buy after a rise from the lowest (Binance's trailing
  stop FAQ; trail.py walks the prices).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .matching import BinanceError, HasBook
from .trail import Trail

if TYPE_CHECKING:
    from .matching import Book, ExOrder

TYPES = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "STOP_LOSS", "TAKE_PROFIT")
OPEN = ("NEW", "PARTIALLY_FILLED")
MIN_DELTA, MAX_DELTA = 10, 2000  # the TRAILING_DELTA filter (BIPS; BTCUSDT's, above and below alike)


def _triggers_up(side: str, otype: str) -> bool:
    """Does this stop trigger on a rise (sell take profit, buy stop loss)?"""
    return (side == "SELL") == otype.startswith("TAKE_PROFIT")


def stop_price(book: Book, symbol: str, side: str, otype: str, p: dict[str, str]) -> float:
    """The checked ``stopPrice`` of a new order of type ``otype`` (0.0 for a non-stop type, or a trailing stop
    sent without one)."""
    if otype not in TYPES:
        return 0.0
    if symbol in book.no_stops:
        raise BinanceError(-1116, "Invalid orderType.")
    if otype.endswith("_LIMIT") and p.get("timeInForce") not in ("GTC", "IOC", "FOK"):
        raise BinanceError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, "
                                  "or malformed.")
    trailing = bool(p.get("trailingDelta"))
    if trailing and "stopPrice" not in p:
        return 0.0
    try:
        stop = float(p["stopPrice"])
    except (KeyError, ValueError):
        raise BinanceError(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                                  "or malformed.") from None
    if not stop > 0:
        raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
    now = book.price(symbol)
    if not trailing and ((now >= stop) if _triggers_up(side, otype) else (now <= stop)):
        raise BinanceError(-2010, "Order would trigger immediately.")
    return stop


def trail(book: Book, symbol: str, side: str, otype: str, p: dict[str, str], stop: float) -> Trail | None:
    """The trail of a new trailing stop (``trailingDelta`` in BIPS, within the ``TRAILING_DELTA`` filter),
    activated by its ``stop`` if it has one; None for other orders."""
    if otype not in TYPES or not p.get("trailingDelta"):
        return None
    try:
        delta = int(p["trailingDelta"])
    except ValueError:
        raise BinanceError(-1100, "Illegal characters found in parameter 'trailingDelta'.") from None
    if not MIN_DELTA <= delta <= MAX_DELTA:
        raise BinanceError(-1013, "Filter failure: TRAILING_DELTA")
    return Trail.place(side, delta / 10_000, stop or None, book.price(symbol),
                       activate_up=_triggers_up(side, otype))


def _trigger(book: Book, o: ExOrder, at: float) -> None:
    """Trigger ``o`` at price ``at``: a market stop fills there; a stop-limit works as a limit order from now,
    filling at once if marketable."""
    o.triggered = True
    o.update_time = book.stamp()
    if not o.type.endswith("_LIMIT") or ((at >= o.price) if o.side == "SELL" else (at <= o.price)):
        book._fill(o, o.quantity - o.executed, at, maker=False)


def waiting(book: Book, o: ExOrder, row: Any) -> bool:
    """On the completed bar ``row`` (o, h, l, c, v): trigger ``o`` if it is a stop the bar reached. True if
    the bar is done with ``o`` (a stop still waiting, or triggered and filled), False if it works as a
    limit order against this bar (a plain limit, or a stop triggered but not marketable)."""
    if o.type not in TYPES or o.triggered:
        return False
    op, h, lo = float(row[0]), float(row[1]), float(row[2])
    if o.trail is not None:
        at = o.trail.bar(op, h, lo, float(row[3]))
    elif _triggers_up(o.side, o.type):
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
                    if o.trail is not None:
                        at = o.trail.move(price, jump=True)
                        if at is not None:
                            _trigger(book, o, at)
                    elif (price >= o.stop_price) if _triggers_up(o.side, o.type) else (price <= o.stop_price):
                        _trigger(book, o, price)
                elif (price >= o.price) if o.side == "SELL" else (price <= o.price):
                    book._fill(o, o.quantity - o.executed, o.price, maker=True)
