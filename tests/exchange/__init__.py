"""A loopback exchange for tests: real ccxt clients talk to it over real HTTP on 127.0.0.1."""
from .server import LoopbackExchange, Request

__all__ = ["LoopbackExchange", "Request"]
