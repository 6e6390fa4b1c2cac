"""Fault injection and the request log of the loopback exchange (a mixin of ``LoopbackExchange``).

Faults queue up (``fail_next``, ``drop_next``, ``lose_response_next``, ``delay_next``) and the
aiohttp middleware applies the first one matching each request; every request is logged. Standing
conditions: a market halted (``halt_market``: exchangeInfo reports its status), the exchange in
maintenance (``set_maintenance``: ``/sapi/v1/system/status``, which ccxt's ``fetch_status`` reads),
a key's permissions (``set_permissions``: the account's ``canTrade``/``canWithdraw``), and the
variant that takes the API key in the URL (``key_in_url``, with a client made by :func:`key_in_url_client`),
as exchanges that sign with the key in the query string do: then every logged URL and every ccxt error
text carries the key.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlencode

from aiohttp import web

URL_KEY = web.RequestKey("url_key", str)  # the key-in-URL variant's key, for the request log


@dataclass
class Request:
    """One logged request: method, path, query parameters and the status answered (0 = connection dropped)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float = field(default_factory=time.time)


@dataclass
class Fault:
    """One queued fault; see :meth:`FaultsMixin.fail_next` and its siblings."""

    path: str | None  # only requests whose path starts with this (None: any)
    status: int = 0  # 0 = drop the connection
    retry_after: float | None = None
    error: tuple[int, str] | None = None  # a Binance error body {"code", "msg"}
    after: int = 0  # matching requests to let through first
    method: str | None = None  # only requests with this HTTP method (None: any)
    kind: str = "fail"  # "fail" (status/drop before handling), "lose" (handle, then drop), "delay"
    delay: float = 0.0


def _abort(request: web.Request) -> NoReturn:
    """Drop the request's connection without an answer and end its handling."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


class FaultsMixin:
    """Queued faults, the request log and the middleware that applies the one and fills the other."""

    log: list[Request]
    _faults: deque[Fault]
    _lock: threading.Lock

    def _init_faults(self) -> None:
        self.log = []
        self._faults = deque()
        self._lock = threading.Lock()
        self.halted: dict[str, str] = {}  # market id -> the status exchangeInfo reports
        self.maintenance = False
        self.permissions: dict[str, bool] = {}  # canTrade / canWithdraw overrides of the account
        self.key_in_url = False

    def halt_market(self, symbol: str, status: str = "BREAK") -> None:
        """``symbol`` (e.g. ``BTC/USDT``) stops trading: exchangeInfo reports ``status`` (ccxt: not active)."""
        self.halted[symbol.replace("/", "")] = status

    def set_maintenance(self, on: bool = True) -> None:
        """The system status endpoint reports maintenance (1) instead of normal (0)."""
        self.maintenance = on

    def set_permissions(self, **flags: bool) -> None:
        """Override the account endpoint's permission flags, e.g. ``canWithdraw=True``."""
        self.permissions.update(flags)

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
            self._faults.extend(Fault(path, status, retry_after, error, after if i == 0 else 0) for i in range(n))

    def drop_next(self, n: int = 1, *, path: str | None = None, after: int = 0) -> None:
        """Close the connection without answering ``n`` requests, after letting ``after`` through (see fail_next)."""
        with self._lock:
            self._faults.extend(Fault(path, after=after if i == 0 else 0) for i in range(n))

    def lose_response_next(self, n: int = 1, *, path: str = "/api/v3/order", method: str | None = "POST",
                           after: int = 0) -> None:
        """Handle ``n`` matching requests (an order is accepted) and then drop the connection: the client
        never sees the answer ("order accepted but the response lost")."""
        with self._lock:
            self._faults.extend(Fault(path, after=after if i == 0 else 0, method=method, kind="lose")
                                for i in range(n))

    def delay_next(self, n: int, seconds: float, *, path: str | None = None, method: str | None = None) -> None:
        """Answer ``n`` matching requests only after ``seconds`` (latency)."""
        with self._lock:
            self._faults.extend(Fault(path, method=method, kind="delay", delay=seconds) for _ in range(n))

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        """How many queued faults no request has met yet (a delayed request takes its fault on arrival)."""
        with self._lock:
            return len(self._faults)

    def requests(self, path: str | None = None) -> list[Request]:
        """Logged requests, optionally only those to ``path`` (e.g. ``"/api/v3/klines"``)."""
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self.log.clear()

    def _take_fault(self, path: str, method: str = "GET") -> Fault | None:
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
            query = dict(request.query)
            if URL_KEY in request:
                query["apiKey"] = request[URL_KEY]
            self.log.append(Request(request.method, request.path, query, status))

    def _key_from_url(self, request: web.Request) -> web.Request:
        """The key-in-URL variant: an ``apiKey`` query parameter is the API key (as the header is)."""
        key = request.query.get("apiKey")
        if not self.key_in_url or key is None:
            return request
        query = urlencode([(k, v) for k, v in request.query.items() if k != "apiKey"])
        clone = request.clone(rel_url=request.path + (f"?{query}" if query else ""),
                              headers={**request.headers, "X-MBX-APIKEY": key})
        clone[URL_KEY] = key  # logged with the query it came in
        return clone

    def _conditions(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Apply the standing conditions (halted markets, permissions) to a successful JSON answer."""
        path = request.path
        if response.status != 200 or not isinstance(response, web.Response) or response.body is None:
            return response
        if path == "/api/v3/exchangeInfo" and self.halted:
            data = json.loads(bytes(response.body))  # type: ignore[arg-type]
            for s in data["symbols"]:
                s["status"] = self.halted.get(s["symbol"], s["status"])
        elif path == "/api/v3/account" and self.permissions:
            data = {**json.loads(bytes(response.body)), **self.permissions}  # type: ignore[arg-type]
        else:
            return response
        return web.json_response(data, headers={k: v for k, v in response.headers.items()
                                                if k.lower() not in ("content-type", "content-length")})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request = self._key_from_url(request)
        if request.path == "/sapi/v1/system/status":  # Binance's wallet status (ccxt fetch_status), unsigned
            self._record(request, 200)
            return web.json_response({"status": 1, "msg": "system_maintenance"} if self.maintenance
                                     else {"status": 0, "msg": "normal"})
        fault = self._take_fault(request.path, request.method)
        if fault is not None and fault.kind == "delay":
            await request.read()  # the request has arrived; only the processing is slow
            await asyncio.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "lose":
            await handler(request)
            self._record(request, 0)
            _abort(request)  # accepted, but the client never hears of it
        if fault is not None and fault.status == 0:
            self._record(request, 0)
            _abort(request)  # the client sees the connection dropped mid-request
        if fault is not None:
            self._record(request, fault.status)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            if fault.error is not None:
                return web.json_response({"code": fault.error[0], "msg": fault.error[1]}, status=fault.status,
                                         headers=headers)
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
        response = self._conditions(request, response)
        response.headers["x-mbx-used-weight-1m"] = str(len(self.log))
        return response


def key_in_url_client(client: Any) -> Any:
    """``client`` (a ccxt binance, sync or async) sending its API key in the URL (``apiKey=`` after the
    signature) instead of the ``X-MBX-APIKEY`` header: for :attr:`FaultsMixin.key_in_url` loopbacks."""
    sign = client.sign

    def signed(path: str, api: Any = "public", method: str = "GET", params: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = sign(path, api, method, params or {})
        hdrs = dict(out.get("headers") or {})
        key = hdrs.pop("X-MBX-APIKEY", None)
        if key is not None:
            out["url"] += ("&" if "?" in out["url"] else "?") + urlencode({"apiKey": key})
            out["headers"] = hdrs
        return out

    client.sign = signed
    return client
