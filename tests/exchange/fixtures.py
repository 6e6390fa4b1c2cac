"""Pytest fixtures for the loopback exchange: ``from tests.exchange.fixtures import loopback_exchange``."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import LoopbackExchange

TEST_RECV_WINDOW_MS = 1500


@pytest.fixture
def loopback_exchange() -> Iterator[LoopbackExchange]:
    """A running :class:`LoopbackExchange` with the sample symbols over 90 days; stopped after the test."""
    with LoopbackExchange() as exchange:
        yield exchange


def async_client(exchange: LoopbackExchange | str, key: str | None = None, secret: str | None = None,
                 perps: bool | None = None, **config: object):
    """A real ``ccxt.async_support.binance`` with keys, pointed at ``exchange`` (or its URL, from another
    process; close it after use). Its signed requests carry ``recvWindow`` ``TEST_RECV_WINDOW_MS`` unless
    ``options`` say otherwise: a request whose outcome is unknown is resent only after that window (ccxt's
    default 10 s would make fault tests slow). ``perps``: load the perpetuals too (default: if the loopback has
    any)."""
    import ccxt.async_support as ccxt_async

    from .server import API_KEY, API_SECRET, point_at

    cfg = {"apiKey": key or API_KEY, "secret": secret or API_SECRET, "enableRateLimit": False, "timeout": 3000,
           **config}
    cfg["options"] = {"recvWindow": TEST_RECV_WINDOW_MS, **dict(config.get("options") or {})}  # type: ignore[call-overload]
    if perps is None:
        perps = not isinstance(exchange, str) and bool(exchange.perp_symbols)
    return point_at(exchange if isinstance(exchange, str) else exchange.url, ccxt_async.binance(cfg), perps=perps)
