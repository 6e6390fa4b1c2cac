"""Binance's signed account and order routes of the loopback exchange (a mixin of ``LoopbackExchange``):
API-key, HMAC-SHA256 signature and timestamp checks like Binance's, then account, order, open-order, all-orders
and my-trades handlers over the matching ``Book``."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from .market import binance_error
from .matching import BinanceError, HasBook, history


class AccountRoutes(HasBook):
    """The signed endpoints; the exchange provides ``keys``, ``recv_window_ms`` and ``book``."""

    keys: dict[str, str]
    recv_window_ms: int

    def _signed(self, handler: Any) -> Any:
        """Wrap a handler ``(key, params) -> json`` with Binance's API-key, signature and timestamp checks."""

        async def run(request: web.Request) -> web.Response:
            key = request.headers.get("X-MBX-APIKEY", "")
            if key not in self.keys:
                return binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            raw = request.query_string
            if request.method == "POST":
                body = await request.text()
                raw = raw + body if raw else body
            payload, sep, signature = raw.rpartition("&signature=")
            if not sep:
                return binance_error(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                            "or malformed.")
            want = hmac.new(self.keys[key].encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, signature):
                return binance_error(-1022, "Signature for this request is not valid.", 400)
            params = dict(request.query)
            if request.method == "POST":
                params.update({k: str(v) for k, v in (await request.post()).items()})
            params.pop("signature", None)
            try:
                ts = int(params.get("timestamp", ""))
                window = int(params.get("recvWindow", self.recv_window_ms))
            except ValueError:
                return binance_error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, "
                                            "or malformed.")
            now = self.server_ms()  # checked when the request is processed (a delayed one can expire)
            if ts > now + 1000 or now - ts > window:
                return binance_error(-1021, "Timestamp for this request is outside of the recvWindow.")
            try:
                return web.json_response(handler(key, params))
            except BinanceError as e:
                return binance_error(e.code, e.msg, e.status)

        return run

    def _account(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        book = self.book
        with book.lock:
            bal, locked = book.account(key), book.locked(key)
            rows = [{"asset": a, "free": f"{v - locked.get(a, 0.0):.8f}", "locked": f"{locked.get(a, 0.0):.8f}"}
                    for a, v in sorted(bal.items())]
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0", "seller": "0"},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.server_ms(),
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"], "uid": 1,
        }

    def _create_order(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        o = self.book.create(key, p)
        hidden = ("stopPrice", "icebergQty", "time", "updateTime", "isWorking")
        out = {k: v for k, v in o.wire().items() if k not in hidden}
        out["transactTime"] = o.time
        if o.stop_price:  # Binance's conditional field: stop orders answer with their stopPrice
            out["stopPrice"] = f"{o.stop_price:.8f}"
        out["fills"] = list(o.fills)
        return out

    def _get_order(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        return self.book.find(key, p).wire()

    def _cancel_order(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        o = self.book.cancel(key, p)
        out = o.wire()
        out["origClientOrderId"] = o.client_id
        return out

    def _open_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = p.get("symbol")
        if sid is not None and sid not in self.book.prices:
            raise BinanceError(-1121, "Invalid symbol.")
        return [o.wire() for o in self.book.open_orders(key, sid)]

    def _all_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = p.get("symbol")
        if sid not in self.book.prices:
            raise BinanceError(-1121, "Invalid symbol.")
        with self.book.lock:
            return [o.wire() for o in history(self.book.orders, key, sid, p)]

    def _cancel_open_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = p.get("symbol")
        if sid not in self.book.prices:
            raise BinanceError(-1121, "Invalid symbol.")
        with self.book.lock:
            open_ = self.book.open_orders(key, sid)
            if not open_:
                raise BinanceError(-2011, "Unknown order sent.")
            return [self._cancel_order(key, {"symbol": sid, "orderId": str(o.order_id)}) for o in open_]

    def _my_trades(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        if p.get("symbol") not in self.book.prices:
            raise BinanceError(-1121, "Invalid symbol.")
        return self.book.my_trades(key, p)
