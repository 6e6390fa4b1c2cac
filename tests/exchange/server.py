"""A loopback exchange speaking the part of Binance's spot REST API that ccxt's public market-data calls use.

It runs an aiohttp server on 127.0.0.1 (ephemeral port) in a background thread and serves bars from
``workbench.data.sample_bars``, so the real ``ccxt.binance`` code runs over real HTTP. Faults can be
injected (HTTP errors, rate limits with Retry-After, dropped connections) and every request is logged.
"""
from __future__ import annotations

import asyncio
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

INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


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


def _binance_error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class LoopbackExchange:
    """A Binance-compatible spot exchange on localhost: ``start()``, ``stop()``, ``url``, ``ccxt_client()``.

    ``symbols`` are served from sample bars covering ``days`` days from 2024-01-01.
    """

    def __init__(self, symbols: tuple[str, ...] | None = None, days: int = 90):
        self.symbols = tuple(symbols or available_symbols())
        self.days = days
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
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._thread is None:
            return
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
        client.urls["api"] = {k: self.url + urlsplit(v).path for k, v in client.urls["api"].items()}
        client.options["fetchMarkets"] = {"types": ["spot"]}
        client.options["fetchCurrencies"] = False
        return client

    def bars(self, symbol: str, interval: str = "1m") -> pd.DataFrame:
        """The bars this exchange serves for ``symbol`` (a unified symbol such as ``BTC/USDT``)."""
        return sample_bars(symbol, interval, days=self.days)

    # ---- HTTP ------------------------------------------------------------------------------------
    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.path is None or path.startswith(f.path):
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
        fault = self._take_fault(request.path)
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
        lo = 0 if start is None else int(np.searchsorted(times, start, "left"))
        hi = len(times) if end is None else int(np.searchsorted(times, end, "right"))
        lo, hi = (lo, min(hi, lo + limit)) if start is not None else (max(lo, hi - limit), hi)
        out = [
            [int(t), f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{c:.8f}", f"{v:.8f}", int(t) + step - 1,
             f"{v * c:.8f}", 100, f"{v / 2:.8f}", f"{v * c / 2:.8f}", "0"]
            for t, (o, h, l, c, v) in zip(times[lo:hi].tolist(), rows[lo:hi].tolist())
        ]
        return web.json_response(out)
