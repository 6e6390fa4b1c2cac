"""Pytest fixtures for the loopback exchange: ``from tests.exchange.fixtures import loopback_exchange``."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import LoopbackExchange


@pytest.fixture
def loopback_exchange() -> Iterator[LoopbackExchange]:
    """A running :class:`LoopbackExchange` with the sample symbols over 90 days; stopped after the test."""
    with LoopbackExchange() as exchange:
        yield exchange


def async_client(exchange: LoopbackExchange, key: str | None = None, secret: str | None = None, **config: object):
    """A real ``ccxt.async_support.binance`` with keys, pointed at ``exchange`` (close it after use)."""
    import ccxt.async_support as ccxt_async

    from .server import API_KEY, API_SECRET

    cfg = {"apiKey": key or API_KEY, "secret": secret or API_SECRET, "enableRateLimit": False, "timeout": 3000,
           **config}
    return exchange.point(ccxt_async.binance(cfg))
