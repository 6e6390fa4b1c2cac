"""Binance's public market-data routes of the loopback exchange (a mixin of ``LoopbackExchange``):
ping, time, exchangeInfo, klines (ending at the forming bar on the virtual clock), 24h ticker, price
and a synthetic depth book."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from aiohttp import web

from .matching import BinanceError, HasBook

# Binance's kline intervals the sample bars can serve (1w opens on Mondays, as Binance's; not 1s, 3d, 1M)
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


def binance_error(code: int, msg: str, status: int = 400) -> web.Response:
    """A Binance error body ``{"code", "msg"}`` with HTTP ``status``."""
    return web.json_response({"code": code, "msg": msg}, status=status)


class MarketRoutes(HasBook):
    """The unsigned market-data endpoints; the exchange provides ``symbols``, ``clock``, ``book`` and ``bars``."""

    symbols: tuple[str, ...]
    clock: pd.Timestamp | None
    _bars: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    bars: Callable[..., pd.DataFrame]

    def _market_id(self, symbol: str) -> str:
        return symbol.replace("/", "")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.server_ms()})

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
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"] + ([] if self._market_id(s) in self.book.no_stops
                                                                    else ["STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                                                                          "TAKE_PROFIT_LIMIT"]),
                "icebergAllowed": True, "ocoAllowed": self._market_id(s) not in self.book.no_stops,
                "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "1000000.00000000",
                     "tickSize": "0.00000100"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000000.00000000",
                     "stepSize": "0.00001000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                    {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
                     "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        if wanted_list is not None and not symbols:
            return binance_error(-1121, "Invalid symbol.")
        return web.json_response({
            "timezone": "UTC", "serverTime": self.server_ms(),
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
            return binance_error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if q["symbol"] not in by_id:
            return binance_error(-1121, "Invalid symbol.")
        interval = q.get("interval")
        if interval not in INTERVALS:
            return binance_error(-1120, "Invalid interval.")
        try:
            limit = int(q.get("limit", DEFAULT_LIMIT))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return binance_error(-1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= MAX_LIMIT:
            return binance_error(-1130, "Data sent for parameter 'limit' is not valid.")
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
            [int(t), f"{o:.8f}", f"{h:.8f}", f"{low:.8f}", f"{c:.8f}", f"{v:.8f}", int(t) + step - 1,
             f"{v * c:.8f}", 100, f"{v / 2:.8f}", f"{v * c / 2:.8f}", "0"]
            for t, (o, h, low, c, v) in zip(times[lo:hi].tolist(), rows[lo:hi].tolist())
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
        last = self.book.price(sid)  # the forming bar's open, or an intrabar trade (stops.py)
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

    def _ticker_symbols(self, request: web.Request) -> list[str] | None:
        """The market ids a ticker request names: ``symbol`` (one: None), ``symbols`` (a JSON list), or every
        market when neither is sent (Binance's rule for the ticker endpoints)."""
        if "symbol" in request.query:
            self._symbol_param(request)
            return None
        known = [self._market_id(s) for s in self.symbols]
        if "symbols" not in request.query:
            return known
        try:
            wanted = json.loads(request.query["symbols"])
        except ValueError:
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if not isinstance(wanted, list) or any(w not in known for w in wanted):
            raise BinanceError(-1121, "Invalid symbol.")
        return [str(w) for w in wanted]

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        try:
            many = self._ticker_symbols(request)
            if many is None:
                return web.json_response(self._ticker_row(self._symbol_param(request)))
            return web.json_response([self._ticker_row(s) for s in many])
        except BinanceError as e:
            return binance_error(e.code, e.msg, e.status)

    async def _ticker_price(self, request: web.Request) -> web.Response:
        def row(sid: str) -> dict[str, str]:
            return {"symbol": sid, "price": f"{self.book.price(sid):.8f}"}
        try:
            many = self._ticker_symbols(request)
            if many is None:
                return web.json_response(row(self._symbol_param(request)))
            return web.json_response([row(s) for s in many])
        except BinanceError as e:
            return binance_error(e.code, e.msg, e.status)

    async def _depth(self, request: web.Request) -> web.Response:
        """A synthetic book around the current price: levels 1 bp apart, 1 unit each."""
        try:
            sid = self._symbol_param(request)
            limit = int(request.query.get("limit", 100))
        except BinanceError as e:
            return binance_error(e.code, e.msg, e.status)
        except ValueError:
            return binance_error(-1100, "Illegal characters found in parameter 'limit'.")
        if limit < 1:  # Binance: default 100, at most 5000 (a larger limit is cut to 5000)
            return binance_error(-1100, "Illegal characters found in parameter 'limit'.")
        limit = min(limit, 5000)
        p = self.book.price(sid)
        bids = [[f"{p * (1 - 1e-4 * (k + 1)):.8f}", "1.00000000"] for k in range(limit)]
        asks = [[f"{p * (1 + 1e-4 * (k + 1)):.8f}", "1.00000000"] for k in range(limit)]
        return web.json_response({"lastUpdateId": self.book.index, "bids": bids, "asks": asks})
