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
