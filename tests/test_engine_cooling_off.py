"""Discipline after a circuit breaker trip: a cooling-off in which nobody raises risk without a recorded waiver."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workbench.config import make_config
from workbench.engine.risk import CoolingOff, RiskEngine

T0 = datetime(2024, 1, 8, 10, tzinfo=timezone.utc)


def tripped(minutes: float = 60.0) -> RiskEngine:
    """A risk engine whose daily-loss breaker tripped at T0 (a 6 % loss against a 5 % limit)."""
    cfg = make_config(symbols=["BTC/USDT"], initial_balance=10_000,
                      risk={"max_position": 2_000, "stop_loss": 0.05,
                            "circuit_breaker": {"max_daily_loss": 0.05, "action": "reducing",
                                                "cooling_off_minutes": minutes}})
    r = RiskEngine(cfg)
    r.on_equity(T0 - timedelta(minutes=1), 10_000.0)
    r.on_equity(T0, 9_400.0)
    assert r.state.value == "reducing"
    return r


def kinds(r: RiskEngine) -> list[str]:
    return [e["kind"] for e in r.drain_events()]


def test_after_a_trip_sizing_up_loosening_a_limit_or_a_stop_needs_a_waiver():
    r = tripped()
    trip = r.drain_events()[-1]
    assert trip["data"]["cooling_off_until"] == (T0 + timedelta(hours=1)).isoformat()
    r.scale_sizing(0.5)  # reducing risk is always allowed
    with pytest.raises(CoolingOff, match=r"until 2024-01-08T11:00:00\+00:00: sizing x1 is larger than x0.5"):
        r.scale_sizing(1.0)
    until = T0 + timedelta(hours=2)
    with pytest.raises(CoolingOff, match="loosens max_position"):
        r.override({"max_position": 5_000}, "more room", until, now=T0)
    with pytest.raises(CoolingOff, match="loosens stop_loss"):
        r.override({"stop_loss": None}, "no stop", until, now=T0)
    r.override({"max_position": 1_000}, "less room", until, now=T0)  # tightening passes
    r.tighten_stops(0.02)
    with pytest.raises(CoolingOff, match="loosens them"):
        r.tighten_stops(0.0)
    assert r.size_factor == 0.5 and r.stop_delta == 0.02 and r.limits["max_position"] == 1_000  # unchanged
    kinds(r)
    r.scale_sizing(1.0, actor="admin", waive="the loss was a data error, confirmed with the exchange")
    events = r.drain_events()
    assert [e["kind"] for e in events] == ["cooling_off_waived", "sizing_scaled"]
    assert events[0]["data"]["actor"] == "admin" and "data error" in events[0]["data"]["reason"]


def test_the_cooling_off_ends_on_the_bar_clock_and_survives_a_restart():
    r = tripped(minutes=30)
    state = r.snapshot()
    again = RiskEngine(r.config)
    again.restore(state)
    assert again.cool_until == T0 + timedelta(minutes=30)
    with pytest.raises(CoolingOff):
        again.scale_sizing(2.0)
    again.on_equity(T0 + timedelta(minutes=30), 9_400.0)
    again.scale_sizing(2.0)  # the period is over
    assert again.size_factor == 2.0
    old = dict(state)
    del old["cool_until"]  # a checkpoint written before cooling-off existed
    RiskEngine(r.config).restore(old)


def test_no_cooling_off_when_it_is_set_to_zero():
    r = tripped(minutes=0)
    r.scale_sizing(3.0)
    assert r.cool_until is None and r.size_factor == 3.0
