"""Binance's websocket kline streams on the loopback exchange (the subset ccxt.pro's
``binance.watch_ohlcv`` uses; a mixin of ``LoopbackExchange``)."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .matching import HasBook


class StreamRoutes(HasBook):
    """``/ws`` kline streams; the exchange provides ``book``, ``_loop`` and ``_record``."""

    _sockets: set[web.WebSocketResponse]
    _loop: asyncio.AbstractEventLoop | None
    _record: Callable[[web.Request, int], None]

    def drop_websockets(self) -> int:
        """Close every open websocket connection (clients must reconnect); returns how many."""
        loop = self._loop
        if loop is None:  # not running: no sockets
            return 0
        socks = list(self._sockets)
        for ws in socks:
            asyncio.run_coroutine_threadsafe(ws.close(code=1011, message=b"dropped by the test"), loop).result(5)
        return len(socks)

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
