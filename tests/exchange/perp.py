"""Binance USDⓈ-M perpetual futures on the loopback exchange: accounts, positions, orders and funding (no
HTTP here; the routes are in perp_routes.py).

A perpetual ``BASE/QUOTE:QUOTE`` (ccxt's unified swap symbol) trades on the price path of the spot
``BASE/QUOTE`` market of the same id (``BTCUSDT``): its mark price is the spot book's current price.
Binance's documented rules, as applied here (one-way position mode, ``positionSide`` BOTH, cross margin):

* A futures wallet per API key (USDT), apart from the spot balances. A fill books its fee (taker 0.05 %,
  maker 0.02 % of the notional) out of the wallet; closing part of a position books its realized P&L
  (``closed qty x (price - entry)``, sign of the position) into it. The entry price is the average of the
  fills that opened the position; a fill through zero opens the rest at its price.
* An order that adds exposure needs initial margin (added notional / leverage) within the available balance
  (wallet + unrealized P&L - the margin of the positions): else -2019 "Margin is insufficient.". Its notional
  must be at least ``MIN_NOTIONAL`` unless it is reduce-only (-4164). ``reduceOnly=true`` with no position to
  reduce, or on the side that would grow it, is refused (-2022); a reduce-only order larger than the
  position fills only the position (the rest expires). A client order id repeated while the earlier order is
  open is refused (-4116).
* Leverage per symbol, 1 to the market's maximum bracket (``max_leverage``, default 125; -4028 above it);
  default 20.
* Funding at 00:00, 08:00 and 16:00 UTC: every open position pays ``amount x mark price x rate`` (a
  positive rate: longs pay, shorts receive), booked to the wallet as a ``FUNDING_FEE`` income record.
  The rate of a funding time is :meth:`PerpBook.rate` (a set constant, else a fixed deterministic series).
* Liquidation (cross margin): when an account's margin balance (wallet + unrealized P&L) falls to its
  maintenance margin (``MAINT_MARGIN`` x each position's notional at the mark), every position of it is closed
  at the mark by the liquidation engine: an order ``autoclose-<ms>`` (type LIQUIDATION, as Binance names
  them), whose trade's commission is the clearance fee (``LIQUIDATION_FEE`` of the notional). Checked on
  every intrabar trade and completed bar.
* Market orders fill at once at the current price (taker); limit orders rest and fill at their limit when a
  completed bar trades through it (maker), like the spot book. Conditional orders (``STOP_MARKET``,
  ``TAKE_PROFIT_MARKET``, ``STOP``, ``TAKE_PROFIT``, ``TRAILING_STOP_MARKET``) go through the algo service
  (perp_algo.py); ``/fapi/v1/order`` refuses them with -4120, as Binance has since December 2025.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .matching import BinanceError, _on_grid, lookup

if TYPE_CHECKING:
    from .matching import Book

STEP = Decimal("0.001")  # LOT_SIZE stepSize of the perpetuals
TICK = Decimal("0.01")  # PRICE_FILTER tickSize
MIN_NOTIONAL = 100.0  # Binance's BTCUSDT perpetual minimum (reduce-only orders are exempt)
TAKER, MAKER = 0.0005, 0.0002
DEFAULT_LEVERAGE, MAX_LEVERAGE = 20, 125
MAINT_MARGIN = 0.004  # maintenance margin ratio of the first bracket
LIQUIDATION_FEE = 0.0125  # exchangeInfo liquidationFee: the clearance fee of a liquidated position's notional
FUNDING_MS = 8 * 3_600_000  # funding every 8 hours from 00:00 UTC
OPEN = ("NEW", "PARTIALLY_FILLED")
SETTLE = "USDT"
CONDITIONAL = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")


def number(p: dict[str, str], name: str, grid: Decimal) -> float:
    """The positive number ``p[name]`` on ``grid`` (Binance's -1102 if missing, -1111 off the grid)."""
    try:
        x = float(p[name])
    except (KeyError, ValueError):
        raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
    if not x > 0 or not _on_grid(x, grid):
        raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
    return x


@dataclass
class PerpOrder:
    """One futures order as the exchange keeps it."""

    order_id: int
    account: str
    symbol: str
    side: str
    type: str
    quantity: float
    price: float
    client_id: str
    time: int
    reduce_only: bool = False
    time_in_force: str = "GTC"
    status: str = "NEW"
    executed: float = 0.0
    quote: float = 0.0
    update_time: int = 0

    def wire(self) -> dict[str, Any]:
        """The order as GET /fapi/v1/order answers it."""
        avg = self.quote / self.executed if self.executed else 0.0
        return {
            "orderId": self.order_id, "symbol": self.symbol, "status": self.status, "clientOrderId": self.client_id,
            "price": f"{self.price:.2f}", "avgPrice": f"{avg:.8f}", "origQty": f"{self.quantity:.3f}",
            "executedQty": f"{self.executed:.3f}", "cumQuote": f"{self.quote:.8f}", "timeInForce": self.time_in_force,
            "type": self.type, "reduceOnly": self.reduce_only, "closePosition": False, "side": self.side,
            "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
            "origType": self.type, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0, "time": self.time, "updateTime": self.update_time or self.time,
        }


@dataclass
class Position:
    amount: float = 0.0  # signed: negative is short
    entry: float = 0.0
    update_time: int = 0


@dataclass
class PerpBook:
    """The futures side of the loopback exchange, on the spot :class:`Book`'s clock and prices."""

    book: Book
    symbols: dict[str, str]  # market id -> unified swap symbol
    initial: dict[str, float]
    wallets: dict[str, dict[str, float]] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    leverage: dict[tuple[str, str], int] = field(default_factory=dict)
    max_leverage: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # market id -> a constant funding rate set by a test
    orders: dict[int, PerpOrder] = field(default_factory=dict)
    by_client: dict[tuple[str, str], PerpOrder] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    income: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._tran_ids = itertools.count(1)
        from .perp_algo import AlgoBook  # conditional orders (the algo service), on this book

        self.algo = AlgoBook(self)

    # ---- prices, funding ------------------------------------------------------------------------
    def mark(self, sid: str) -> float:
        return self.book.price(sid)

    def rate(self, sid: str, funding_ms: int) -> float:
        """The funding rate at ``funding_ms``: the constant a test set, else 0.01 % +- 0.005 % varying by
        funding time (deterministic)."""
        if sid in self.rates:
            return self.rates[sid]
        k = funding_ms // FUNDING_MS
        return round(0.0001 + 0.00005 * math.sin(k), 8)

    def funding_times(self, until_ms: int) -> list[int]:
        """Funding times (ms) from the start of the price path up to ``until_ms``."""
        times = next(iter(self.book.prices.values()))[0]
        first = -(-int(times[0]) // FUNDING_MS) * FUNDING_MS
        return list(range(first, min(until_ms, int(times[-1])) + 1, FUNDING_MS))

    def price_at(self, sid: str, ms: int) -> float:
        """The open of the bar starting at ``ms`` (the mark price at a funding time)."""
        import numpy as np

        times, rows = self.book.prices[sid]
        i = min(int(np.searchsorted(times, ms, "left")), len(times) - 1)
        return float(rows[i][0])

    def completed(self, i: int) -> None:
        """Bar ``i`` completed (called by :meth:`Book.advance` under its lock): resting limits fill against it;
        if the next bar opens at a funding time, every position pays or receives funding. Conditional orders
        it reached trigger first (perp_algo.py)."""
        self.algo.completed(i)
        self.liquidate()
        for o in [o for o in self.orders.values() if o.status in OPEN and o.type == "LIMIT"]:
            _, h, lo, _, _ = self.book.prices[o.symbol][1][i]
            if (o.side == "BUY" and lo <= o.price) or (o.side == "SELL" and h >= o.price):
                self._fill(o, o.quantity - o.executed, o.price, maker=True)
        now = self.book.now_ms()
        if now % FUNDING_MS == 0:
            self._fund(now)

    def on_price(self, sid: str, price: float) -> None:
        """An intrabar trade at ``price`` (the mark now): conditional orders it reaches trigger; accounts whose
        margin it exhausts are liquidated."""
        self.algo.on_price(sid, price)
        self.liquidate()

    def liquidate(self) -> None:
        """Close every position of each account whose margin balance is at or below its maintenance margin."""
        for key in {k for (k, _), p in self.positions.items() if p.amount != 0.0}:
            held = [(s, p) for (k, s), p in self.positions.items() if k == key and p.amount != 0.0]
            maint = sum(abs(p.amount) * self.mark(s) * MAINT_MARGIN for s, p in held)
            if self._wallet(key)[SETTLE] + self.unrealized(key) > maint:
                continue
            for sid, pos in held:
                now = self.book.stamp()
                side = "BUY" if pos.amount < 0 else "SELL"
                o = PerpOrder(next(self._ids), key, sid, side, "LIQUIDATION", abs(pos.amount), 0.0,
                              f"autoclose-{now}", now, True)
                self.orders[o.order_id] = o
                self._fill(o, abs(pos.amount), self.mark(sid), maker=False, fee_rate=LIQUIDATION_FEE)

    def _fund(self, at: int) -> None:
        for (key, sid), pos in self.positions.items():
            if pos.amount == 0.0:
                continue
            pay = pos.amount * self.mark(sid) * self.rate(sid, at)
            self._wallet(key)[SETTLE] -= pay
            self._income(key, sid, "FUNDING_FEE", -pay, at)

    # ---- accounts ---------------------------------------------------------------------------------
    def _wallet(self, key: str) -> dict[str, float]:
        return self.wallets.setdefault(key, dict(self.initial))

    def position(self, key: str, sid: str) -> Position:
        return self.positions.setdefault((key, sid), Position())

    def lev(self, key: str, sid: str) -> int:
        return self.leverage.get((key, sid), DEFAULT_LEVERAGE)

    def unrealized(self, key: str) -> float:
        return sum(p.amount * (self.mark(s) - p.entry) for (k, s), p in self.positions.items() if k == key)

    def position_margin(self, key: str) -> float:
        return sum(abs(p.amount) * self.mark(s) / self.lev(k, s) for (k, s), p in self.positions.items() if k == key)

    def order_margin(self, key: str) -> float:
        return sum((o.quantity - o.executed) * o.price / self.lev(key, o.symbol) for o in self.orders.values()
                   if o.account == key and o.status in OPEN and not o.reduce_only)

    def available(self, key: str) -> float:
        """Cross margin: wallet + unrealized P&L - position and open-order initial margin."""
        return (self._wallet(key)[SETTLE] + self.unrealized(key) - self.position_margin(key)
                - self.order_margin(key))

    def liquidation_price(self, key: str, sid: str) -> float:
        """Where the margin balance meets the maintenance margin of this position, the other positions at
        their marks (0 if flat)."""
        p = self.position(key, sid)
        if p.amount == 0.0:
            return 0.0
        others = self.unrealized(key) - p.amount * (self.mark(sid) - p.entry)
        wallet = self._wallet(key)[SETTLE] + others
        den = MAINT_MARGIN * abs(p.amount) - p.amount
        return max((wallet - p.amount * p.entry) / den, 0.0) if den else 0.0

    def set_leverage(self, key: str, sid: str, leverage: int) -> int:
        top = self.max_leverage.get(sid, MAX_LEVERAGE)
        if not 1 <= leverage <= top:
            raise BinanceError(-4028, f"Leverage {leverage} is not valid")
        self.leverage[key, sid] = leverage
        return leverage

    def _income(self, key: str, sid: str, kind: str, amount: float, at: int, trade_id: Any = "") -> None:
        self.income.append({"symbol": sid, "incomeType": kind, "income": f"{amount:.8f}", "asset": SETTLE,
                            "info": kind, "time": at, "tranId": next(self._tran_ids), "tradeId": str(trade_id),
                            "account": key})

    # ---- orders -----------------------------------------------------------------------------------
    def create(self, key: str, p: dict[str, str]) -> PerpOrder:
        """Place an order from POST /fapi/v1/order parameters (see the module docstring for the rules)."""
        with self.book.lock:
            sid = p.get("symbol", "")
            if sid not in self.symbols:
                raise BinanceError(-1121, "Invalid symbol.")
            side, otype = p.get("side", "").upper(), p.get("type", "").upper()
            if side not in ("BUY", "SELL"):
                raise BinanceError(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
            if otype in CONDITIONAL:  # Binance moved them to the algo service (perp_algo.py) in December 2025
                raise BinanceError(-4120, "Order type not supported for this endpoint. Please use the Algo Order "
                                          "API endpoints instead.")
            if otype not in ("MARKET", "LIMIT"):
                raise BinanceError(-1116, "Invalid orderType.")
            if p.get("positionSide", "BOTH") != "BOTH":
                raise BinanceError(-4061, "Order's position side does not match user's setting.")
            qty = number(p, "quantity", STEP)
            price = self.mark(sid)
            if otype == "LIMIT":
                price = number(p, "price", TICK)
                if p.get("timeInForce") not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
                    raise BinanceError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, "
                                              "or malformed.")
            reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
            pos = self.position(key, sid)
            signed = qty if side == "BUY" else -qty
            if reduce_only and (pos.amount == 0.0 or pos.amount * signed > 0):
                raise BinanceError(-2022, "ReduceOnly Order is rejected.")
            if not reduce_only and qty * price < MIN_NOTIONAL:
                raise BinanceError(-4164, f"Order's notional must be no smaller than {MIN_NOTIONAL:g} (unless you "
                                          "choose reduce only).")
            cid = p.get("newClientOrderId") or f"x-perp{next(self._ids)}"
            earlier = self.by_client.get((key, cid))
            if earlier is not None and earlier.status in OPEN:
                raise BinanceError(-4116, "ClientOrderId is duplicated.")
            if not reduce_only:
                added = max(abs(pos.amount + signed) - abs(pos.amount), 0.0)
                if added * price / self.lev(key, sid) > self.available(key) + 1e-9:
                    raise BinanceError(-2019, "Margin is insufficient.")
            now = self.book.stamp()
            o = PerpOrder(next(self._ids), key, sid, side, otype, qty, price if otype == "LIMIT" else 0.0, cid, now,
                          reduce_only, p.get("timeInForce", "GTC"))
            self.orders[o.order_id] = o
            self.by_client[key, cid] = o
            if otype == "MARKET":
                self._fill(o, qty, price, maker=False)
            return o

    def _fill(self, o: PerpOrder, qty: float, price: float, maker: bool, fee_rate: float | None = None) -> None:
        key, sid = o.account, o.symbol
        pos = self.position(key, sid)
        if o.reduce_only:  # only what still reduces the position; the rest expires
            qty = min(qty, abs(pos.amount)) if pos.amount * (1 if o.side == "BUY" else -1) < 0 else 0.0
            if qty <= 0.0:
                o.status, o.update_time = "EXPIRED", self.book.stamp()
                return
        signed = qty if o.side == "BUY" else -qty
        price = round(price, 2)  # trades happen on the tick (the mark is not on it)
        wallet = self._wallet(key)
        notional = qty * price
        fee = notional * (fee_rate if fee_rate is not None else MAKER if maker else TAKER)
        realized = 0.0
        if pos.amount == 0.0 or pos.amount * signed > 0:
            pos.entry = (abs(pos.amount) * pos.entry + notional) / (abs(pos.amount) + qty)
            pos.amount += signed
        else:
            closing = min(qty, abs(pos.amount))
            realized = closing * (price - pos.entry) * (1 if pos.amount > 0 else -1)
            pos.amount = round(pos.amount + signed, 9)
            if pos.amount == 0.0:
                pos.entry = 0.0
            elif pos.amount * signed > 0:  # through zero: the rest opens at this price
                pos.entry = price
        wallet[SETTLE] += realized - fee
        now = self.book.stamp()
        pos.update_time = now
        o.executed = round(o.executed + qty, 9)
        o.quote += notional
        done = math.isclose(o.executed, o.quantity, rel_tol=1e-12)
        o.status = "FILLED" if done else ("EXPIRED" if o.reduce_only and o.type == "MARKET" else "PARTIALLY_FILLED")
        o.update_time = now
        tid = next(self._trade_ids)
        self.trades.append({
            "buyer": o.side == "BUY", "commission": f"{fee:.8f}", "commissionAsset": SETTLE, "id": tid,
            "maker": maker, "orderId": o.order_id, "price": f"{price:.2f}", "qty": f"{qty:.3f}",
            "quoteQty": f"{notional:.8f}", "realizedPnl": f"{realized:.8f}", "side": o.side, "positionSide": "BOTH",
            "symbol": sid, "time": now, "account": key,
        })
        if realized:
            self._income(key, sid, "REALIZED_PNL", realized, now, tid)
        self._income(key, sid, "COMMISSION", -fee, now, tid)

    def find(self, key: str, p: dict[str, str]) -> PerpOrder:
        """The order named by ``orderId`` or ``origClientOrderId`` (-2013 if none)."""
        with self.book.lock:
            found: PerpOrder = lookup(self.orders, self.by_client, key, p,
                                      neither="Either orderId or origClientOrderId must be sent.")
            return found

    def cancel(self, key: str, p: dict[str, str]) -> PerpOrder:
        with self.book.lock:
            try:
                o = self.find(key, p)
            except BinanceError as e:
                raise BinanceError(-2011, "Unknown order sent.") if e.code == -2013 else e from None
            if o.status not in OPEN:
                raise BinanceError(-2011, "Unknown order sent.")
            o.status, o.update_time = "CANCELED", self.book.stamp()
            return o

    def open_orders(self, key: str, sid: str | None) -> list[PerpOrder]:
        with self.book.lock:
            return [o for o in self.orders.values() if o.account == key and o.status in OPEN
                    and (sid is None or o.symbol == sid)]
