"""The loopback exchange's accounts and matching engine (no HTTP here; see server.py).

Prices follow the server's own path: a virtual clock walks the sample 1-minute bars. The current
price of a symbol is the open of the bar that is forming now. Market orders fill at once at that
price (sized by ``quantity``, or by ``quoteOrderQty``: the quote to spend or receive, rounded down to the
lot); a resting limit order fills at its limit when a completed bar trades through it (buy:
low <= limit, sell: high >= limit), in parts if ``fill_share`` limits the liquidity. Fees are taken in
the quote asset, or in BNB for accounts with BNB burn on (both rules: fills.py). ``LIMIT_MAKER`` rests like
a limit order, refused if it would match at once (-2010). Stop orders: stops.py. Errors are raised as
:class:`BinanceError` carrying Binance's code, message and HTTP status.
"""
from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import fills

if TYPE_CHECKING:
    from .perp import PerpBook
    from .trail import Trail

STEP = Decimal("0.00001")  # LOT_SIZE stepSize
TICK = Decimal("0.000001")  # PRICE_FILTER tickSize
MIN_NOTIONAL = 5.0
FEE = 0.001
LIMIT_PRICED = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")  # order types with a limit price


class BinanceError(Exception):
    """An error answered as Binance's ``{"code", "msg"}`` body with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


@dataclass
class ExOrder:
    """One order as the exchange keeps it."""

    order_id: int
    account: str
    symbol: str  # market id, e.g. BTCUSDT
    side: str  # BUY / SELL
    type: str  # MARKET / LIMIT
    quantity: float
    price: float
    client_id: str
    time: int
    status: str = "NEW"
    executed: float = 0.0
    quote: float = 0.0
    update_time: int = 0
    fills: list[dict[str, Any]] = field(default_factory=list)
    stop_price: float = 0.0  # STOP_LOSS(_LIMIT) / TAKE_PROFIT(_LIMIT) (stops.py)
    triggered: bool = False  # a stop order that has triggered works as a limit order
    trail: Trail | None = None  # a trailing stop's (stops.py)
    trailing_delta: int = 0

    def wire(self) -> dict[str, Any]:
        """The order as GET /api/v3/order answers it."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1, "clientOrderId": self.client_id,
            "price": f"{self.price:.8f}", "origQty": f"{self.quantity:.8f}", "executedQty": f"{self.executed:.8f}",
            "cummulativeQuoteQty": f"{self.quote:.8f}", "status": self.status,
            "timeInForce": "GTC" if self.type == "LIMIT" else "GTC", "type": self.type, "side": self.side,
            "stopPrice": f"{self.stop_price:.8f}", "icebergQty": "0.00000000", "time": self.time,
            "updateTime": self.update_time or self.time, "isWorking": self.triggered or not self.stop_price,
            "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER",
            **({"trailingDelta": self.trailing_delta} if self.trail is not None else {}),
        }


def _on_grid(x: float, grid: Decimal) -> bool:
    d = Decimal(repr(x))
    return d == (d / grid).to_integral_value() * grid


def _positive(p: dict[str, str], name: str, grid: Decimal, flt: str) -> float:
    """The positive number ``p[name]`` on ``grid`` (-1102 if missing, -1013 naming filter ``flt`` if not)."""
    try:
        x = float(p[name])
    except (KeyError, ValueError):
        raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                                  "or malformed.") from None
    if not x > 0 or not _on_grid(x, grid):
        raise BinanceError(-1013, f"Filter failure: {flt}")
    return x


def lookup(orders: dict[int, Any], by_client: dict[tuple[str, str], Any], key: str, p: dict[str, str], *,
           id_param: str = "orderId", client_param: str = "origClientOrderId", neither: str,
           symbol: bool = True) -> Any:
    """Binance's order lookup: by ``id_param`` (-1100 if not a number), else by ``client_param``, else
    -1102 with ``neither`` (each API words it its own way); -2013 unless the order is ``key``'s (and, with
    ``symbol``, on the request's symbol). The caller holds its book's lock."""
    if p.get(id_param):
        try:
            o = orders.get(int(p[id_param]))
        except ValueError:
            raise BinanceError(-1100, f"Illegal characters found in parameter '{id_param}'.") from None
    elif p.get(client_param):
        o = by_client.get((key, p[client_param]))
    else:
        raise BinanceError(-1102, neither)
    if o is None or o.account != key or (symbol and o.symbol != p.get("symbol")):
        raise BinanceError(-2013, "Order does not exist.")
    return o


def history(orders: dict[int, Any], key: str, sid: str, p: dict[str, str], *, id_param: str = "orderId") -> list[Any]:
    """Binance's order history (``allOrders``, ``allAlgoOrders``): ``key``'s orders of ``sid``, oldest first;
    from ``id_param`` (that id and later) or ``startTime`` on, the first ``limit``, else the latest ``limit``
    (default 500, at most 1000); ``endTime`` bounds them. The caller holds its book's lock."""
    try:
        limit = int(p.get("limit") or 500)
        first = int(p[id_param]) if p.get(id_param) else None
        start, end = (int(p[k]) if p.get(k) else None for k in ("startTime", "endTime"))
    except ValueError:
        raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
    if not 1 <= limit <= 1000:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    out = [o for i, o in sorted(orders.items()) if o.account == key and o.symbol == sid
           and (first is None or i >= first) and (start is None or o.time >= start) and (end is None or o.time <= end)]
    return out[:limit] if first is not None or start is not None else out[-limit:]


class Book:
    """Accounts, orders and trades of the loopback exchange; thread-safe."""

    def __init__(self, prices: dict[str, Any], balances: dict[str, float]):
        """``prices``: market id -> (open times ms, rows of o/h/l/c/v) of 1-minute bars."""
        self.prices = prices
        self.initial = dict(balances)
        self.balances: dict[str, dict[str, float]] = {}
        self.orders: dict[int, ExOrder] = {}
        self.by_client: dict[tuple[str, str], ExOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.index = 0  # the forming bar of the clock
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self.clocked = False  # with a virtual clock, orders and trades are stamped with its time
        self.fill_share: float | None = None  # a bar fills a resting order up to this x its volume (fills.py)
        self.bnb_burn: set[str] = set()  # accounts paying fees in BNB (fills.py)
        self.last: dict[str, float] = {}  # intrabar trade prices of the forming bar (stops.py)
        self.no_stops: set[str] = set()  # market ids without stop order types (stops.py)
        self.perp: PerpBook | None = None  # the perpetual futures on this clock and prices (perp.py)

    def stamp(self) -> int:
        """Time (ms) for a new order or trade: the virtual clock's (bar open + wall ms within it), else wall."""
        return self.now_ms() if self.clocked else int(time.time() * 1000)

    # ---- clock and prices -------------------------------------------------------------------
    def price(self, symbol: str) -> float:
        """The current price: the last intrabar trade (stops.py), else the open of the forming bar."""
        last = self.last.get(symbol)
        return float(self.prices[symbol][1][self.index][0]) if last is None else last

    def now_ms(self) -> int:
        """Open time (ms) of the forming bar on the first symbol's path."""
        times = next(iter(self.prices.values()))[0]
        return int(times[self.index])

    def advance(self, n: int = 1) -> None:
        """Complete ``n`` bars: resting limits fill against each, then the next bar starts forming."""
        from . import stops  # stops.py builds on this module

        with self.lock:
            for _ in range(n):
                if self.index + 1 >= len(next(iter(self.prices.values()))[0]):
                    return
                for o in [o for o in self.orders.values() if o.status in ("NEW", "PARTIALLY_FILLED")]:
                    row = self.prices[o.symbol][1][self.index]
                    if stops.waiting(self, o, row):  # a stop order not (or just) triggered
                        continue
                    _, h, lo, _, _ = row
                    if (o.side == "BUY" and lo <= o.price) or (o.side == "SELL" and h >= o.price):
                        qty = fills.part(self, o, self.prices[o.symbol][1][self.index])  # maybe a part
                        if qty > 0.0:
                            self._fill(o, qty, o.price, maker=True)
                self.index += 1
                self.last.clear()
                if self.perp is not None:  # resting futures orders fill against the bar; funding at 8 h marks
                    self.perp.completed(self.index - 1)

    # ---- accounts ---------------------------------------------------------------------------
    def account(self, key: str) -> dict[str, float]:
        with self.lock:
            return self.balances.setdefault(key, dict(self.initial))

    def locked(self, key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.orders.values():
            if o.account == key and o.status in ("NEW", "PARTIALLY_FILLED") and o.type != "MARKET":
                base, quote = self.assets(o.symbol)
                rest = o.quantity - o.executed
                if o.side == "BUY":  # a market stop at its stop price (a trailing one without: the price now)
                    at = o.price or o.stop_price or self.price(o.symbol)
                    out[quote] = out.get(quote, 0.0) + rest * at * (1 + FEE)
                else:
                    out[base] = out.get(base, 0.0) + rest
        return out

    def assets(self, symbol: str) -> tuple[str, str]:
        for quote in ("USDT", "BUSD", "USDC", "BTC", "ETH"):
            if symbol.endswith(quote) and symbol != quote:
                return symbol[: -len(quote)], quote
        raise BinanceError(-1121, "Invalid symbol.")

    # ---- orders -----------------------------------------------------------------------------
    def create(self, key: str, p: dict[str, str]) -> ExOrder:
        """Place an order from POST /api/v3/order parameters."""
        from . import stops  # stops.py builds on this module

        with self.lock:
            symbol = p.get("symbol", "")
            if symbol not in self.prices:
                raise BinanceError(-1121, "Invalid symbol.")
            side, otype = p.get("side", "").upper(), p.get("type", "").upper()
            if side not in ("BUY", "SELL"):
                raise BinanceError(-1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
            if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER", *stops.TYPES):
                raise BinanceError(-1116, "Invalid orderType.")
            price = self.price(symbol)
            if otype in LIMIT_PRICED:
                price = _positive(p, "price", TICK, "PRICE_FILTER")
            if otype == "LIMIT_MAKER" and ((price >= self.price(symbol)) if side == "BUY"
                                           else (price <= self.price(symbol))):
                raise BinanceError(-2010, "Order would immediately match and take.")
            stop = stops.stop_price(self, symbol, side, otype, p)
            trail = stops.trail(self, symbol, side, otype, p, stop)
            if otype in stops.TYPES and otype not in LIMIT_PRICED:  # a market stop: sized at its stop
                price = stop or price
            if otype == "MARKET" and "quantity" not in p and p.get("quoteOrderQty"):  # spend / receive this quote
                spend = _positive(p, "quoteOrderQty", Decimal("1e-8"), "NOTIONAL")
                qty = float((Decimal(repr(spend / price)) / STEP).to_integral_value("ROUND_DOWN") * STEP)
                if not qty > 0:
                    raise BinanceError(-1013, "Filter failure: LOT_SIZE")
            else:
                qty = _positive(p, "quantity", STEP, "LOT_SIZE")
            if qty * price < MIN_NOTIONAL:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            cid = p.get("newClientOrderId") or f"x-loop{next(self._ids)}"
            earlier = self.by_client.get((key, cid))
            if earlier is not None and earlier.status in ("NEW", "PARTIALLY_FILLED"):
                # Binance: newClientOrderId is unique among OPEN orders; once the earlier order with the id
                # is filled, canceled or expired, a repeat is a new order
                raise BinanceError(-2010, "Duplicate order sent.")
            base, quote = self.assets(symbol)
            bal, locked = self.account(key), self.locked(key)
            if side == "BUY" and bal.get(quote, 0.0) - locked.get(quote, 0.0) < qty * price * (1 + FEE) - 1e-9:
                raise BinanceError(-2010, "Account has insufficient balance for requested action.")
            if side == "SELL" and bal.get(base, 0.0) - locked.get(base, 0.0) < qty - 1e-12:
                raise BinanceError(-2010, "Account has insufficient balance for requested action.")
            now = self.stamp()
            o = ExOrder(next(self._ids), key, symbol, side, otype, qty, price if otype in LIMIT_PRICED else 0.0, cid,
                        now, stop_price=stop, trail=trail, trailing_delta=int(p["trailingDelta"]) if trail else 0)
            self.orders[o.order_id] = o
            self.by_client[key, cid] = o
            if otype == "MARKET":
                self._fill(o, qty, price, maker=False)
            return o

    def _fill(self, o: ExOrder, qty: float, price: float, maker: bool) -> None:
        base, quote = self.assets(o.symbol)
        bal = self.account(o.account)
        notional = qty * price
        fee, fee_asset = fills.fee(self, o.account, quote, notional, FEE)  # quote, or BNB (fills.py)
        in_quote = fee if fee_asset == quote else 0.0
        if fee_asset != quote:
            bal[fee_asset] = bal.get(fee_asset, 0.0) - fee
        if o.side == "BUY":
            bal[quote] = bal.get(quote, 0.0) - notional - in_quote
            bal[base] = bal.get(base, 0.0) + qty
        else:
            bal[base] = bal.get(base, 0.0) - qty
            bal[quote] = bal.get(quote, 0.0) + notional - in_quote
        o.executed += qty
        o.quote += notional
        o.status = "FILLED" if math.isclose(o.executed, o.quantity, rel_tol=1e-12) else "PARTIALLY_FILLED"
        o.update_time = self.stamp()
        trade = {
            "symbol": o.symbol, "id": next(self._trade_ids), "orderId": o.order_id, "orderListId": -1,
            "price": f"{price:.8f}", "qty": f"{qty:.8f}", "quoteQty": f"{notional:.8f}",
            "commission": f"{fee:.8f}", "commissionAsset": fee_asset, "time": o.update_time,
            "isBuyer": o.side == "BUY", "isMaker": maker, "isBestMatch": True, "account": o.account,
        }
        self.trades.append(trade)
        o.fills.append({"price": trade["price"], "qty": trade["qty"], "commission": trade["commission"],
                        "commissionAsset": fee_asset, "tradeId": trade["id"]})

    def find(self, key: str, p: dict[str, str]) -> ExOrder:
        """The order named by ``orderId`` or ``origClientOrderId`` (Binance -2013 if none)."""
        with self.lock:
            found: ExOrder = lookup(self.orders, self.by_client, key, p,
                                    neither="Param 'origClientOrderId' or 'orderId' must be sent, "
                                            "but both were empty/null!")
            return found

    def cancel(self, key: str, p: dict[str, str]) -> ExOrder:
        with self.lock:
            try:
                o = self.find(key, p)
            except BinanceError as e:
                if e.code == -2013:
                    raise BinanceError(-2011, "Unknown order sent.") from None
                raise
            if o.status not in ("NEW", "PARTIALLY_FILLED"):
                raise BinanceError(-2011, "Unknown order sent.")
            o.status = "CANCELED"
            o.update_time = self.stamp()
            return o

    def open_orders(self, key: str, symbol: str | None) -> list[ExOrder]:
        with self.lock:
            return [o for o in self.orders.values() if o.account == key and o.status in ("NEW", "PARTIALLY_FILLED")
                    and (symbol is None or o.symbol == symbol)]

    def my_trades(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            out = [t for t in self.trades if t["account"] == key and t["symbol"] == p.get("symbol")]
            if p.get("orderId"):
                out = [t for t in out if t["orderId"] == int(p["orderId"])]
            if p.get("fromId"):
                out = [t for t in out if t["id"] >= int(p["fromId"])]
            if p.get("startTime"):
                out = [t for t in out if t["time"] >= int(p["startTime"])]
            if p.get("endTime"):
                out = [t for t in out if t["time"] <= int(p["endTime"])]
            limit = min(int(p.get("limit", 500)), 1000)
            return [{k: v for k, v in t.items() if k != "account"} for t in out[:limit]]


class HasBook:
    """Base of the exchange's route mixins: they all act on its :class:`Book` (made on first use) and
    read the exchange's wall clock through :meth:`server_ms` (the host's, shifted by ``clock_offset_ms``)."""

    clock_offset_ms: int = 0

    def server_ms(self) -> int:
        """The exchange's wall clock (ms): the host's plus ``clock_offset_ms`` (see ``set_clock_offset``)."""
        return int(time.time() * 1000) + self.clock_offset_ms

    @property
    def book(self) -> Book:
        raise NotImplementedError("LoopbackExchange provides the book")
