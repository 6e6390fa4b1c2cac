"""A broker's side tasks stop when cancelled, even when the cancel lands just as their wait ends (on
Python 3.11 ``asyncio.wait_for`` drops such a cancel, and a handed-back session's resting-order
watcher went on booking the exchange's changes after the next runner had taken over), and even when
the HTTP client turns the cancel into a network error that would be retried."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import ccxt
import pytest

from workbench.engine.brokers.resting import RestingOrders
from workbench.retry import RetryPolicy, retry_async


def test_the_resting_watcher_stops_when_cancelled_as_it_is_woken():
    async def main() -> int:
        lost = 0
        for _ in range(50):
            broker = SimpleNamespace(_wake=asyncio.Event(), resting={}, resting_poll=10.0)
            task = asyncio.get_running_loop().create_task(RestingOrders._watch_resting(broker))  # type: ignore[arg-type]
            await asyncio.sleep(0)  # the watcher waits
            broker._wake.set()  # a bar wakes it ...
            await asyncio.sleep(0)  # ... its wait ends ...
            task.cancel()  # ... as the session finishes
            done, _ = await asyncio.wait([task], timeout=0.5)
            if not done:
                lost += 1
                task.cancel()
        return lost

    assert asyncio.run(main()) == 0


def test_a_retry_loop_does_not_retry_a_cancel_the_client_turned_into_a_network_error():
    calls = []

    async def request() -> None:
        calls.append(1)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # what aiohttp can do while a request is under way
            raise ccxt.NetworkError("connection closed") from None

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(
            retry_async(None, request, policy=RetryPolicy(retries=None, base=0.01, cap=0.01)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1.0)

    asyncio.run(main())
    assert calls == [1]
