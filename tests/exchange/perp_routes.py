"""Binance USDⓈ-M futures REST routes of the loopback exchange (a mixin of ``LoopbackExchange``): the
``/fapi`` subset ccxt's ``binance`` class uses for ``BASE/QUOTE:QUOTE`` swaps. Public: exchangeInfo,
klines, premiumIndex, fundingRate, 24h ticker, price, time. Signed (the spot signing rules): order
create/get/cancel, openOrders, allOrders, allOpenOrders, userTrades, positionRisk (v2, v3), account (v2,
v3), balance (v2, v3), leverage, leverageBracket, income, and the conditional orders' algoOrder
create/get/cancel, openAlgoOrders, allAlgoOrders and algoOpenOrders (cancel all; perp_algo.py). Public also:
depth (a synthetic book). The rules of the book are in perp.py."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from .market import binance_error
from .matching import BinanceError, HasBook, history
from .perp import FUNDING_MS, MAINT_MARGIN, MAX_LEVERAGE, MIN_NOTIONAL, SETTLE, PerpBook

MAX_KLINES = 1500  # fapi klines: default 500, max 1500


def perp_id(symbol: str) -> str:
    """The market id of a unified swap symbol: ``BTC/USDT:USDT`` -> ``BTCUSDT``."""
    base, rest = symbol.split("/")
    return base + rest.split(":")[0]


def _n(x: float, places: int = 8) -> str:
    return f"{x:.{places}f}"


class PerpRoutes(HasBook):
    """The ``/fapi`` routes; the exchange provides ``perp`` (a :class:`PerpBook` or None), ``_signed``,
    ``_klines``, ``_ticker_row`` and ``halted``."""

    perp_symbols: tuple[str, ...]
    halted: dict[str, str]
    _signed: Callable[[Any], Any]
    _klines: Callable[[web.Request], Any]
    _ticker_row: Callable[[str], dict[str, Any]]

    @property
    def perp(self) -> PerpBook:
        book = self.book
        if book.perp is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return book.perp

    # ---- test controls ----------------------------------------------------------------------------
    def set_funding_rate(self, symbol: str, rate: float) -> None:
        """``symbol`` (``BTC/USDT:USDT``) funds at ``rate`` at every funding time, past and future."""
        self.perp.rates[perp_id(symbol)] = float(rate)

    def set_max_leverage(self, symbol: str, leverage: int) -> None:
        """The leverage bracket of ``symbol`` tops out at ``leverage``."""
        self.perp.max_leverage[perp_id(symbol)] = int(leverage)

    def perp_position(self, symbol: str, key: str = "loopback-key") -> tuple[float, float]:
        """(signed amount, entry price) of the account's position in ``symbol``."""
        with self.book.lock:
            p = self.perp.position(key, perp_id(symbol))
            return p.amount, p.entry

    def perp_wallet(self, key: str = "loopback-key") -> float:
        """The account's futures wallet balance (USDT): deposits + realized P&L - fees + funding."""
        with self.book.lock:
            return self.perp._wallet(key)[SETTLE]

    def perp_income(self, kind: str | None = None, key: str = "loopback-key") -> list[dict[str, Any]]:
        """The account's income records (``FUNDING_FEE``, ``REALIZED_PNL``, ``COMMISSION``), oldest first."""
        with self.book.lock:
            return [dict(i) for i in self.perp.income if i["account"] == key and kind in (None, i["incomeType"])]

    def perp_trades(self, key: str = "loopback-key") -> list[dict[str, Any]]:
        """Every futures trade (fill) of the account."""
        with self.book.lock:
            return [dict(t) for t in self.perp.trades if t["account"] == key]

    def add_perp_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/fapi/v1/ping", self._fapi_ping)
        r.add_get("/fapi/v1/time", self._fapi_time)
        r.add_get("/fapi/v1/exchangeInfo", self._fapi_exchange_info)
        r.add_get("/fapi/v1/klines", self._fapi_klines)
        r.add_get("/fapi/v1/premiumIndex", self._public(self._premium_index))
        r.add_get("/fapi/v1/fundingRate", self._public(self._funding_rate))
        r.add_get("/fapi/v1/ticker/24hr", self._public(self._fapi_ticker))
        for path in ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"):
            r.add_get(path, self._public(self._fapi_price))
        r.add_post("/fapi/v1/order", self._signed(lambda k, p: self.perp.create(k, p).wire()))
        r.add_get("/fapi/v1/order", self._signed(lambda k, p: self.perp.find(k, p).wire()))
        r.add_delete("/fapi/v1/order", self._signed(lambda k, p: self.perp.cancel(k, p).wire()))
        r.add_get("/fapi/v1/openOrders", self._signed(self._fapi_open_orders))
        r.add_get("/fapi/v1/allOrders", self._signed(self._fapi_all_orders))
        r.add_get("/fapi/v1/depth", self._public(self._fapi_depth))
        r.add_post("/fapi/v1/algoOrder", self._signed(lambda k, p: self.perp.algo.create(k, p).wire()))
        r.add_get("/fapi/v1/algoOrder", self._signed(lambda k, p: self.perp.algo.find(k, p).wire()))
        r.add_delete("/fapi/v1/algoOrder", self._signed(lambda k, p: self.perp.algo.cancel(k, p)))
        r.add_get("/fapi/v1/openAlgoOrders", self._signed(lambda k, p: [
            o.wire() for o in self.perp.algo.open_orders(k, self._sid(p, required=False))]))
        r.add_get("/fapi/v1/allAlgoOrders", self._signed(self._all_algo_orders))
        r.add_delete("/fapi/v1/algoOpenOrders", self._signed(self._cancel_algo_orders))
        r.add_delete("/fapi/v1/allOpenOrders", self._signed(self._fapi_cancel_all))
        r.add_get("/fapi/v1/userTrades", self._signed(self._user_trades))
        r.add_get("/fapi/v1/income", self._signed(self._income))
        for v in ("v2", "v3"):
            r.add_get(f"/fapi/{v}/positionRisk", self._signed(self._position_risk))
            r.add_get(f"/fapi/{v}/account", self._signed(self._fapi_account))
            r.add_get(f"/fapi/{v}/balance", self._signed(lambda k, p: [self._asset(k)]))
        r.add_post("/fapi/v1/leverage", self._signed(self._set_leverage))
        r.add_get("/fapi/v1/leverageBracket", self._signed(self._brackets))

    def _public(self, handler: Callable[[dict[str, str]], Any]) -> Any:
        async def run(request: web.Request) -> web.Response:
            try:
                return web.json_response(handler(dict(request.query)))
            except BinanceError as e:
                return binance_error(e.code, e.msg, e.status)
        return run

    def _sid(self, p: dict[str, str], required: bool = True) -> str | None:
        sid = p.get("symbol")
        if sid is None and not required:
            return None
        if sid not in self.perp.symbols:
            raise BinanceError(-1121, "Invalid symbol.")
        return sid

    # ---- public ---------------------------------------------------------------------------------
    async def _fapi_ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _fapi_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.server_ms()})

    async def _fapi_exchange_info(self, request: web.Request) -> web.Response:
        rows = []
        for symbol in self.perp_symbols:
            base, rest = symbol.split("/")
            quote = rest.split(":")[0]
            sid = base + quote
            rows.append({
                "symbol": sid, "pair": sid, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": self.halted.get(symbol.replace("/", ""), "TRADING"),
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": base,
                "quoteAsset": quote, "marginAsset": SETTLE, "pricePrecision": 2, "quantityPrecision": 3,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": f"{MIN_NOTIONAL:g}"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"],
            })
        return web.json_response({
            "timezone": "UTC", "serverTime": self.server_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                           {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
            "exchangeFilters": [], "assets": [{"asset": SETTLE, "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": rows,
        })

    async def _fapi_klines(self, request: web.Request) -> web.Response:
        """The spot klines of the same market id (the perpetual trades on its price path); limit up to 1500."""
        book = self.book
        if book.perp is None or request.query.get("symbol") not in book.perp.symbols:
            return binance_error(-1121, "Invalid symbol.")
        limit = request.query.get("limit")
        if limit is not None and limit.isdigit() and 1000 < int(limit) <= MAX_KLINES:
            request = request.clone(rel_url=request.rel_url.update_query({"limit": "1000"}))
        return await self._klines(request)

    def _premium(self, sid: str) -> dict[str, Any]:
        now = self.book.now_ms()
        mark, nxt = self.perp.mark(sid), (now // FUNDING_MS + 1) * FUNDING_MS
        return {"symbol": sid, "markPrice": _n(mark), "indexPrice": _n(mark), "estimatedSettlePrice": _n(mark),
                "lastFundingRate": _n(self.perp.rate(sid, nxt)), "interestRate": "0.00010000",
                "nextFundingTime": nxt, "time": now}

    def _premium_index(self, p: dict[str, str]) -> Any:
        sid = self._sid(p, required=False)
        return self._premium(sid) if sid else [self._premium(s) for s in self.perp.symbols]

    def _funding_rate(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """Funding history, oldest first: ``startTime``/``endTime`` bound it; without both, the latest
        ``limit`` (default 100, at most 1000)."""
        sids = [str(self._sid(p))] if "symbol" in p else list(self.perp.symbols)
        limit = int(p.get("limit", 100))
        if not 1 <= limit <= 1000:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        now = self.book.now_ms() if self.book.clocked else 2**62
        rows: list[dict[str, Any]] = [
            {"symbol": s, "fundingTime": t, "fundingRate": _n(self.perp.rate(s, t)),
             "markPrice": _n(self.perp.price_at(s, t))} for t in self.perp.funding_times(now) for s in sids]
        if "startTime" in p:
            rows = [r for r in rows if r["fundingTime"] >= int(p["startTime"])]
        if "endTime" in p:
            rows = [r for r in rows if r["fundingTime"] <= int(p["endTime"])]
        return rows[:limit] if "startTime" in p else rows[-limit:]

    def _fapi_ticker(self, p: dict[str, str]) -> Any:
        """Binance's futures 24h ticker: the spot row's fields less bid/ask and prevClosePrice."""
        def row(s: str) -> dict[str, Any]:
            spot = self._ticker_row(s)
            return {k: v for k, v in spot.items() if not k.startswith(("bid", "ask", "prevClose"))}
        sid = self._sid(p, required=False)
        return row(sid) if sid else [row(s) for s in self.perp.symbols]

    def _fapi_price(self, p: dict[str, str]) -> Any:
        def row(s: str) -> dict[str, Any]:
            return {"symbol": s, "price": _n(self.perp.mark(s)), "time": self.book.now_ms()}
        sid = self._sid(p, required=False)
        return row(sid) if sid else [row(s) for s in self.perp.symbols]

    # ---- signed ---------------------------------------------------------------------------------
    def _fapi_open_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        return [o.wire() for o in self.perp.open_orders(key, self._sid(p, required=False))]

    def _fapi_depth(self, p: dict[str, str]) -> dict[str, Any]:
        """A synthetic book around the mark: levels 1 bp apart, 1 contract each (limit 5 to 1000, default 500)."""
        sid = str(self._sid(p))
        limit = int(p.get("limit") or 500) if str(p.get("limit") or "500").isdigit() else -1
        if limit not in (5, 10, 20, 50, 100, 500, 1000):
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        px, now = self.perp.mark(sid), self.book.now_ms()
        return {"lastUpdateId": self.book.index, "E": now, "T": now,
                "bids": [[f"{px * (1 - 1e-4 * (k + 1)):.2f}", "1.000"] for k in range(limit)],
                "asks": [[f"{px * (1 + 1e-4 * (k + 1)):.2f}", "1.000"] for k in range(limit)]}

    def _fapi_all_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = str(self._sid(p))
        with self.book.lock:
            return [o.wire() for o in history(self.perp.orders, key, sid, p)]

    def _all_algo_orders(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = str(self._sid(p))
        with self.book.lock:
            return [o.wire() for o in history(self.perp.algo.orders, key, sid, p, id_param="algoId")]

    def _cancel_algo_orders(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        """Cancel every open (not yet triggered) conditional order of the symbol."""
        sid = self._sid(p)
        with self.book.lock:
            for o in self.perp.algo.open_orders(key, sid):
                if o.status == "NEW":
                    self.perp.algo.cancel(key, {"algoId": str(o.algo_id)})
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _fapi_cancel_all(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        sid = self._sid(p)
        with self.book.lock:
            for o in self.perp.open_orders(key, sid):
                self.perp.cancel(key, {"symbol": o.symbol, "orderId": str(o.order_id)})
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _user_trades(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = self._sid(p)
        with self.book.lock:
            out = [t for t in self.perp.trades if t["account"] == key and t["symbol"] == sid]
        for name, keep in (("orderId", lambda t, v: t["orderId"] == int(v)),
                           ("fromId", lambda t, v: t["id"] >= int(v)),
                           ("startTime", lambda t, v: t["time"] >= int(v)),
                           ("endTime", lambda t, v: t["time"] <= int(v))):
            if p.get(name):
                out = [t for t in out if keep(t, p[name])]
        limit = min(int(p.get("limit", 500)), 1000)
        return [{k: v for k, v in t.items() if k != "account"} for t in out[:limit]]

    def _income(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        """Income history, oldest first; without a time range, the last 7 days (default limit 100, max 1000)."""
        with self.book.lock:
            out = [i for i in self.perp.income if i["account"] == key]
        if p.get("symbol"):
            out = [i for i in out if i["symbol"] == p["symbol"]]
        if p.get("incomeType"):
            out = [i for i in out if i["incomeType"] == p["incomeType"]]
        if not p.get("startTime") and not p.get("endTime"):
            out = [i for i in out if i["time"] >= self.book.stamp() - 7 * 86_400_000]
        if p.get("startTime"):
            out = [i for i in out if i["time"] >= int(p["startTime"])]
        if p.get("endTime"):
            out = [i for i in out if i["time"] <= int(p["endTime"])]
        limit = min(int(p.get("limit", 100)), 1000)
        return [{k: v for k, v in i.items() if k != "account"} for i in out[:limit]]

    def _position_row(self, key: str, sid: str) -> dict[str, Any]:
        perp = self.perp
        pos, mark, lev = perp.position(key, sid), perp.mark(sid), perp.lev(key, sid)
        notional = pos.amount * mark
        return {
            "symbol": sid, "positionSide": "BOTH", "positionAmt": _n(pos.amount, 3), "entryPrice": _n(pos.entry),
            "breakEvenPrice": _n(pos.entry), "markPrice": _n(mark),
            "unRealizedProfit": _n(pos.amount * (mark - pos.entry)),
            "liquidationPrice": _n(perp.liquidation_price(key, sid)), "isolatedMargin": "0", "notional": _n(notional),
            "marginAsset": SETTLE, "isolatedWallet": "0", "initialMargin": _n(abs(notional) / lev),
            "maintMargin": _n(abs(notional) * MAINT_MARGIN), "positionInitialMargin": _n(abs(notional) / lev),
            "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
            "leverage": str(lev), "marginType": "cross", "isAutoAddMargin": "false",
            "maxNotionalValue": "9000000000", "updateTime": pos.update_time,
        }

    def _position_risk(self, key: str, p: dict[str, str]) -> list[dict[str, Any]]:
        sid = self._sid(p, required=False)
        with self.book.lock:
            return [self._position_row(key, s) for s in self.perp.symbols if sid in (None, s)]

    def _asset(self, key: str) -> dict[str, Any]:
        perp = self.perp
        wallet, upnl = perp._wallet(key)[SETTLE], perp.unrealized(key)
        im = perp.position_margin(key) + perp.order_margin(key)
        return {"accountAlias": "loopback", "asset": SETTLE, "walletBalance": _n(wallet), "balance": _n(wallet),
                "unrealizedProfit": _n(upnl), "crossUnPnl": _n(upnl), "marginBalance": _n(wallet + upnl),
                "maintMargin": "0", "initialMargin": _n(im), "positionInitialMargin": _n(perp.position_margin(key)),
                "openOrderInitialMargin": _n(perp.order_margin(key)), "crossWalletBalance": _n(wallet),
                "availableBalance": _n(perp.available(key)), "maxWithdrawAmount": _n(max(perp.available(key), 0.0)),
                "marginAvailable": True, "updateTime": self.book.stamp()}

    def _fapi_account(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        with self.book.lock:
            asset = self._asset(key)
            positions = [self._position_row(key, s) for s in self.perp.symbols]
        return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": False, "updateTime": 0,
                "multiAssetsMargin": False, "totalWalletBalance": asset["walletBalance"],
                "totalUnrealizedProfit": asset["unrealizedProfit"], "totalMarginBalance": asset["marginBalance"],
                "totalInitialMargin": asset["initialMargin"], "availableBalance": asset["availableBalance"],
                "maxWithdrawAmount": asset["maxWithdrawAmount"], "assets": [asset], "positions": positions}

    def _set_leverage(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        sid = self._sid(p)
        try:
            lev = int(p.get("leverage", ""))
        except ValueError:
            raise BinanceError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, "
                                      "or malformed.") from None
        with self.book.lock:
            self.perp.set_leverage(key, str(sid), lev)
        return {"leverage": lev, "maxNotionalValue": "9000000000", "symbol": sid}

    def _brackets(self, key: str, p: dict[str, str]) -> Any:
        def one(s: str) -> dict[str, Any]:
            top = self.perp.max_leverage.get(s, MAX_LEVERAGE)
            return {"symbol": s, "notionalCoef": 1.0, "brackets": [
                {"bracket": 1, "initialLeverage": top, "notionalCap": 9000000000, "notionalFloor": 0,
                 "maintMarginRatio": MAINT_MARGIN, "cum": 0.0}]}
        sid = self._sid(p, required=False)
        return one(sid) if sid else [one(s) for s in self.perp.symbols]

