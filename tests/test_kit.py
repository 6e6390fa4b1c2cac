"""The test kit itself: fixtures give what they promise, the pollers return or fail on their clock."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.kit import T0, FakeClock, until, wait_until


def test_fixtures(store, store_url, bars, config, clock):
    sid = store.create_session(config)
    assert store.get_session(sid)["config"] == config and store_url.endswith("wb.db")
    assert len(bars) == 1440 and bars.index.tz is not None
    assert config.kind.value == "paper" and config.symbols == ["BTC/USDT"]
    assert clock() == T0


def test_fake_clock_moves_only_forward_when_told():
    clock = FakeClock()
    assert clock.advance(90) == T0 + timedelta(seconds=90) and clock.monotonic() == 90
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(T0.replace(tzinfo=None))


def test_wait_until_returns_the_value_and_times_out_on_its_clock():
    clock, tries = FakeClock(), []

    def ready():
        tries.append(1)
        clock.advance(1.0)
        return len(tries) >= 3 and "done"
    assert wait_until(ready, timeout=5, step=0, clock=clock.monotonic) == "done"
    with pytest.raises(AssertionError, match="never not reached within 2.5s"):
        wait_until(lambda: clock.advance(1.0) and False, timeout=2.5, step=0, clock=clock.monotonic,
                   message="never")
    assert clock.monotonic() == 3 + 3  # 3 tries, then 3 one-second ticks to pass 2.5 s


def test_until_lets_other_tasks_run():
    async def main():
        box: list[int] = []
        asyncio.get_running_loop().call_later(0.05, box.append, 1)
        assert await until(lambda: box, timeout=5, step=0.01) == [1]
        with pytest.raises(AssertionError, match="not reached within 0.05s"):
            await until(lambda: False, timeout=0.05, step=0.01)
    asyncio.run(main())
