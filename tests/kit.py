"""Test helpers: a fake clock, ``until()``/``wait_until()`` pollers and small builders.

``await until(pred)`` in async tests and ``wait_until(pred)`` in sync ones poll a condition instead of
sleeping a guessed time; both fail with a clear message on timeout and take an injected ``clock``.
:class:`FakeClock` stands in for the wall clock where code takes one (e.g. orphan marking).
:class:`ThreadRunner` runs a stored session as "another process" would (its own thread, loop and
store connection). The fixtures built on these live in ``tests/conftest.py``.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pandas as pd
import pytest

from workbench.config import SessionConfig, make_config
from workbench.data import sample_bars
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store

T = TypeVar("T")
#: a fixed, timezone-aware start for fake clocks and synthetic bars
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: run a test (using ``store_url``/``store``) once on SQLite and once on PostgreSQL (tests/conftest.py)
both_backends = pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)


# ---- builders ---------------------------------------------------------------------------------
def paper_config(**fields: Any) -> SessionConfig:
    """A small valid paper config (sma_cross 5/20 on BTC/USDT, 40% sizing); ``fields`` override."""
    base: dict[str, Any] = {"kind": "paper", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
                            "symbols": ["BTC/USDT"], "sizing": {"mode": "percent_equity", "value": 0.4}}
    return make_config(**{**base, **fields})


def bars_for(config: SessionConfig, days: int = 1) -> dict[str, pd.DataFrame]:
    """Sample bars for each of ``config``'s symbols in its data timeframe, ``days`` days long."""
    return {s: sample_bars(s, config.data.timeframe, days=days) for s in config.symbols}


# ---- clocks -----------------------------------------------------------------------------------
class FakeClock:
    """A clock that moves only when told: ``clock()`` is the current UTC datetime, ``clock.monotonic()``
    the seconds since it started; ``advance(seconds)`` moves both. Pass ``clock`` where code takes a
    wall-clock callable and ``clock.monotonic`` where it takes a seconds counter."""

    def __init__(self, start: datetime = T0) -> None:
        if start.tzinfo is None:
            raise ValueError(f"FakeClock needs a timezone-aware start, got {start!r}; add tzinfo=timezone.utc")
        self.start = start
        self.elapsed = 0.0

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (not backwards); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; advance({seconds}) asks it to go back")
        self.elapsed += seconds
        return self()


# ---- polling ----------------------------------------------------------------------------------
def _polls(predicate: Callable[[], T], timeout: float, clock: Callable[[], float],
           message: str | None) -> Iterator[T | None]:
    """Evaluate ``predicate`` until truthy (yield its value, then stop) or raise once ``timeout``
    seconds of ``clock`` have passed; yields ``None`` between tries (the driver sleeps there)."""
    end = clock() + timeout
    while True:
        value = predicate()
        if value:
            yield value
            return
        if clock() > end:
            what = message or getattr(predicate, "__name__", "condition")
            raise AssertionError(f"{what} not reached within {timeout}s")
        yield None


async def until(predicate: Callable[[], T], timeout: float = 10.0, *, step: float = 0.02,
                clock: Callable[[], float] = time.monotonic, message: str | None = None) -> T:
    """Await until ``predicate()`` is truthy and return its value; AssertionError after ``timeout``
    seconds (measured on ``clock``). Other tasks run between tries (``asyncio.sleep(step)``)."""
    for value in _polls(predicate, timeout, clock, message):
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError("unreachable")  # pragma: no cover


def lease_expired(store: Store, session_id: str) -> bool:
    """The session's runner lease has expired or was given back (another runner may take it now)."""
    expires = store.lease(session_id)["expires"]
    return expires is None or expires < datetime.now(timezone.utc)


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, *, step: float = 0.02,
               clock: Callable[[], float] = time.monotonic, message: str | None = None) -> T:
    """The blocking :func:`until` for sync tests (threads, subprocesses)."""
    for value in _polls(predicate, timeout, clock, message):
        if value:
            return value
        time.sleep(step)
    raise AssertionError("unreachable")  # pragma: no cover


def dense_walk(config: Any, index: Any, arr: dict, buy: Any, sell: Any) -> tuple:
    """The backtest walk's fills laid out per bar and symbol (quantity, price, reference, reason,
    call_seq) plus the breaker trip: what tests compare bar by bar."""
    from workbench.backtest.runner import walk
    from workbench.execution.simulate import layout

    fills, trip = walk(config, index, arr, buy, sell)
    return (*layout(len(index), buy.shape[1], fills), trip)


class ThreadRunner:
    """A session run by 'another process': its own thread, event loop and store connection."""

    def __init__(self, url: str, session_id: str):
        self.store = Store(url)
        cfg = self.store.get_session(session_id)["config"]
        self.session = Session(cfg, self.store, feed=ReplayFeed(bars_for(cfg, days=2), 200.0),
                               session_id=session_id, poll_interval=0.02)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.session.run()), daemon=True)

    def __enter__(self) -> ThreadRunner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.session.state.is_final:
            self.store.send_command(self.session.id, "kill", {"reason": "test over"})
        self.thread.join(10)
        self.store.close()
