"""Exposure and risk computations (workbench.engine.exposure) and the built-in risk profiles."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from tests.kit import FakeClock
from workbench.config import make_config
from workbench.domain import Position
from workbench.engine import exposure as X
from workbench.profiles import PROFILES, apply_profile

T0 = datetime(2024, 1, 2, tzinfo=timezone.utc)


def bars(closes, volumes=None, start=T0):
    idx = pd.date_range(start, periods=len(closes), freq="1min", tz="UTC")
    c = np.asarray(closes, dtype=float)
    v = np.asarray(volumes if volumes is not None else np.ones(len(c)), dtype=float)
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "volume": v}, index=idx)


def test_concentration_shares_and_order():
    out = X.concentration(pd.Series({"A": 300.0, "B": 100.0, "C": 0.0}), equity=1000.0)
    assert list(out.index) == ["A", "B"]  # flat symbols left out, largest first
    assert out.loc["A", "share_of_exposure"] == pytest.approx(0.75)
    assert out.loc["B", "share_of_equity"] == pytest.approx(0.1)


def test_correlation_of_returns():
    rng = np.random.default_rng(1)
    a = 100 * np.cumprod(1 + rng.normal(0, 0.01, 200))
    b = 100 * np.cumprod(1 + rng.normal(0, 0.01, 200))
    ra = pd.Series(a).pct_change()
    closes = pd.DataFrame({"A": a, "A2": a * 3, "B": b})
    corr = X.correlation(closes)
    assert corr.loc["A", "A2"] == pytest.approx(1.0)
    assert corr.loc["A", "B"] == pytest.approx(ra.corr(pd.Series(b).pct_change()))
    assert abs(corr.loc["A", "B"]) < 0.5


def test_liquidity_uses_recent_volume_only():
    b = {"A": bars([1.0] * 100, volumes=[1000.0] * 40 + [10.0] * 60)}
    out = X.liquidity(pd.Series({"A": 5.0, "Z": 1.0}), b, window=60)
    assert out.loc["A", "avg_volume"] == pytest.approx(10.0)
    assert out.loc["A", "share"] == pytest.approx(0.5)
    assert math.isnan(out.loc["Z", "share"])  # no bars: unknown, not zero


def test_volatility_exposure_scales_per_bar_vol_to_a_day():
    closes = 100 * np.cumprod(np.r_[1.0, np.where(np.arange(299) % 2, 1.01, 0.99)])
    b = {"A": bars(closes)}
    out = X.volatility_exposure(pd.Series({"A": 1000.0}), b, window=240)
    per_bar = pd.Series(closes[-240:]).pct_change().std()
    assert out.loc["A", "volatility"] == pytest.approx(per_bar * math.sqrt(1440), rel=1e-6)
    assert out.loc["A", "daily_move"] == pytest.approx(1000.0 * out.loc["A", "volatility"])


def test_limit_usage_lists_only_limits_that_are_set():
    cfg = make_config(risk={"max_position": 1000, "portfolio_limit": 4000, "concentration_limit": 0.5})
    out = X.limit_usage(cfg, {"A": 800.0, "B": 400.0}, equity=2000.0).set_index("limit")
    assert out.loc["max position per symbol", "usage"] == pytest.approx(0.8)
    assert out.loc["portfolio limit", "used"] == pytest.approx(1200.0)
    assert out.loc["max share of equity per symbol", "usage"] == pytest.approx(0.8)
    assert X.limit_usage(make_config(), {"A": 1.0}, 10.0).empty


def test_is_orphaned():
    now = T0 + timedelta(minutes=5)
    assert X.is_orphaned("orphaned", None, now, 10)
    assert X.is_orphaned("running", None, now, 10)
    assert X.is_orphaned("running", pd.Timestamp(now - timedelta(seconds=30)), now, 10)
    assert not X.is_orphaned("running", pd.Timestamp(now - timedelta(seconds=3)), now, 10)
    assert not X.is_orphaned("requested", None, now, 10)  # nobody runs it yet
    assert not X.is_orphaned("completed", None, now, 10)
    assert not X.is_orphaned("running", pd.Timestamp(now - timedelta(seconds=10)), now, 10)  # stale only past it


def _running(store, symbols=("BTC/USDT",), **risk):
    cfg = make_config(kind="paper", symbols=list(symbols), risk=risk)
    sid = store.create_session(cfg)
    store.set_state(sid, "running")
    store.heartbeat(sid, "test:1")
    return sid, cfg


def test_active_sessions_pnl_exposure_uptime(store):
    sid, _ = _running(store)
    store.add_equity_points(sid, [(T0, 10_000.0, 10_000.0, 0.0),
                                  (T0 + timedelta(minutes=1), 10_250.0, 7_250.0, 3_000.0)])
    done = store.create_session(make_config(kind="paper"))
    store.set_state(done, "completed")
    req = store.create_session(make_config(kind="paper"), state="requested")
    clock = FakeClock(store.get_session(sid)["started_at"])
    clock.advance(30 * 60)
    out = X.active_sessions(store, clock=clock, stale_after=1e6).set_index("id")
    assert set(out.index) == {sid, req}
    assert out.loc[sid, "pnl"] == pytest.approx(250.0) and out.loc[sid, "exposure"] == pytest.approx(3000.0)
    assert out.loc[sid, "uptime"] == timedelta(minutes=30)
    assert not out.loc[sid, "orphaned"] and not out.loc[req, "orphaned"]
    assert math.isnan(out.loc[req, "pnl"]) and pd.isna(out.loc[req, "uptime"])
    stale = X.active_sessions(store, clock=clock, stale_after=60).set_index("id")
    assert stale.loc[sid, "orphaned"]  # heartbeat 30 min old


def test_risk_report_marks_positions_at_the_sessions_own_bars(store):
    a, cfg_a = _running(store, ("BTC/USDT", "ETH/USDT"), max_position=5_000.0)
    b, _ = _running(store, ("BTC/USDT",))
    t_last = T0 + timedelta(minutes=299)
    for sid in (a, b):
        store.add_equity_points(sid, [(t_last, 10_000.0, 5_000.0, 5_000.0)])
    store.upsert_position(a, Position("BTC/USDT", 2.0, 100.0))
    store.upsert_position(a, Position("ETH/USDT", 10.0, 20.0))
    store.upsert_position(b, Position("BTC/USDT", 1.0, 90.0))
    store.upsert_position(b, Position("ETH/USDT", 0.0, 0.0))  # closed: ignored
    rng = np.random.default_rng(7)
    data = {"BTC/USDT": bars(110 * np.cumprod(1 + rng.normal(0, 0.001, 300)), [50.0] * 300),
            "ETH/USDT": bars(25 * np.cumprod(1 + rng.normal(0, 0.002, 300)), [400.0] * 300)}
    calls = []

    def load(cfg, symbol, end):
        calls.append((symbol, end))
        return data[symbol].loc[:end]
    r = X.risk_report(store, load=load, window=60)
    btc, eth = data["BTC/USDT"]["close"].iloc[-1], data["ETH/USDT"]["close"].iloc[-1]
    assert r.total_exposure == pytest.approx(3 * btc + 10 * eth)
    assert r.total_equity == pytest.approx(20_000.0)
    assert r.concentration.loc["BTC/USDT", "value"] == pytest.approx(3 * btc)
    assert r.liquidity.loc["BTC/USDT", "share"] == pytest.approx(3 / 50.0)
    assert set(r.correlation.columns) == {"BTC/USDT", "ETH/USDT"}
    lim = r.limits.set_index("session_id")
    assert lim.loc[a, "used"] == pytest.approx(max(2 * btc, 10 * eth))
    assert all(end == t_last for _, end in calls)
    assert r.problems == []
    gaps = r.gaps.set_index("symbol")
    assert gaps.loc["BTC/USDT", "value"] == pytest.approx(3 * btc) and gaps.loc["BTC/USDT", "gaps"] == 0


def test_risk_report_survives_missing_data(store):
    a, _ = _running(store)
    store.add_equity_points(a, [(T0, 10_000.0, 9_900.0, 100.0)])
    store.upsert_position(a, Position("BTC/USDT", 1.0, 100.0))

    def load(cfg, symbol, end):
        raise ValueError("exchange unreachable")
    r = X.risk_report(store, load=load)
    assert r.total_exposure == pytest.approx(100.0)  # valued at entry
    assert len(r.problems) == 1 and "exchange unreachable" in r.problems[0]


def test_profiles_overlay_and_errors():
    base = make_config(symbols=["ETH/USDT"], initial_balance=5000)
    cons = apply_profile(base, "conservative")
    assert cons.risk.stop_loss == PROFILES["conservative"]["risk"]["stop_loss"]
    assert cons.risk.circuit_breaker.max_drawdown == 0.05
    assert cons.symbols == ["ETH/USDT"] and cons.initial_balance == 5000  # the rest is kept
    agg = apply_profile(cons, "aggressive")
    assert agg.risk.trailing_stop is None and agg.sizing.value > cons.sizing.value
    with pytest.raises(ValueError, match="unknown risk profile 'yolo'; use one of conservative"):
        apply_profile(base, "yolo")


def test_risk_report_shows_account_limits_sectors_venues_and_breakers(store, tmp_path, monkeypatch):
    from workbench.account import RiskPolicy, save_policy

    a, _ = _running(store, ("BTC/USDT", "DOGE/USDT"))
    b, _ = _running(store, ("BTC/USDT",))
    for sid in (a, b):
        store.add_equity_points(sid, [(T0, 10_000.0, 9_000.0, 1_000.0)])
    store.upsert_position(a, Position("BTC/USDT", 2.0, 100.0))
    store.upsert_position(a, Position("DOGE/USDT", 100.0, 1.0))
    store.upsert_position(b, Position("BTC/USDT", 1.0, 100.0))
    store.save_runner_state(b, {"risk": {"state": "halted", "peak": 10_500.0, "day_start": 10_200.0,
                                         "last_equity": 10_000.0}})

    def load(cfg, symbol, end):
        raise ValueError("no data")  # valued at entry: BTC 300, DOGE 100
    policy = RiskPolicy.model_validate({"accounts": {"paper": {"total_exposure": 1_000,
                                                               "per_sector": {"meme": 50}}}})
    r = X.risk_report(store, load=load, policy=policy)
    acc = r.accounts.set_index(["rule", "key"])
    assert acc.loc[("account_exposure", "total"), "used"] == pytest.approx(400.0)
    assert acc.loc[("account_exposure", "total"), "share"] == pytest.approx(0.4)
    assert acc.loc[("account_sector", "meme"), "used"] == pytest.approx(100.0)  # over its limit of 50
    assert r.sectors.set_index("sector")["value"].to_dict() == {"currency": 300.0, "meme": 100.0}
    assert r.venues[["account", "venue", "value"]].to_dict("records") == [
        {"account": "paper", "venue": "paper", "value": 400.0}]
    assert r.venues["health"].isna().all()  # a paper venue has no exchange history
    brk = r.breakers.set_index("session_id")
    assert brk.loc[b, "breaker"] == "halted" and brk.loc[b, "day_pnl"] == pytest.approx(-200.0)
    assert brk.loc[b, "drawdown"] == pytest.approx(1 - 10_000 / 10_500)
    assert brk.loc[a, "breaker"] == "running"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))  # a bad policy file: the rest still shows, and why not
    (tmp_path / "risk-policy.yaml").write_text("accounts: {paper: {total_exposure: -1}}")
    r = X.risk_report(store, load=load)
    assert any("accounts.paper.total_exposure" in p for p in r.problems) and r.accounts.empty
    assert r.total_exposure == pytest.approx(400.0)
    save_policy({"accounts": {"*": {"total_exposure": 500}}}, tmp_path / "risk-policy.yaml")
    assert X.risk_report(store, load=load).accounts["limit"].tolist() == [500.0]


def test_risk_report_lists_the_event_windows_ahead_of_the_active_sessions(store):
    now = datetime(2024, 6, 12, 18, 30, tzinfo=timezone.utc)
    events = [{"name": "FOMC", "start": "2024-06-12T18:00Z", "end": "2024-06-12T20:00Z"},
              {"name": "CPI", "start": "2024-06-13T12:30Z", "end": "2024-06-13T13:30Z"},
              {"name": "past", "start": "2024-06-01T12:30Z", "end": "2024-06-01T13:30Z"}]
    ids = []
    for _ in range(2):
        sid = store.create_session(make_config(kind="paper", time={"events": events}))
        store.set_state(sid, "running")
        ids.append(sid)
    r = X.risk_report(store, clock=lambda: now, load=lambda *a: pd.DataFrame())
    assert list(r.events["name"]) == ["FOMC", "CPI"] and list(r.events["now"]) == [True, False]
    assert set(r.events["sessions"].iloc[0].split(", ")) == set(ids)
