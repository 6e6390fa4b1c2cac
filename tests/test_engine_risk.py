"""RiskEngine: each pre-trade rule with its numbers, exits, circuit breaker, overrides, adjustments."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from workbench.config import make_config
from workbench.domain import Fill, Order, OrderType, Position, Side
from workbench.engine.risk import RiskContext, RiskEngine, TradingState
from workbench.execution import Bar
from workbench.execution.ledger import Portfolio

T0 = datetime(2024, 1, 8, 10, tzinfo=timezone.utc)  # a Monday
BTC, ETH = "BTC/USDT", "ETH/USDT"
FREE = {"commission": {"taker": 0.0, "maker": 0.0}, "slippage": {"bps": 0}}


def engine(risk=None, **kw) -> RiskEngine:
    cfg = make_config(kind="paper", symbols=[BTC, ETH], initial_balance=10_000, **{**FREE, **kw}, risk=risk or {})
    return RiskEngine(cfg)


def buy(qty, symbol=BTC, n=0, reason="entry"):
    return Order(f"b{n}", symbol, Side.BUY, qty, reason=reason)


def sell(qty, symbol=BTC, n=0, reason="signal"):
    return Order(f"s{n}", symbol, Side.SELL, qty, reason=reason)


def ctx(pf=None, price=100.0, t=T0, volume=float("inf")):
    return RiskContext(t, price, pf or Portfolio(10_000.0), volume)


def holding(qty=10.0, price=100.0, symbol=BTC) -> Portfolio:
    pf = Portfolio(10_000.0)
    pf.apply_fill(Fill("x", symbol, Side.BUY, qty, price, 0.0, 0.0, T0 - timedelta(hours=1), "fx", "entry"))
    pf.mark({symbol: price})
    return pf


def test_plain_buy_passes_unchanged():
    d = engine().check(buy(5), ctx())
    assert d.accepted and d.quantity == 5 and d.rule == ""


@pytest.mark.parametrize("qty,price,rule", [(float("nan"), 100.0, "min_quantity"), (-1.0, 100.0, "min_quantity"),
                                            (1.0, 0.0, "price")])
def test_nonsense_orders_are_rejected(qty, price, rule):
    d = engine().check(buy(qty), ctx(price=price))
    assert not d.accepted and d.rule == rule


def test_max_position_caps_and_rejects_with_numbers():
    r = engine({"max_position": 1500})
    d = r.check(buy(20), ctx(holding(10)))  # 1000 held, 2000 asked, 500 room
    assert d.accepted and d.quantity == pytest.approx(5) and d.rule == "max_position"
    assert d.detail == {"limit": 1500, "position_value": 1000.0, "order_value": 2000.0}
    d = r.check(buy(1, n=1), ctx(holding(15)))
    assert not d.accepted and d.rule == "max_position"
    ev = r.events[-1]
    assert ev["kind"] == "order_rejected" and ev["data"]["rule"] == "max_position"
    assert ev["data"]["limit"] == 1500 and ev["data"]["position_value"] == 1500.0 and "max_position" in ev["message"]


def test_portfolio_and_concentration_limits():
    d = engine({"portfolio_limit": 1200}).check(buy(5, ETH), ctx(holding(10)))  # exposure 1000 -> 200 room
    assert d.quantity == pytest.approx(2) and d.rule == "portfolio_limit"
    assert d.detail["exposure"] == 1000.0
    # equity 10000; 25 % = 2500; 1000 held -> 15 more at 100
    d = engine({"concentration_limit": 0.25}).check(buy(30), ctx(holding(10)))
    assert d.quantity == pytest.approx(15) and d.rule == "concentration_limit"
    assert d.detail["equity"] == pytest.approx(10_000.0)


def test_volume_rules_and_cash():
    r = engine(volume={"min_bar_volume": 100, "max_share": 0.1, "on_excess": "cap"})
    d = r.check(buy(5), ctx(volume=99.0))
    assert not d.accepted and d.rule == "min_volume" and d.detail == {"bar_volume": 99.0, "min_bar_volume": 100.0}
    d = r.check(buy(50, n=1), ctx(volume=200.0))
    assert d.quantity == pytest.approx(20) and d.rule == "max_share"
    d = engine().check(buy(200), ctx())  # 20000 > 10000 cash
    assert d.quantity == pytest.approx(100) and d.rule == "cash"


def test_time_restrictions_gate_entries_not_exits():
    r = engine(time={"trading_hours": {"start": "09:00", "end": "17:00"},
                     "blackouts": [{"start": "12:00", "end": "13:00"}],
                     "weekdays": [0, 1, 2, 3, 4]})
    assert r.check(buy(1), ctx(t=T0)).accepted
    assert r.check(buy(1), ctx(t=T0.replace(hour=12, minute=30))).rule == "blackout"
    assert r.check(buy(1), ctx(t=T0.replace(hour=18))).rule == "trading_hours"
    assert r.check(buy(1), ctx(t=T0 - timedelta(days=1))).rule == "weekday"  # Sunday
    assert r.check(sell(10), ctx(holding(10), t=T0 - timedelta(days=1))).accepted


def test_symbol_filters():
    r = engine()
    r.disable_symbol(ETH, reason="halted by exchange")
    assert r.check(buy(1, ETH), ctx()).rule == "symbol_disabled"
    assert r.check(sell(10, ETH), ctx(holding(10, symbol=ETH))).accepted  # exits still run
    r.enable_symbol(ETH)
    assert r.check(buy(1, ETH), ctx()).accepted
    assert r.check(buy(1, "XRP/USDT"), ctx()).rule == "unknown_symbol"
    assert [e["kind"] for e in r.events if e["kind"].startswith("symbol_")] == ["symbol_disabled", "symbol_enabled"]
    with pytest.raises(ValueError):
        r.disable_symbol("DOGE/USDT")


def test_order_rate_per_minute_of_passed_time():
    r = engine({"max_orders_per_minute": 2})
    assert r.check(buy(1, n=1), ctx(t=T0)).accepted
    assert r.check(buy(1, n=2), ctx(t=T0 + timedelta(seconds=10))).accepted
    d = r.check(buy(1, n=3), ctx(t=T0 + timedelta(seconds=20)))
    assert d.rule == "max_order_rate" and d.detail == {"limit": 2, "orders_last_minute": 2}
    assert r.check(buy(1, n=4), ctx(t=T0 + timedelta(seconds=61))).accepted  # the first left the window


def test_sells_are_capped_at_the_position_and_need_one():
    r = engine()
    d = r.check(sell(15), ctx(holding(10)))
    assert d.accepted and d.quantity == 10 and d.rule == "long_only"
    assert r.check(sell(1), ctx()).rule == "no_position"


def test_exits_due_time_limit_then_stops():
    r = engine({"stop_loss": 0.05, "take_profit": 0.1, "trailing_stop": 0.03, "max_holding_minutes": 60})
    pos = Position(BTC, quantity=2.0, avg_price=100.0, opened_at=T0, peak_price=104.0)
    bar = lambda minutes, o, h, lo: Bar(T0 + timedelta(minutes=minutes), o, h, lo, o, 1000.0)  # noqa: E731
    assert r.exits_due(pos, bar(0, 90, 90, 80)) == []  # the entry bar itself
    assert r.exits_due(pos, bar(1, 102, 103, 101)) == []
    [o] = r.exits_due(pos, bar(1, 102, 103, 100))  # trailing 104 * 0.97 = 100.88 > stop 95
    assert (o.reason, o.stop_price, o.quantity, o.side) == ("trailing_stop", pytest.approx(100.88), 2.0, Side.SELL)
    assert o.type is OrderType.MARKET
    assert o.client_id == f"{BTC}:trailing_stop:{int((T0 + timedelta(minutes=1)).timestamp())}"
    [o] = r.exits_due(pos, bar(2, 111, 112, 110.5))  # gapped above take profit 110
    assert (o.reason, o.stop_price) == ("take_profit", 111)
    [o] = r.exits_due(pos, bar(60, 102, 103, 101))  # age 60 min at the open
    assert (o.reason, o.stop_price) == ("time_limit", 102)
    assert engine().exits_due(pos, bar(1, 1, 1, 1)) == []  # no exits configured


def test_tighten_stops_and_floor():
    r = engine({"stop_loss": 0.05})
    pos = Position(BTC, quantity=1.0, avg_price=100.0, opened_at=T0, peak_price=100.0)
    b = Bar(T0 + timedelta(minutes=5), 98.0, 99.0, 96.5, 97.0, 10.0)
    assert r.exits_due(pos, b) == []  # stop at 95
    r.tighten_stops(0.02)  # 5 % -> 3 %: stop at 97
    [o] = r.exits_due(pos, b)
    assert o.reason == "stop_loss" and o.stop_price == pytest.approx(97.0)
    r.tighten_stops(0.02)  # absolute, not cumulative
    assert r.limits["stop_loss"] == pytest.approx(0.03)
    r.tighten_stops(0.2)
    assert r.limits["stop_loss"] == 0.001  # floor
    r.tighten_stops(0.0)
    assert r.limits["stop_loss"] == 0.05
    assert r.events[-1]["kind"] == "stops_tightened"
    with pytest.raises(ValueError):
        r.tighten_stops(-0.01)


def test_scale_sizing_is_absolute():
    r = engine(sizing={"mode": "fixed_amount", "value": 1000})
    assert r.target_quantity(100.0, 10_000.0) == pytest.approx(10)
    r.scale_sizing(0.5)
    r.scale_sizing(0.5)
    assert r.target_quantity(100.0, 10_000.0) == pytest.approx(5)
    assert r.events[-1]["data"]["factor"] == 0.5
    with pytest.raises(ValueError):
        r.scale_sizing(0)


def test_override_applies_is_recorded_and_expires():
    r = engine({"max_position": 500})
    r.override({"max_position": 1000}, "squeeze opportunity", T0 + timedelta(hours=1), actor="ana", now=T0)
    ev = r.events[-1]
    assert ev["kind"] == "risk_override" and ev["data"]["previous"] == {"max_position": 500}
    assert ev["data"]["actor"] == "ana" and ev["data"]["reason"] == "squeeze opportunity"
    assert r.check(buy(20), ctx(t=T0 + timedelta(minutes=59))).quantity == pytest.approx(10)
    assert r.check(buy(20, n=1), ctx(t=T0 + timedelta(hours=1))).quantity == pytest.approx(5)
    assert [e["kind"] for e in r.events][-1] == "risk_override_expired" and r.overrides == []


def test_override_expires_on_bars_and_lifts_limits_with_none():
    r = engine({"stop_loss": 0.05})
    r.override({"stop_loss": None}, "news", T0 + timedelta(minutes=30))
    pos = Position(BTC, quantity=1.0, avg_price=100.0, opened_at=T0, peak_price=100.0)
    crash = lambda m: Bar(T0 + timedelta(minutes=m), 90.0, 91.0, 89.0, 90.0, 10.0)  # noqa: E731
    assert r.exits_due(pos, crash(10)) == []
    [o] = r.exits_due(pos, crash(30))
    assert o.reason == "stop_loss" and o.stop_price == 90.0


@pytest.mark.parametrize(
    "changes,reason,match",
    [
        ({"initial_balance": 1}, "x", "cannot override"),
        ({"stop_loss": 2.0}, "x", "stop_loss"),
        ({"max_position": 1}, " ", "reason"),
    ],
)
def test_bad_overrides_are_refused(changes, reason, match):
    with pytest.raises(ValueError, match=match):
        engine().override(changes, reason, T0 + timedelta(hours=1))


def test_daily_loss_against_start_of_utc_day():
    r = engine({"circuit_breaker": {"max_daily_loss": 0.05}})
    r.on_equity(T0, 9600.0)  # 4 % down on the day: fine
    r.on_equity(T0.replace(hour=23, minute=59), 9600.0)
    r.on_equity(T0 + timedelta(days=1, hours=-10), 9200.0)  # new day starts at 9600: 4.2 %
    assert r.state is TradingState.RUNNING
    r.on_equity(T0 + timedelta(days=1, hours=-9), 9120.0)  # 5 % of 9600
    assert r.state is TradingState.HALTED
    ev = r.events[-1]
    assert ev["kind"] == "circuit_breaker_tripped" and ev["data"]["reason"] == "daily_loss"
    assert ev["data"]["day_start_equity"] == 9600.0 and ev["data"]["loss"] == pytest.approx(0.05)
    assert r.check(buy(1), ctx()).rule == "halted"
    assert r.check(sell(10, reason="signal"), ctx(holding(10))).rule == "halted"
    assert r.check(sell(10, reason="stop_loss"), ctx(holding(10))).accepted
    assert r.check(sell(10, reason="close_all"), ctx(holding(10))).accepted


def test_drawdown_trips_to_reducing_and_needs_a_reset():
    r = engine({"circuit_breaker": {"max_drawdown": 0.1, "action": "reducing"}})
    r.on_equity(T0, 11_000.0)
    r.on_equity(T0 + timedelta(minutes=1), 10_000.0)  # 9.1 %
    assert r.state is TradingState.RUNNING
    r.on_equity(T0 + timedelta(minutes=2), 9900.0)  # 10 %
    assert r.state is TradingState.REDUCING
    assert r.events[-1]["data"]["peak_equity"] == 11_000.0
    assert r.check(buy(1), ctx()).rule == "reducing"
    assert r.check(sell(10), ctx(holding(10))).accepted  # reducing orders pass
    r.on_equity(T0 + timedelta(minutes=3), 12_000.0)  # recovery does not reset it
    assert r.state is TradingState.REDUCING
    r.reset("ana", "reviewed")
    assert r.state is TradingState.RUNNING and r.events[-1]["kind"] == "circuit_breaker_reset"
    r.on_equity(T0 + timedelta(minutes=4), 11_000.0)  # 8.3 % below the rebased peak of 12000
    assert r.state is TradingState.RUNNING


def test_rejection_burst_within_the_window_trips():
    r = engine({"circuit_breaker": {"max_rejections": 3, "rejection_window_s": 60}})
    r.disable_symbol(ETH)
    r.check(buy(1, ETH), ctx(t=T0))
    r.check(buy(1, ETH), ctx(t=T0 + timedelta(seconds=30)))
    r.check(buy(1, ETH), ctx(t=T0 + timedelta(seconds=61)))  # the first is out of the window
    assert r.state is TradingState.RUNNING
    r.check(buy(1, ETH), ctx(t=T0 + timedelta(seconds=62)))
    assert r.state is TradingState.HALTED
    assert r.events[-1]["data"]["reason"] == "rejections" and r.events[-1]["data"]["rejections"] == 3
    r.reset("ana", "ok")  # clears the window: one more rejection does not re-trip
    r.check(buy(1, ETH), ctx(t=T0 + timedelta(seconds=63)))
    assert r.state is TradingState.RUNNING and r.check(buy(1), ctx(t=T0 + timedelta(seconds=64))).accepted


def test_manual_trip_escalates_but_never_lowers():
    r = engine()
    r.trip("operator worry", state="reducing")
    assert r.state is TradingState.REDUCING
    r.trip("worse", state="halted")
    assert r.state is TradingState.HALTED
    r.trip("back?", state="reducing")
    assert r.state is TradingState.HALTED
    assert [e["data"]["state"] for e in r.drain_events()] == ["reducing", "halted"]
    assert r.events == []


def test_snapshot_restore_keeps_state_overrides_and_adjustments():
    r = engine({"max_position": 500, "stop_loss": 0.05})
    r.override({"max_position": 800}, "why", T0 + timedelta(hours=1))
    r.scale_sizing(0.5)
    r.tighten_stops(0.01)
    r.disable_symbol(ETH)
    r.trip("test")
    state = json.loads(json.dumps(r.snapshot()))
    back = engine({"max_position": 500, "stop_loss": 0.05})
    back.restore(state)
    assert back.state is TradingState.HALTED and back.size_factor == 0.5 and back.disabled == {ETH}
    assert back.limits == r.limits
    assert back.limits["max_position"] == 800 and back.limits["stop_loss"] == pytest.approx(0.04)
    back.on_equity(T0 + timedelta(hours=1), 10_000.0)
    assert back.limits["max_position"] == 500
