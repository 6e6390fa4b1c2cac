"""Binance USDⓈ-M conditional orders on the loopback perpetuals: the algo-order service (``/fapi/v1/algoOrder``,
where Binance takes ``STOP_MARKET``, ``TAKE_PROFIT_MARKET``, ``STOP``, ``TAKE_PROFIT`` and
``TRAILING_STOP_MARKET`` since December 2025 and where ccxt's ``binance.create_order(..., params=
{'stopLossPrice'|'takeProfitPrice'|'triggerPrice': p})`` or ``{'trailingPercent': rate}`` sends them for a
linear swap).

Binance's documented rules, as applied here (one-way mode, ``workingType`` CONTRACT_PRICE or MARK_PRICE: the
loopback's mark is its last price):

* ``algoType`` CONDITIONAL; ``triggerPrice`` on the tick; ``quantity`` on the lot grid unless
  ``closePosition=true`` (then no quantity and no ``reduceOnly``: it closes whatever position is open when it
  triggers); ``STOP``/``TAKE_PROFIT`` also take a ``price`` (the limit) and ``timeInForce`` (``GTD`` with a
  ``goodTillDate``, not enforced).
  A client algo id repeated while the earlier order is open is refused (-4116).
* ``TRAILING_STOP_MARKET`` takes ``callbackRate`` (a percent, 0.1 to 20: Binance raised the maximum from 10 to
  20 on 2026-10-23; outside, -1130) and an optional ``activatePrice`` (default: the latest price) instead of
  a trigger price; a ``SELL``'s activation price must be above the latest price, a ``BUY``'s below it (else
  -2021 "Order would immediately trigger."); ``closePosition`` is refused (-4136). A ``SELL`` triggers when
  the highest price since it was placed is at or above ``activatePrice`` and the latest price is at or below
  that highest x (1 - callbackRate), a ``BUY`` mirrored (lowest, at or below, x (1 + callbackRate)): the
  trail of trail.py.
* A ``BUY`` stop or a ``SELL`` take profit triggers when the price trades at or above its trigger, a ``SELL``
  stop or a ``BUY`` take profit at or below it; one that would trigger at once is refused (-2021 "Order would
  immediately trigger."). No margin is reserved until it triggers; a reduce-only one needs no position when
  placed (the reduce-only rule applies to the order it triggers).
* Triggering (an intrabar trade, :meth:`AlgoBook.on_price`, or a completed bar: at its open if it opened
  beyond the trigger, else at the trigger; a trailing stop where trail.py's walk of the bar crosses its trail)
  places the order in the matching engine (``actualOrderId``): ``*_MARKET`` fills at once at the trigger price
  (taker), ``STOP``/``TAKE_PROFIT`` is a limit order at its price. The algo order is then ``FINISHED``
  (``TRIGGERED`` while its limit order is open), or ``EXPIRED`` if a reduce-only / close-position order had
  nothing to reduce. Canceling works on any type until it triggers.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .matching import BinanceError, lookup
from .perp import OPEN, STEP, TICK, PerpOrder, number
from .trail import Trail

if TYPE_CHECKING:
    from .perp import PerpBook

TRAILING = "TRAILING_STOP_MARKET"
TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", TRAILING)
MIN_RATE, MAX_RATE = 0.1, 20.0  # callbackRate bounds, percent
LIVE = ("NEW", "TRIGGERING", "TRIGGERED")  # not yet ended (TRIGGERED: its limit order is open)


def callback_rate(p: dict[str, str]) -> float:
    """The checked ``callbackRate`` (percent) of a new trailing stop."""
    try:
        rate = float(p["callbackRate"])
    except (KeyError, ValueError):
        raise BinanceError(-1102, "Mandatory parameter 'callbackRate' was not sent, was empty/null, "
                                  "or malformed.") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BinanceError(-1130, "Data sent for parameter 'callbackRate' is not valid.")
    return rate


def triggers_up(side: str, otype: str) -> bool:
    """Does this conditional order trigger on a rise (a buy stop, a sell take profit)?"""
    return (side == "BUY") == otype.startswith("STOP")


@dataclass
class AlgoOrder:
    """One conditional order as the algo service keeps it."""

    algo_id: int
    account: str
    symbol: str
    side: str
    type: str
    quantity: float
    trigger: float
    price: float
    client_id: str
    time: int
    reduce_only: bool = False
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    time_in_force: str = "GTC"
    status: str = "NEW"
    actual: PerpOrder | None = None
    trigger_time: int = 0
    update_time: int = 0
    trail: Trail | None = None  # a TRAILING_STOP_MARKET's (trail.py)
    callback: float = 0.0  # its callbackRate, percent

    def wire(self) -> dict[str, Any]:
        """The order as GET /fapi/v1/algoOrder answers it."""
        a, t = self.actual, self.trail
        trailing = {} if t is None else {"activatePrice": f"{t.activate or 0.0:.2f}",
                                         "callbackRate": f"{self.callback:g}"}
        return {
            "algoId": self.algo_id, "clientAlgoId": self.client_id, "algoType": "CONDITIONAL",
            "orderType": self.type, "symbol": self.symbol, "side": self.side, "positionSide": "BOTH",
            "timeInForce": self.time_in_force, "quantity": f"{self.quantity:.3f}", "algoStatus": self.status,
            "actualOrderId": "" if a is None else str(a.order_id),
            "actualPrice": "0" if a is None or not a.executed else f"{a.quote / a.executed:.8f}",
            "executedQty": "0" if a is None else f"{a.executed:.3f}",
            "triggerPrice": f"{self.trigger:.2f}", "price": f"{self.price:.2f}", "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": self.working_type, "priceMatch": "NONE",
            "closePosition": self.close_position, "priceProtect": False, "reduceOnly": self.reduce_only,
            "createTime": self.time, "updateTime": self.update_time or self.time, "triggerTime": self.trigger_time,
            "goodTillDate": 0, **trailing,
        }


class AlgoBook:
    """The conditional orders of a :class:`PerpBook` (its ``algo``), on its clock and prices."""

    def __init__(self, perp: PerpBook):
        self.perp = perp
        self.orders: dict[int, AlgoOrder] = {}
        self.by_client: dict[tuple[str, str], AlgoOrder] = {}
        self._ids = itertools.count(1_000_001)

    # ---- requests -----------------------------------------------------------------------------------
    def create(self, key: str, p: dict[str, str]) -> AlgoOrder:
        """Place a conditional order from POST /fapi/v1/algoOrder parameters (see the module docstring)."""
        perp = self.perp
        with perp.book.lock:
            if p.get("algoType") != "CONDITIONAL":
                raise BinanceError(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
            sid = p.get("symbol", "")
            if sid not in perp.symbols:
                raise BinanceError(-1121, "Invalid symbol.")
            side, otype = p.get("side", "").upper(), p.get("type", "").upper()
            if side not in ("BUY", "SELL"):
                raise BinanceError(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
            if otype not in TYPES:
                raise BinanceError(-1116, "Invalid orderType.")
            if p.get("positionSide", "BOTH") != "BOTH":
                raise BinanceError(-4061, "Order's position side does not match user's setting.")
            close = str(p.get("closePosition", "false")).lower() == "true"
            reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
            if close and otype == TRAILING:
                raise BinanceError(-4136, f"Target strategy invalid for orderType {TRAILING},closePosition true")
            if close and ("quantity" in p or reduce_only or otype in ("STOP", "TAKE_PROFIT")):
                raise BinanceError(-1106, "Parameter 'quantity' or 'reduceOnly' sent when not required "
                                          "(closePosition=true).")
            qty = 0.0 if close else number(p, "quantity", STEP)
            trail, rate = None, 0.0
            if otype == TRAILING:
                rate = callback_rate(p)
                activate = number(p, "activatePrice", TICK) if p.get("activatePrice") else None
                if activate is not None and ((activate <= perp.mark(sid)) if side == "SELL"
                                             else (activate >= perp.mark(sid))):
                    raise BinanceError(-2021, "Order would immediately trigger.")
                trail, trigger = Trail.place(side, rate / 100.0, activate, perp.mark(sid)), 0.0
            else:
                trigger = number(p, "triggerPrice", TICK)
            price = number(p, "price", TICK) if otype in ("STOP", "TAKE_PROFIT") else 0.0
            tif = p.get("timeInForce", "GTC")
            if otype in ("STOP", "TAKE_PROFIT") and tif not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
                raise BinanceError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, "
                                          "or malformed.")
            if tif == "GTD" and not p.get("goodTillDate"):
                raise BinanceError(-1102, "Mandatory parameter 'goodTillDate' was not sent, was empty/null, "
                                          "or malformed.")
            working = p.get("workingType", "CONTRACT_PRICE")
            if working not in ("CONTRACT_PRICE", "MARK_PRICE"):
                raise BinanceError(-1102, "Mandatory parameter 'workingType' was not sent, was empty/null, "
                                          "or malformed.")
            now = perp.mark(sid)
            if trail is None and ((now >= trigger) if triggers_up(side, otype) else (now <= trigger)):
                raise BinanceError(-2021, "Order would immediately trigger.")
            cid = p.get("clientAlgoId") or f"x-algo{next(self._ids)}"
            earlier = self.by_client.get((key, cid))
            if earlier is not None and earlier.status in LIVE:
                raise BinanceError(-4116, "ClientOrderId is duplicated.")
            o = AlgoOrder(next(self._ids), key, sid, side, otype, qty, trigger, price, cid, perp.book.stamp(),
                          reduce_only, close, working, p.get("timeInForce", "GTC"), trail=trail, callback=rate)
            self.orders[o.algo_id] = o
            self.by_client[key, cid] = o
            return o

    def find(self, key: str, p: dict[str, str]) -> AlgoOrder:
        """The order named by ``algoId`` or ``clientAlgoId`` (-2013 if none)."""
        with self.perp.book.lock:
            found: AlgoOrder = lookup(self.orders, self.by_client, key, p, id_param="algoId",
                                      client_param="clientAlgoId", symbol=False,
                                      neither="Either algoId or clientAlgoId must be sent.")
            return found

    def cancel(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        with self.perp.book.lock:
            try:
                o = self.find(key, p)
            except BinanceError as e:
                raise BinanceError(-2011, "Unknown order sent.") if e.code == -2013 else e from None
            if o.status != "NEW":
                raise BinanceError(-2011, "Unknown order sent.")
            o.status, o.update_time = "CANCELED", self.perp.book.stamp()
            return {"algoId": o.algo_id, "clientAlgoId": o.client_id, "code": "200", "msg": "success"}

    def open_orders(self, key: str, sid: str | None) -> list[AlgoOrder]:
        with self.perp.book.lock:
            self._settle()
            return [o for o in self.orders.values() if o.account == key and o.status in LIVE
                    and (sid is None or o.symbol == sid)]

    # ---- triggering (called under the book's lock) -----------------------------------------------------
    def on_price(self, sid: str, price: float) -> None:
        """An intrabar trade at ``price``: trigger what it reaches, at ``price``."""
        for o in self._waiting(sid):
            if o.trail is not None:
                at = o.trail.move(price, jump=True)
                if at is not None:
                    self._trigger(o, at)
            elif (price >= o.trigger) if triggers_up(o.side, o.type) else (price <= o.trigger):
                self._trigger(o, price)

    def completed(self, i: int) -> None:
        """Bar ``i`` completed: trigger what it reached (at its open if it opened beyond, else at the trigger)."""
        for o in self._waiting(None):
            op, h, lo, c = (float(x) for x in self.perp.book.prices[o.symbol][1][i][:4])
            if o.trail is not None:
                at = o.trail.bar(op, h, lo, c)
            elif triggers_up(o.side, o.type):
                at = op if op >= o.trigger else o.trigger if h >= o.trigger else None
            else:
                at = op if op <= o.trigger else o.trigger if lo <= o.trigger else None
            if at is not None:
                self._trigger(o, at)
        self._settle()

    def _waiting(self, sid: str | None) -> list[AlgoOrder]:
        return [o for o in self.orders.values() if o.status == "NEW" and (sid is None or o.symbol == sid)]

    def _trigger(self, o: AlgoOrder, at: float) -> None:
        perp = self.perp
        pos = perp.position(o.account, o.symbol)
        reduce = o.reduce_only or o.close_position
        qty = abs(pos.amount) if o.close_position else o.quantity
        now = perp.book.stamp()
        o.trigger_time = o.update_time = now
        closes = pos.amount * (1 if o.side == "BUY" else -1) < 0
        if reduce and (not closes or qty <= 0.0):  # nothing it may reduce: the system ends it
            o.status = "EXPIRED"
            return
        market = o.type.endswith("_MARKET")
        a = PerpOrder(next(perp._ids), o.account, o.symbol, o.side, "MARKET" if market else "LIMIT", qty,
                      0.0 if market else o.price, f"{o.client_id}-t", now, reduce, o.time_in_force)
        perp.orders[a.order_id] = a
        o.actual = a
        if market or ((at <= o.price) if o.side == "BUY" else (at >= o.price)):
            perp._fill(a, qty, at, maker=False)
        o.status = "TRIGGERED" if a.status in OPEN else "FINISHED"

    def _settle(self) -> None:
        for o in self.orders.values():
            if o.status == "TRIGGERED" and o.actual is not None and o.actual.status not in OPEN:
                o.status = "FINISHED"
