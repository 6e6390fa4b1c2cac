"""A loopback exchange speaking the part of Binance's spot REST API that ccxt's ``binance`` class uses.

It runs an aiohttp server on 127.0.0.1 (ephemeral port) in a background thread and serves bars from
``workbench.data.sample_bars``, so the real ``ccxt.binance`` code runs over real HTTP: markets, klines,
ticker, depth, and HMAC-SHA256-signed account, order, open-order and my-trades endpoints checked like
Binance (unknown key -> -2015/401, bad signature -> -1022/400, stale timestamp -> -1021). Orders match
against the server's own price path (tests/exchange/matching.py). With ``clock=`` the server walks
the bars on a virtual clock (``advance()``, or by itself every ``bar_seconds``) and klines end at the
forming bar. Faults can be injected (HTTP errors, rate limits with Retry-After, dropped connections,
latency, and "order accepted but the response lost") and every request is logged.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ccxt
import numpy as np
import pandas as pd
from aiohttp import web

from workbench.data import available_symbols, sample_bars

from .matching import BinanceError, Book

INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
API_KEY, API_SECRET = "loopback-key", "loopback-secret"


@dataclass
class Request:
    """One logged request: method, path, query parameters and the status answered (0 = connection dropped)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float = field(default_factory=time.time)


@dataclass
class _Fault:
    path: str | None  # only requests whose path starts with this (None: any)
    status: int = 0  # 0 = drop the connection
    retry_after: float | None = None
    error: tuple[int, str] | None = None  # a Binance error body {"code", "msg"}
    after: int = 0  # matching requests to let through first
    method: str | None = None  # only requests with this HTTP method (None: any)
    kind: str = "fail"  # "fail" (status/drop before handling), "lose" (handle, then drop), "delay"
    delay: float = 0.0


def _binance_error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class LoopbackExchange:
    """A Binance-compatible spot exchange on localhost: ``start()``, ``stop()``, ``url``, ``ccxt_client()``.

    ``symbols`` are served from sample bars covering ``days`` days from 2024-01-01.
    """

    def __init__(self, symbols: tuple[str, ...] | None = None, days: int = 90, *, clock: Any = None,
                 bar_seconds: float | None = None, keys: dict[str, str] | None = None,
                 balances: dict[str, float] | None = None, recv_window_ms: int = 5000):
        """``clock``: a start time for the virtual clock (None: no clock, klines serve all days);
        ``bar_seconds``: with a clock, advance one bar every so many real seconds (None: only ``advance()``);
        ``keys``: API key -> secret accepted on signed endpoints; ``balances``: each account's start."""
        self.symbols = tuple(symbols or available_symbols())
        self.days = days
        self.keys = dict(keys or {API_KEY: API_SECRET})
        self.recv_window_ms = recv_window_ms
        self.clock = None if clock is None else pd.Timestamp(clock).tz_localize("UTC") \
            if pd.Timestamp(clock).tz is None else pd.Timestamp(clock)
        self.bar_seconds = bar_seconds
        self._start_balances = dict(balances or {"USDT": 100_000.0})
        self._book: Book | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.log: list[Request] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._bars: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.port: int | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self.port is None:
            raise RuntimeError("the loopback exchange is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackExchange":
        """Start serving in a background thread; returns self once the port is bound."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # surfaced to start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-exchange", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/ticker/24hr", self._ticker_24hr)
        app.router.add_get("/api/v3/ticker/price", self._ticker_price)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/account", self._signed(self._account))
        app.router.add_post("/api/v3/order", self._signed(self._create_order))
        app.router.add_get("/api/v3/order", self._signed(self._get_order))
        app.router.add_delete("/api/v3/order", self._signed(self._cancel_order))
        app.router.add_get("/api/v3/openOrders", self._signed(self._open_orders))
        app.router.add_delete("/api/v3/openOrders", self._signed(self._cancel_open_orders))
        app.router.add_get("/api/v3/myTrades", self._signed(self._my_trades))
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/ws/{stream}", self._ws)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        if self.clock is not None and self.bar_seconds:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.bar_seconds)
            self.advance()

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._thread is None:
            return
        if self._ticker is not None:
            self._loop.call_soon_threadsafe(self._ticker.cancel)
            self._ticker = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self.port = None

    def __enter__(self) -> "LoopbackExchange":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test controls ---------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        error: tuple[int, str] | None = None,
        path: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer ``n`` requests with HTTP ``status``, after letting ``after`` requests through; only requests
        whose path starts with ``path`` count, if given. 429 sends Binance's rate-limit error, other statuses
        plain text unless ``error=(code, msg)`` gives a Binance error body; ``retry_after`` adds Retry-After."""
        with self._lock:
            self._faults.extend(_Fault(path, status, retry_after, error, after if i == 0 else 0) for i in range(n))

    def drop_next(self, n: int = 1, *, path: str | None = None, after: int = 0) -> None:
        """Close the connection without answering ``n`` requests, after letting ``after`` through (see fail_next)."""
        with self._lock:
            self._faults.extend(_Fault(path, after=after if i == 0 else 0) for i in range(n))

    def lose_response_next(self, n: int = 1, *, path: str = "/api/v3/order", method: str | None = "POST",
                           after: int = 0) -> None:
        """Handle ``n`` matching requests (an order is accepted) and then drop the connection: the client
        never sees the answer ("order accepted but the response lost")."""
        with self._lock:
            self._faults.extend(_Fault(path, after=after if i == 0 else 0, method=method, kind="lose")
                                for i in range(n))

    def delay_next(self, n: int, seconds: float, *, path: str | None = None, method: str | None = None) -> None:
        """Answer ``n`` matching requests only after ``seconds`` (latency)."""
        with self._lock:
            self._faults.extend(_Fault(path, method=method, kind="delay", delay=seconds) for _ in range(n))

    def drop_websockets(self) -> int:
        """Close every open websocket connection (clients must reconnect); returns how many."""
        socks = list(self._sockets)
        for ws in socks:
            asyncio.run_coroutine_threadsafe(ws.close(code=1011, message=b"dropped by the test"), self._loop).result(5)
        return len(socks)

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    # ---- market and accounts ---------------------------------------------------------------------
    @property
    def book(self) -> Book:
        """The accounts, orders and trades (created on first use)."""
        if self._book is None:
            with self._lock:
                if self._book is None:
                    prices = {self._market_id(s): self._series(s, "1m") for s in self.symbols}
                    book = Book(prices, self._start_balances)
                    if self.clock is not None:
                        times = next(iter(prices.values()))[0]
                        book.index = int(np.searchsorted(times, self.clock.value // 1_000_000, "left"))
                        book.clocked = True
                    self._book = book
        return self._book

    def advance(self, n: int = 1) -> None:
        """Complete ``n`` bars of the virtual clock (resting limit orders fill against them)."""
        self.book.advance(n)

    def now(self) -> pd.Timestamp:
        """The open time of the bar forming now on the virtual clock."""
        return pd.Timestamp(self.book.now_ms(), unit="ms", tz="UTC")

    def price(self, symbol: str) -> float:
        """The current price of ``symbol`` (unified, e.g. ``BTC/USDT``)."""
        return self.book.price(self._market_id(symbol))

    def balances(self, key: str = API_KEY) -> dict[str, float]:
        """A copy of the balances of the account of ``key``."""
        with self.book.lock:
            return dict(self.book.account(key))

    def exchange_orders(self, key: str = API_KEY) -> list[dict[str, Any]]:
        """Every order of the account, as GET /api/v3/order answers it."""
        with self.book.lock:
            return [o.wire() for o in self.book.orders.values() if o.account == key]

    def exchange_trades(self, key: str = API_KEY) -> list[dict[str, Any]]:
        """Every trade (fill) of the account."""
        with self.book.lock:
            return [dict(t) for t in self.book.trades if t["account"] == key]

    def requests(self, path: str | None = None) -> list[Request]:
        """Logged requests, optionally only those to ``path`` (e.g. ``"/api/v3/klines"``)."""
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self.log.clear()

    def ccxt_client(self, **config: Any) -> ccxt.binance:
        """A real ``ccxt.binance`` pointed at this server, loading spot markets only (no keys needed)."""
        client = ccxt.binance({"enableRateLimit": True, "timeout": 5000, **config})
        return self.point(client)

    def point(self, client: Any) -> Any:
        """Point any ccxt binance client (sync or ``ccxt.async_support``) at this server; returns it."""
        api = {k: self.url + urlsplit(v).path for k, v in client.urls["api"].items() if isinstance(v, str)}
        if isinstance(client.urls["api"].get("ws"), dict):  # a ccxt.pro client: spot streams from /ws
            api["ws"] = {**client.urls["api"]["ws"], "spot": self.url.replace("http://", "ws://") + "/ws"}
        client.urls["api"] = api
        client.options["fetchMarkets"] = {"types": ["spot"]}
        client.options["fetchCurrencies"] = False
        client.options["fetchMargins"] = False
        return client

    def bars(self, symbol: str, interval: str = "1m") -> pd.DataFrame:
        """The bars this exchange serves for ``symbol`` (a unified symbol such as ``BTC/USDT``)."""
        return sample_bars(symbol, interval, days=self.days)

    # ---- HTTP ------------------------------------------------------------------------------------
    def _take_fault(self, path: str, method: str = "GET") -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if (f.path is None or path.startswith(f.path)) and (f.method is None or f.method == method):
                    if f.after > 0:
                        f.after -= 1
                        return None
                    del self._faults[i]
                    return f
        return None

    def _record(self, request: web.Request, status: int) -> None:
        with self._lock:
            self.log.append(Request(request.method, request.path, dict(request.query), status))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = self._take_fault(request.path, request.method)
        if fault is not None and fault.kind == "delay":
            await request.read()  # the request has arrived; only the processing is slow
            await asyncio.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "lose":
            response = await handler(request)
            self._record(request, 0)
            request.transport.abort()  # accepted, but the client never hears of it
            raise asyncio.CancelledError
        if fault is not None and fault.status == 0:
            self._record(request, 0)
            request.transport.abort()  # the client sees the connection dropped mid-request
            raise asyncio.CancelledError
        if fault is not None:
            self._record(request, fault.status)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            if fault.error is not None:
                return web.json_response({"code": fault.error[0], "msg": fault.error[1]}, status=fault.status, headers=headers)
            if fault.status == 429:
                body = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE."}
                return web.json_response(body, status=429, headers=headers)
            return web.Response(text="Service Unavailable.", status=fault.status, headers=headers)
        try:
            response = await handler(request)
        except web.HTTPException as e:
            self._record(request, e.status)
            raise
        self._record(request, response.status)
        response.headers["x-mbx-used-weight-1m"] = str(len(self.log))
        return response

    def _market_id(self, symbol: str) -> str:
        return symbol.replace("/", "")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        if "symbols" in request.query:
            wanted_list = json.loads(request.query["symbols"])
        else:
            wanted_list = [wanted] if wanted else None
        symbols = []
        for s in self.symbols:
            base, quote = s.split("/")
            if wanted_list is not None and self._market_id(s) not in wanted_list:
                continue
            symbols.append({
                "symbol": self._market_id(s), "status": "TRADING",
                "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "1000000.00000000", "tickSize": "0.00000100"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000000.00000000", "stepSize": "0.00001000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        if wanted_list is not None and not symbols:
            return _binance_error(-1121, "Invalid symbol.")
        return web.json_response({
            "timezone": "UTC", "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [], "symbols": symbols,
        })

    def _series(self, symbol: str, interval: str) -> tuple[np.ndarray, np.ndarray]:
        """Open times (ms) and OHLCV rows for a symbol/interval, computed once."""
        key = (symbol, interval)
        if key not in self._bars:
            df = self.bars(symbol, interval)
            self._bars[key] = (df.index.asi8 // 1_000_000, df.to_numpy())
        return self._bars[key]

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        by_id = {self._market_id(s): s for s in self.symbols}
        if "symbol" not in q:
            return _binance_error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if q["symbol"] not in by_id:
            return _binance_error(-1121, "Invalid symbol.")
        interval = q.get("interval")
        if interval not in INTERVALS:
            return _binance_error(-1120, "Invalid interval.")
        try:
            limit = int(q.get("limit", DEFAULT_LIMIT))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= MAX_LIMIT:
            return _binance_error(-1130, "Data sent for parameter 'limit' is not valid.")
        times, rows = self._series(by_id[q["symbol"]], interval)
        step = int(times[1] - times[0]) if len(times) > 1 else 60_000
        forming = None
        if self.clock is not None:  # nothing after the forming bar; it shows only its open so far
            now = self.book.now_ms()
            cut = int(np.searchsorted(times, now, "right"))
            times, rows = times[:cut], rows[:cut].copy()
            if cut:
                forming = cut - 1
                o = rows[forming][0]
                rows[forming] = (o, o, o, o, 0.0)
        lo = 0 if start is None else int(np.searchsorted(times, start, "left"))
        hi = len(times) if end is None else int(np.searchsorted(times, end, "right"))
        lo, hi = (lo, min(hi, lo + limit)) if start is not None else (max(lo, hi - limit), hi)
        out = [
            [int(t), f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{c:.8f}", f"{v:.8f}", int(t) + step - 1,
             f"{v * c:.8f}", 100, f"{v / 2:.8f}", f"{v * c / 2:.8f}", "0"]
            for t, (o, h, l, c, v) in zip(times[lo:hi].tolist(), rows[lo:hi].tolist())
        ]
        return web.json_response(out)

    # ---- market data beyond klines ---------------------------------------------------------------
    def _symbol_param(self, request: web.Request) -> str:
        sid = request.query.get("symbol", "")
        if sid not in {self._market_id(s) for s in self.symbols}:
            raise BinanceError(-1121, "Invalid symbol.")
        return sid

    def _ticker_row(self, sid: str) -> dict[str, Any]:
        times, rows = self.book.prices[sid]
        i = self.book.index
        lo = max(i - 1440, 0)
        day = rows[lo:i + 1]
        last = float(rows[i][0])
        first = float(day[0][0])
        vol = float(day[:-1, 4].sum()) if len(day) > 1 else 0.0
        return {
            "symbol": sid, "priceChange": f"{last - first:.8f}",
            "priceChangePercent": f"{(last / first - 1) * 100:.3f}", "weightedAvgPrice": f"{last:.8f}",
            "prevClosePrice": f"{first:.8f}", "lastPrice": f"{last:.8f}", "lastQty": "0.00100000",
            "bidPrice": f"{last * 0.9999:.8f}", "bidQty": "1.00000000", "askPrice": f"{last * 1.0001:.8f}",
            "askQty": "1.00000000", "openPrice": f"{first:.8f}", "highPrice": f"{float(day[:, 1].max()):.8f}",
            "lowPrice": f"{float(day[:, 2].min()):.8f}", "volume": f"{vol:.8f}", "quoteVolume": f"{vol * last:.8f}",
            "openTime": int(times[lo]), "closeTime": int(times[i]) + 59_999, "firstId": 1, "lastId": 1, "count": 1,
        }

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._ticker_row(self._symbol_param(request)))
        except BinanceError as e:
            return _binance_error(e.code, e.msg, e.status)

    async def _ticker_price(self, request: web.Request) -> web.Response:
        try:
            sid = self._symbol_param(request)
        except BinanceError as e:
            return _binance_error(e.code, e.msg, e.status)
        return web.json_response({"symbol": sid, "price": f"{self.book.price(sid):.8f}"})

    async def _depth(self, request: web.Request) -> web.Response:
        """A synthetic book around the current price: levels 1 bp apart, 1 unit each."""
        try:
            sid = self._symbol_param(request)
            limit = int(request.query.get("limit", 100))
        except BinanceError as e:
            return _binance_error(e.code, e.msg, e.status)
        except ValueError:
            return _binance_error(-1100, "Illegal characters found in parameter 'limit'.")
        if limit not in (5, 10, 20, 50, 100, 500, 1000, 5000):
            return _binance_error(-1100, "Illegal characters found in parameter 'limit'; legal range is '5, 10, 20, 50, 100, 500, 1000, 5000'.")
        p = self.book.price(sid)
        bids = [[f"{p * (1 - 1e-4 * (k + 1)):.8f}", "1.00000000"] for k in range(limit)]
        asks = [[f"{p * (1 + 1e-4 * (k + 1)):.8f}", "1.00000000"] for k in range(limit)]
        return web.json_response({"lastUpdateId": self.book.index, "bids": bids, "asks": asks})

    # ---- signed endpoints ------------------------------------------------------------------------
    def _signed(self, handler: Any) -> Any:
        """Wrap a handler ``(key, params) -> json`` with Binance's API-key, signature and timestamp checks."""

        async def run(request: web.Request) -> web.Response:
            key = request.headers.get("X-MBX-APIKEY", "")
            if key not in self.keys:
                return _binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            raw = request.query_string
            if request.method == "POST":
                body = await request.text()
                raw = raw + body if raw else body
            payload, sep, signature = raw.rpartition("&signature=")
            if not sep:
                return _binance_error(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
            want = hmac.new(self.keys[key].encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, signature):
                return _binance_error(-1022, "Signature for this request is not valid.", 400)
            params = dict(request.query)
            if request.method == "POST":
                params.update({k: v for k, v in (await request.post()).items()})
            params.pop("signature", None)
            try:
                ts = int(params.get("timestamp", ""))
                window = int(params.get("recvWindow", self.recv_window_ms))
            except ValueError:
                return _binance_error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
            now = int(time.time() * 1000)
            if ts > now + 1000 or now - ts > window:
                return _binance_error(-1021, "Timestamp for this request is outside of the recvWindow.")
            try:
                return web.json_response(handler(key, params))
            except BinanceError as e:
                return _binance_error(e.code, e.msg, e.status)

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
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": int(time.time() * 1000),
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"], "uid": 1,
        }

    def _create_order(self, key: str, p: dict[str, str]) -> dict[str, Any]:
        o = self.book.create(key, p)
        out = {k: v for k, v in o.wire().items() if k not in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking")}
        out["transactTime"] = o.time
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

    # ---- websocket kline streams (the subset ccxt.pro's binance.watch_ohlcv uses) -------------------
    def _kline_event(self, sid: str, i: int, final: bool) -> dict[str, Any]:
        times, rows = self.book.prices[sid]
        o, h, lo, c, v = (float(x) for x in rows[i])
        if not final:
            h = lo = c = o
            v = 0.0
        t = int(times[i])
        k = {"t": t, "T": t + 59_999, "s": sid, "i": "1m", "f": 0, "L": 0, "o": f"{o:.8f}", "c": f"{c:.8f}",
             "h": f"{h:.8f}", "l": f"{lo:.8f}", "v": f"{v:.8f}", "n": 1, "x": final, "q": f"{v * c:.8f}",
             "V": "0", "Q": "0", "B": "0"}
        return {"e": "kline", "E": int(time.time() * 1000), "s": sid, "k": k}

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        """Binance's combined-stream socket: SUBSCRIBE to ``<symbol>@kline_1m``; each completed bar is sent
        final (x=true), then the forming bar. Needs the virtual clock."""
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._record(request, 101)
        self._sockets.add(ws)
        subs: list[str] = []
        sent: dict[str, int] = {}

        async def push() -> None:
            while not ws.closed:
                for sid in list(subs):
                    now = self.book.index
                    last = sent.get(sid)
                    start = now if last is None else last
                    for i in range(start, now):
                        await ws.send_json(self._kline_event(sid, i, final=True))
                    if last != now:
                        await ws.send_json(self._kline_event(sid, now, final=False))
                        sent[sid] = now
                await asyncio.sleep(0.005)

        pusher = asyncio.get_running_loop().create_task(push())
        try:
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if req.get("method") == "SUBSCRIBE":
                    for stream in req.get("params", []):
                        sid = stream.split("@")[0].upper()
                        if sid in self.book.prices and sid not in subs:
                            subs.append(sid)
                    await ws.send_json({"result": None, "id": req.get("id")})
                elif req.get("method") == "UNSUBSCRIBE":
                    await ws.send_json({"result": None, "id": req.get("id")})
        finally:
            pusher.cancel()
            self._sockets.discard(ws)
        return ws
