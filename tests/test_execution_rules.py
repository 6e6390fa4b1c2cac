"""execution.py: hand-computed fills, fees, sizing caps, stops, time rules; and agreement with the
backtest's numba kernel on random inputs (one definition of the numbers)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from workbench import execution as ex
from workbench.config import CommissionModel, PositionSizing, SlippageModel, TimeRestrictions, VolumeRule
from workbench.domain import Side
from workbench.execution import codes, entry_allowed
from workbench.execution import nb as kernel

FIXED = SlippageModel(model="fixed", bps=5)
VOLUME = SlippageModel(model="volume", bps=10, impact=0.1)
NO_SLIP = SlippageModel(bps=0)
TAKER = CommissionModel(taker=0.001, maker=0.0002, fixed=0.0)
NO_FEES = CommissionModel(taker=0.0, maker=0.0, fixed=0.0)
ANY_VOLUME = VolumeRule()


def test_fixed_slippage_fill_prices():
    assert ex.fill_price(Side.BUY, 100.0, 1.0, 10.0, FIXED) == pytest.approx(100.05, rel=1e-12)
    assert ex.fill_price(Side.SELL, 100.0, 1.0, 10.0, FIXED) == pytest.approx(99.95, rel=1e-12)


def test_volume_slippage_adds_impact_times_volume_share_capped_at_one():
    # s = 10 bps + 0.1 * (2 / 10) = 0.021
    assert ex.fill_price(Side.BUY, 100.0, 2.0, 10.0, VOLUME) == pytest.approx(102.1, rel=1e-12)
    assert ex.fill_price(Side.SELL, 100.0, 2.0, 10.0, VOLUME) == pytest.approx(97.9, rel=1e-12)
    # share 20/10 is capped at 1: s = 0.001 + 0.1
    assert ex.fill_price(Side.BUY, 100.0, 20.0, 10.0, VOLUME) == pytest.approx(110.1, rel=1e-12)
    # no volume counts as share 1
    assert ex.fill_price(Side.BUY, 100.0, 1.0, 0.0, VOLUME) == pytest.approx(110.1, rel=1e-12)


def test_sell_slippage_is_capped_at_99_percent():
    huge = SlippageModel(model="volume", bps=1000, impact=10)
    assert ex.fill_price(Side.SELL, 100.0, 5.0, 1.0, huge) == pytest.approx(1.0, rel=1e-12)


def test_fee_taker_maker_and_fixed():
    c = CommissionModel(taker=0.001, maker=0.0002, fixed=1.0)
    assert ex.fee(1000.0, c) == pytest.approx(2.0)
    assert ex.fee(1000.0, c, maker=True) == pytest.approx(1.2)


@pytest.mark.parametrize(
    "mode,value,expected", [("fixed_amount", 1000.0, 20.0), ("percent_equity", 0.1, 20.0), ("fixed_quantity", 0.5, 0.5)]
)
def test_target_quantity_per_mode(mode, value, expected):
    sizing = PositionSizing(mode=mode, value=value)
    assert ex.target_quantity(sizing, 10_000.0, 50.0) == pytest.approx(expected)
    assert ex.target_quantity(sizing, 10_000.0, 50.0, factor=0.5) == pytest.approx(expected / 2)


def cap(q, price=50.0, volume=1e9, cash=1e9, exposure=0.0, commission=NO_FEES, slippage=NO_SLIP, rule=ANY_VOLUME, **kw):
    return ex.cap_entry(q, price, volume, cash, exposure, commission, slippage, rule, **kw)


def test_caps_in_order_of_the_semantics():
    assert cap(20.0) == (20.0, "")
    assert cap(20.0, max_position=500.0) == (pytest.approx(10.0), "max_position")
    # already 300 in the symbol: room 200 -> 4
    assert cap(20.0, max_position=500.0, position_value=300.0) == (pytest.approx(4.0), "max_position")
    # exposure 800 of a 1000 limit: 200 left -> 4
    assert cap(20.0, exposure=800.0, portfolio_limit=1000.0) == (pytest.approx(4.0), "portfolio_limit")
    assert cap(20.0, exposure=1000.0, portfolio_limit=1000.0) == (0.0, "portfolio_limit")
    # equity 9000 + 1000 = 10000; 20 % = 2000, 1000 already held -> 1000 more = 20 units
    assert cap(30.0, cash=9000.0, exposure=1000.0, position_value=1000.0, concentration_limit=0.2) == (
        pytest.approx(20.0), "concentration_limit")
    # max_position binds first (10), then portfolio (6): the last binding cap is reported
    capped = cap(20.0, max_position=500.0, exposure=700.0, portfolio_limit=1000.0)
    assert capped == (pytest.approx(6.0), "portfolio_limit")


def test_volume_rules():
    half = VolumeRule(max_share=0.5, on_excess="cap", min_bar_volume=10.0)
    assert cap(8.0, volume=10.0, rule=half) == (5.0, "max_share")
    assert cap(4.0, volume=10.0, rule=half) == (4.0, "")
    assert cap(4.0, volume=9.0, rule=half) == (0.0, "min_volume")
    skip = VolumeRule(max_share=0.5, on_excess="skip")
    assert cap(8.0, volume=10.0, rule=skip) == (0.0, "max_share")


def test_cash_cap_fixed_slippage_and_fees():
    # 20 * 50 * 1.001 = 1001 > 1000 -> 1000 / (50 * 1.001)
    q, rule = cap(20.0, cash=1000.0, commission=TAKER)
    assert rule == "cash" and q == pytest.approx(1000.0 / 50.05, rel=1e-12)
    # fixed fee 1 and 10 bps: (1000 - 1) / (50 * 1.001 * 1.001)
    c = CommissionModel(taker=0.001, fixed=1.0)
    q, rule = cap(20.0, cash=1000.0, commission=c, slippage=SlippageModel(bps=10))
    assert rule == "cash" and q == pytest.approx(999.0 / (50 * 1.001 * 1.001), rel=1e-12)
    assert cap(20.0, cash=0.5, commission=c) == (0.0, "cash")


def test_cash_cap_under_volume_slippage_spends_exactly_the_cash():
    c = CommissionModel(taker=0.001, fixed=1.0)
    q, rule = cap(100.0, price=50.0, volume=200.0, cash=1000.0, commission=c, slippage=VOLUME)
    price = ex.fill_price(Side.BUY, 50.0, q, 200.0, VOLUME)
    assert rule == "cash"
    assert q * price + ex.fee(q * price, c) == pytest.approx(1000.0, rel=1e-12)


def test_entry_quantity_sizes_then_caps():
    all_in = PositionSizing(mode="percent_equity", value=1.0)
    q, rule = ex.entry_quantity(all_in, 1000.0, 100.0, 1000.0, 0.0, 1e6, TAKER, NO_SLIP, ANY_VOLUME)
    assert rule == "cash" and q == pytest.approx(1000.0 / 100.1, rel=1e-12)
    q, rule = ex.entry_quantity(
        PositionSizing(mode="fixed_amount", value=500.0), 1e4, 100.0, 1e4, 0.0, 1e6, NO_FEES, NO_SLIP, ANY_VOLUME,
        max_position=300.0,
    )
    assert (q, rule) == (pytest.approx(3.0), "max_position")


@pytest.mark.parametrize(
    "bar,peak,kw,expected",
    [
        ((96.0, 97.0, 94.0), 100.0, {"stop_loss": 0.05}, ("stop_loss", 95.0)),
        ((93.0, 97.0, 92.0), 100.0, {"stop_loss": 0.05}, ("stop_loss", 93.0)),  # gap below: at the open
        ((105.0, 111.0, 104.0), 100.0, {"take_profit": 0.1}, ("take_profit", 110.0)),
        ((112.0, 113.0, 111.0), 100.0, {"take_profit": 0.1}, ("take_profit", 112.0)),  # gap above
        ((100.0, 111.0, 94.0), 100.0, {"stop_loss": 0.05, "take_profit": 0.1}, ("stop_loss", 95.0)),  # stop first
        ((118.0, 119.0, 116.0), 120.0, {"stop_loss": 0.05, "trailing_stop": 0.03}, ("trailing_stop", 116.4)),
        ((96.0, 97.0, 94.0), 97.0, {"stop_loss": 0.05, "trailing_stop": 0.03}, ("stop_loss", 95.0)),  # higher level
        ((100.0, 105.0, 96.0), 100.0, {"stop_loss": 0.05, "take_profit": 0.1}, None),
        ((50.0, 200.0, 1.0), 100.0, {}, None),
    ],
)
def test_stop_exit(bar, peak, kw, expected):
    o, h, lo = bar
    args = {"stop_loss": None, "take_profit": None, "trailing_stop": None, **kw}
    got = ex.stop_exit(o, h, lo, 100.0, peak, args["stop_loss"], args["take_profit"], args["trailing_stop"])
    if expected is None:
        assert got is None
    else:
        assert got[0] == expected[0] and got[1] == pytest.approx(expected[1], rel=1e-12)


NY = TimeRestrictions(
    timezone="America/New_York", trading_hours={"start": "09:30", "end": "16:00"},
    blackouts=[{"start": "12:00", "end": "13:00"}], weekdays=[0, 1, 2, 3, 4],
)


@pytest.mark.parametrize(
    "ts,rule",
    [
        ("2024-01-08 14:30", ""),  # Monday 09:30 EST
        ("2024-01-08 14:29", "trading_hours"),
        ("2024-01-08 21:00", "trading_hours"),  # 16:00, end excluded
        ("2024-01-08 17:00", "blackout"),  # 12:00 EST
        ("2024-01-08 17:59", "blackout"),
        ("2024-01-08 18:00", ""),
        ("2024-01-06 15:00", "weekday"),  # Saturday
    ],
)
def test_time_block(ts, rule):
    t = datetime.fromisoformat(ts).replace(tzinfo=timezone.utc)
    assert ex.time_block(t, NY) == rule
    assert ex.entry_allowed_at(t, NY) is (rule == "")


def test_unrestricted_and_wrapping_window():
    t = datetime(2024, 1, 6, 23, tzinfo=timezone.utc)
    assert ex.entry_allowed_at(t, TimeRestrictions())
    night = TimeRestrictions(trading_hours={"start": "22:00", "end": "02:00"})
    assert ex.entry_allowed_at(t, night)
    assert ex.entry_allowed_at(t + timedelta(hours=2, minutes=59), night)
    assert not ex.entry_allowed_at(t + timedelta(hours=3), night)


@pytest.mark.parametrize(
    "zone,utc,local_wall",
    [
        ("America/New_York", "2024-11-03 17:30", "12:30"),  # DST ended at 02:00: the day has 25 hours
        ("America/New_York", "2024-03-10 16:30", "12:30"),  # DST began at 02:00: the day has 23 hours
        ("Europe/London", "2024-10-27 12:30", "12:30"),
        ("Europe/London", "2024-03-31 11:30", "12:30"),
        ("Australia/Sydney", "2024-04-07 02:30", "12:30"),  # AEDT ended at 03:00 local
        ("Australia/Sydney", "2024-10-06 01:30", "12:30"),  # AEDT began at 02:00 local
    ],
)
def test_windows_are_on_the_wall_clock_on_daylight_saving_days(zone, utc, local_wall):
    """A 12:00-13:00 blackout blocks 12:30 on the wall clock on both transition days, in both
    speeds (the vectorized rule once measured elapsed time since local midnight: an hour off)."""
    rules = TimeRestrictions(timezone=zone, blackouts=[{"start": "12:00", "end": "13:00"}])
    t = pd.Timestamp(utc, tz="UTC")
    assert t.tz_convert(zone).strftime("%H:%M") == local_wall
    for ts in (t, t.to_pydatetime()):
        assert ex.time_block(ts, rules) == "blackout"
    idx = pd.DatetimeIndex([t - pd.Timedelta(minutes=31), t, t + pd.Timedelta(minutes=31)])
    assert entry_allowed(idx, rules).tolist() == [True, False, True]


def test_time_rules_agree_with_the_backtest_over_a_week_of_minutes():
    idx = pd.date_range("2024-03-08", periods=7 * 24 * 60, freq="min", tz="UTC")  # crosses the DST change
    vectorized = entry_allowed(idx, NY)
    per_bar = np.array([ex.entry_allowed_at(t, NY) for t in idx[::7]])
    assert (vectorized[::7] == per_bar).all()
    assert per_bar.any() and not per_bar.all()


def test_pure_python_matches_the_numba_kernel_on_random_inputs():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        bps, impact = rng.uniform(0, 50), rng.choice([0.0, rng.uniform(0, 2)])
        slip = SlippageModel(model="volume" if impact else "fixed", bps=bps, impact=impact)
        comm = CommissionModel(taker=rng.uniform(0, 0.01), fixed=rng.choice([0.0, rng.uniform(0, 5)]))
        price, volume = rng.uniform(1, 1000), rng.uniform(1, 1000)
        q = rng.uniform(0.01, 1.0) * volume
        cash = rng.uniform(0, 2) * q * price
        s = kernel.slippage_nb(bps / 1e4, impact, q, volume)
        assert ex.fill_price(Side.BUY, price, q, volume, slip) == price * (1.0 + s)
        assert ex.fill_price(Side.SELL, price, q, volume, slip) == price * (1.0 - min(s, kernel.MAX_SELL_SLIPPAGE))
        expected = kernel.buy_quantity_nb(q, price, volume, cash, comm.taker, comm.fixed, bps / 1e4, impact)
        got = ex.affordable_quantity(q, price, volume, cash, comm, slip)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
        entry, peak = rng.uniform(50, 150), rng.uniform(100, 200)
        o = rng.uniform(50, 200)
        lo, hi = o * rng.uniform(0.8, 1.0), o * rng.uniform(1.0, 1.2)
        sl, tp, tr = (rng.choice([None, rng.uniform(0.01, 0.3)]) for _ in range(3))
        code, ref = kernel.stop_exit_nb(o, hi, lo, entry, peak, *(math.nan if v is None else v for v in (sl, tp, tr)))
        got = ex.stop_exit(o, hi, lo, entry, peak, sl, tp, tr)
        if code == codes.NONE:
            assert got is None
        else:
            assert got == (codes.REASONS[code], ref)
