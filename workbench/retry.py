"""The one retrier for every exchange call (historical data, live feed, live broker).

Retried: ccxt's transient family — ``NetworkError`` (``RequestTimeout``, ``ExchangeNotAvailable``,
``DDoSProtection``/``RateLimitExceeded``, dropped connections) and ``OperationFailed`` errors that
are not a refusal. Rate limits wait at least the server's ``Retry-After``. Never retried:
``InvalidOrder``, ``InsufficientFunds``, ``AuthenticationError`` and every other ``ExchangeError``:
retrying cannot fix them; nor ``InvalidNonce`` (Binance -1021, a clock outside recvWindow): resending
with the same clock fails the same way, the live broker resyncs its clock first
(:meth:`workbench.engine.ccxt_broker.CcxtBroker.clock_skewed`).
Delays grow exponentially (``base * 2**attempt``) up to ``cap``.
:func:`call_with_retry` is the blocking form (sync ccxt), :func:`retry_async` the asyncio form.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt

log = logging.getLogger(__name__)
T = TypeVar("T")
NEVER_RETRY = (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.AuthenticationError, ccxt.BadRequest,
               ccxt.BadSymbol, ccxt.OrderNotFound, ccxt.NotSupported, ccxt.InvalidNonce)
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``retries`` extra attempts (None: forever), delays
    ``base * 2**attempt`` capped at ``cap`` seconds."""

    retries: int | None = 5
    base: float = 1.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.retries is not None and self.retries < 0 or self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy: retries, base and cap must be >= 0 (retries=None retries forever)")

    def delay(self, attempt: int, error: BaseException | None = None, exchange: Any = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``; at least Retry-After on a rate limit."""
        d = min(self.base * 2 ** min(attempt, 30), self.cap)
        if isinstance(error, ccxt.DDoSProtection):
            d = max(d, min(retry_after(exchange), MAX_RETRY_AFTER))
        return d


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying (see the module docstring)."""
    if isinstance(error, NEVER_RETRY):
        return False
    return isinstance(error, (ccxt.NetworkError, ccxt.OperationFailed))


def retry_after(exchange: Any) -> float:
    """The Retry-After header (seconds) of the exchange's last response, or 0."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _name(exchange: Any) -> str:
    return str(getattr(exchange, "id", "exchange"))


def call_with_retry(exchange: Any, fn: Callable[..., T], *args: Any, policy: RetryPolicy = RetryPolicy(),
                    sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retrying transient ccxt errors with the policy's backoff (blocking;
    waits through ``sleep``, which tests replace to record the delays instead of waiting)."""
    attempt = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            if not is_transient(e) or (policy.retries is not None and attempt >= policy.retries):
                if is_transient(e):
                    e.add_note(f"gave up after {attempt} retries")
                raise
            d = policy.delay(attempt, e, exchange)
            log.warning("%s: %s; retry %d in %.2fs", _name(exchange), type(e).__name__, attempt + 1, d)
            sleep(d)
            attempt += 1


async def retry_async(exchange: Any, fn: Callable[..., Awaitable[T]], *args: Any, policy: RetryPolicy = RetryPolicy(),
                      on_retry: Callable[[int, BaseException, float], None] | None = None, **kwargs: Any) -> T:
    """``await fn(*args, **kwargs)``, retrying transient ccxt errors with the policy's backoff.
    ``on_retry(attempt, error, delay)`` is called before each wait (e.g. to record an event)."""
    attempt = 0
    while True:
        try:
            return await fn(*args, **kwargs)
        except Exception as e:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # cancelled mid-request (the HTTP client turned the
                raise asyncio.CancelledError from e     # cancel into a network error): stop, don't retry
            if not is_transient(e) or (policy.retries is not None and attempt >= policy.retries):
                if is_transient(e):
                    e.add_note(f"gave up after {attempt} retries")
                raise
            d = policy.delay(attempt, e, exchange)
            log.warning("%s: %s; retry %d in %.2fs", _name(exchange), type(e).__name__, attempt + 1, d)
            if on_retry is not None:
                on_retry(attempt, e, d)
            await asyncio.sleep(d)
            attempt += 1
