"""A loopback exchange speaking the part of Binance's spot REST API that ccxt's ``binance`` class uses.

It runs an aiohttp server on 127.0.0.1 (ephemeral port) in a background thread and serves bars from
``workbench.data.sample_bars``, so the real ``ccxt.binance`` code runs over real HTTP: markets, klines,
ticker, depth, and HMAC-SHA256-signed account, order, open-order and my-trades endpoints checked like
Binance (unknown key -> -2015/401, bad signature -> -1022/400, a timestamp more than 1 s ahead of the
exchange's clock or older than recvWindow when the request is processed -> -1021; ``set_clock_offset``
moves the exchange's clock away from the host's). A ``newClientOrderId`` must be unique among OPEN
orders only, Binance's rule: a repeat is a new order once the earlier one is filled or canceled. Orders match
against the server's own price path (tests/exchange/matching.py). With ``clock=`` the server walks
the bars on a virtual clock (``advance()``, or by itself every ``bar_seconds``) and klines end at the
forming bar. Faults can be injected (HTTP errors, rate limits with Retry-After, dropped connections,
latency, and "order accepted but the response lost") and every request is logged.

This module is the server, its lifecycle and test controls; the routes live in ``market.py`` (public
data), ``accounts.py`` (signed endpoints) and ``streams.py`` (websocket klines), faults and the request
log in ``faults.py``.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import urlsplit

import ccxt
import numpy as np
import pandas as pd
from aiohttp import web

from workbench.data import available_symbols, sample_bars

from .accounts import AccountRoutes
from .faults import FaultsMixin, Request
from .market import DEFAULT_LIMIT, INTERVALS, MAX_LIMIT, MarketRoutes
from .matching import Book
from .perp import PerpBook
from .perp_routes import PerpRoutes, perp_id
from .stops import StopControls
from .streams import StreamRoutes

API_KEY, API_SECRET = "loopback-key", "loopback-secret"
__all__ = ["API_KEY", "API_SECRET", "DEFAULT_LIMIT", "INTERVALS", "MAX_LIMIT", "LoopbackExchange", "Request"]


class LoopbackExchange(FaultsMixin, MarketRoutes, AccountRoutes, StreamRoutes, StopControls, PerpRoutes):
    """A Binance-compatible spot exchange on localhost: ``start()``, ``stop()``, ``url``, ``ccxt_client()``.

    ``symbols`` are served from sample bars covering ``days`` days from 2024-01-01. ``perps`` (unified swap
    symbols such as ``BTC/USDT:USDT``) add USDⓈ-M perpetuals on the same price paths (perp.py); their spot
    symbols are served too.
    """

    def __init__(self, symbols: tuple[str, ...] | None = None, days: int = 90, *, clock: Any = None,
                 bar_seconds: float | None = None, keys: dict[str, str] | None = None,
                 balances: dict[str, float] | None = None, recv_window_ms: int = 5000,
                 perps: tuple[str, ...] = (), perp_balances: dict[str, float] | None = None):
        """``clock``: a start time for the virtual clock (None: no clock, klines serve all days);
        ``bar_seconds``: with a clock, advance one bar every so many real seconds (None: only ``advance()``);
        ``keys``: API key -> secret accepted on signed endpoints; ``balances``: each account's start;
        ``perps``: perpetual markets; ``perp_balances``: each account's futures wallet at the start."""
        self.symbols = tuple(symbols or available_symbols())
        self.perp_symbols = tuple(perps)
        spot = [p.split(":")[0] for p in self.perp_symbols]
        self.symbols += tuple(s for s in dict.fromkeys(spot) if s not in self.symbols)
        self._perp_balances = dict(perp_balances or {"USDT": 100_000.0})
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
        self._init_faults()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bars: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.port: int | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self.port is None:
            raise RuntimeError("the loopback exchange is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackExchange:
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
                runner = loop.run_until_complete(self._serve())
            except BaseException as e:  # surfaced to start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-exchange", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> web.AppRunner:
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
        app.router.add_get("/api/v3/allOrders", self._signed(self._all_orders))
        app.router.add_delete("/api/v3/openOrders", self._signed(self._cancel_open_orders))
        app.router.add_get("/api/v3/myTrades", self._signed(self._my_trades))
        self.add_perp_routes(app)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/ws/{stream}", self._ws)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = runner.addresses[0][1]
        if self.clock is not None and self.bar_seconds:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(self.bar_seconds))
        return runner

    async def _tick(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.advance()

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._thread is None or self._loop is None:
            return
        if self._ticker is not None:
            self._loop.call_soon_threadsafe(self._ticker.cancel)
            self._ticker = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self.port = None

    def __enter__(self) -> LoopbackExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- market and accounts ---------------------------------------------------------------------
    @property
    def book(self) -> Book:
        """The accounts, orders and trades (created on first use)."""
        if self._book is None:
            with self._lock:
                if self._book is None:
                    prices = {self._market_id(s): self._series(s, "1m") for s in self.symbols}
                    book = Book(prices, self._start_balances)
                    if self.perp_symbols:
                        book.perp = PerpBook(book, {perp_id(s): s for s in self.perp_symbols}, self._perp_balances)
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

    def set_clock_offset(self, seconds: float) -> None:
        """The exchange's clock runs ``seconds`` ahead of the host's (negative: behind): /api/v3/time answers
        with it and signed requests are checked against it like Binance (-1021 when a request's timestamp
        is more than 1 s ahead of it or older than its recvWindow)."""
        self.clock_offset_ms = round(seconds * 1000)

    def balances(self, key: str = API_KEY) -> dict[str, float]:
        """A copy of the balances of the account of ``key``."""
        with self.book.lock:
            return dict(self.book.account(key))

    def exchange_orders(self, key: str = API_KEY) -> list[dict[str, Any]]:
        """Every order of the account, as GET /api/v3/order answers it."""
        with self.book.lock:
            return [o.wire() for o in self.book.orders.values() if o.account == key]

    def manual_order(self, symbol: str, side: str, quantity: float, key: str = API_KEY) -> dict[str, Any]:
        """A market order placed on the account directly (as a person on the exchange's website would: no
        session's client id); returns it as POST /api/v3/order answers."""
        o = self.book.create(key, {"symbol": self._market_id(symbol), "side": side.upper(), "type": "MARKET",
                                   "quantity": f"{quantity:.5f}"})
        return o.wire()

    def exchange_trades(self, key: str = API_KEY) -> list[dict[str, Any]]:
        """Every trade (fill) of the account."""
        with self.book.lock:
            return [dict(t) for t in self.book.trades if t["account"] == key]

    def ccxt_client(self, **config: Any) -> ccxt.binance:
        """A real ``ccxt.binance`` pointed at this server, loading spot markets only (no keys needed)."""
        client = ccxt.binance({"enableRateLimit": True, "timeout": 5000, **config})
        return self.point(client)

    def point(self, client: Any) -> Any:
        """Point any ccxt binance client (sync or ``ccxt.async_support``) at this server; returns it."""
        return point_at(self.url, client, perps=bool(self.perp_symbols))

    def bars(self, symbol: str, interval: str = "1m") -> pd.DataFrame:
        """The bars this exchange serves for ``symbol`` (a unified symbol such as ``BTC/USDT``)."""
        return sample_bars(symbol, interval, days=self.days)



def point_at(url: str, client: Any, perps: bool = False) -> Any:
    """Point a ccxt binance client at the loopback exchange serving at ``url`` (e.g. from another process);
    ``perps``: load the USDⓈ-M perpetuals too (``/fapi``), and map their error codes as ccxt does for
    Binance's futures host (ccxt picks those by host name, which the loopback's is not)."""
    api: dict[str, Any] = {k: url + urlsplit(v).path for k, v in client.urls["api"].items() if isinstance(v, str)}
    if isinstance(client.urls["api"].get("ws"), dict):  # a ccxt.pro client: spot streams from /ws
        api["ws"] = {**client.urls["api"]["ws"], "spot": url.replace("http://", "ws://") + "/ws"}
    client.urls["api"] = api
    client.options["fetchMarkets"] = {"types": ["spot", "linear"] if perps else ["spot"]}
    if perps:
        exc = client.exceptions
        client.exceptions = {**exc, "exact": {**exc["linear"]["exact"], **exc["exact"]}}
    client.options["fetchCurrencies"] = False
    client.options["fetchMargins"] = False
    return client
