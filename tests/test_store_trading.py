"""Store round trips of what a session trades: equity curves, trade logs (TRADE_COLUMNS) and saved backtests."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from workbench.config import make_config
from workbench.store import NotFoundError

UTC = timezone.utc
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config():
    """Two symbols, a name (the kit's ``store`` fixture gives the throwaway store)."""
    return make_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"], initial_balance=5_000, name="mom")


# ---- equity and trades --------------------------------------------------------
def test_equity_accepts_series_frames_and_rows(store, config):
    sid = store.create_session(config)
    idx = pd.date_range(T0, periods=3, freq="1min")
    assert store.add_equity_points(sid, pd.Series([100.0, 101.0, 99.5], index=idx)) == 3
    frame = pd.DataFrame({"time": idx + pd.Timedelta(minutes=3), "equity": [1.0, 2.0, 3.0], "cash": [5.0, 6.0, 7.0],
                          "exposure": [0.1, 0.2, np.nan], "ignored": ["a", "b", "c"]})
    store.add_equity_points(sid, frame)
    naive = datetime(2024, 3, 1, 12, 6)  # naive means UTC
    store.add_equity_points(sid, [(naive, 4.0, 8.0), (naive + timedelta(minutes=1), 5.0)])
    store.add_equity_points(sid, [{"time": "2024-03-01T14:08:00+02:00", "equity": 6.0}])
    assert store.add_equity_points(sid, []) == 0
    eq = store.equity(sid)
    assert eq.index.name == "time" and str(eq.index.dtype) == "datetime64[us, UTC]"
    assert list(eq.index) == list(pd.date_range(T0, periods=9, freq="1min"))
    assert eq.equity.tolist() == [100.0, 101.0, 99.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert eq.cash.iloc[3:7].tolist() == [5.0, 6.0, 7.0, 8.0] and np.isnan(eq.cash.iloc[0])
    assert eq.exposure.iloc[4] == 0.2 and np.isnan(eq.exposure.iloc[5])
    with pytest.raises(ValueError, match="NaN"):
        store.add_equity_points(sid, pd.Series([1.0, np.nan], index=idx[:2]))
    with pytest.raises(ValueError, match="'equity' column"):
        store.add_equity_points(sid, pd.DataFrame({"value": [1.0]}, index=idx[:1]))
    with pytest.raises(ValueError, match="time"):
        store.add_equity_points(sid, [("not a time", 1.0)])
    with pytest.raises(NotFoundError):
        store.add_equity_points("missing", pd.Series([1.0], index=idx[:1]))
    assert len(store.equity(sid)) == 9  # failed calls wrote nothing


def test_bulk_equity_times_compare_like_single_row_times(store, config):
    """Bulk-inserted times are stored exactly as SQLAlchemy stores a bound datetime, so SQL comparisons agree."""
    from sqlalchemy import func, select

    from workbench.store import schema

    sid = store.create_session(config)
    idx = pd.date_range("2024-01-01", periods=1000, freq="1s", tz="UTC") + pd.Timedelta(microseconds=250)
    store.add_equity_points(sid, pd.Series(np.arange(1000.0), index=idx))
    cut = idx[600].to_pydatetime()
    with store.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(schema.equity).where(schema.equity.c.time >= cut)).scalar()
    assert n == 400
    assert (store.equity(sid).index == idx).all()


def test_trades_round_trip_and_replace(store, config):
    sid = store.create_session(config)
    t = pd.DataFrame({
        "symbol": ["BTC/USDT", "ETH/USDT"], "entry_time": [T0, T0 + timedelta(hours=1)],
        "exit_time": [T0 + timedelta(minutes=30), None], "entry_price": [100.0, 10.0], "exit_price": [110.0, None],
        "quantity": [1.0, 2.0], "pnl": [9.5, None], "return_pct": [0.095, None], "commission": [0.5, 0.02],
        "slippage": [0.1, 0.0], "exit_reason": ["take_profit", None], "size_usd": [100, 20],
    })
    store.save_trades(sid, t)
    got = store.trades(sid)
    assert "size_usd" not in got.columns and list(got.status) == ["closed", "open"]
    assert got.exit_time.iloc[0] == T0 + timedelta(minutes=30) and pd.isna(got.exit_time.iloc[1])
    assert got.pnl.iloc[0] == 9.5 and np.isnan(got.pnl.iloc[1]) and got.exit_reason.iloc[0] == "take_profit"
    store.save_trades(sid, t.iloc[:1].assign(status="closed"))  # replaces
    assert len(store.trades(sid)) == 1
    with pytest.raises(ValueError, match="entry_price"):
        store.save_trades(sid, t.drop(columns="entry_price"))
    with pytest.raises(ValueError, match="'pnl' is not numeric"):
        store.save_trades(sid, t.assign(pnl=["lots", "none"]))
    with pytest.raises(ValueError, match="missing values in required column"):
        store.save_trades(sid, t.assign(quantity=[1.0, None]))
    assert len(store.trades(sid)) == 1  # rejected saves changed nothing
    store.save_trades(sid, t.iloc[:0])
    assert store.trades(sid).empty


def test_trades_keep_fees_and_duration_in_trade_columns(store, config):
    from workbench.domain import TRADE_COLUMNS

    sid = store.create_session(config)
    t = pd.DataFrame({
        "symbol": ["BTC/USDT", "BTC/USDT", "ETH/USDT"], "entry_time": [T0, T0, T0 + timedelta(hours=1)],
        "exit_time": [T0 + timedelta(minutes=30), T0 + timedelta(minutes=45), None],
        "entry_price": [100.0, 100.0, 10.0], "exit_price": [110.0, 90.0, 11.0], "quantity": [1.0, 1.0, 2.0],
        "pnl": [9.5, -10.5, 1.9], "entry_fees": [0.1, 0.1, 0.02], "exit_fees": [0.4, 0.4, 0.0],
        "commission": [0.5, 0.5, 0.02], "duration": [timedelta(minutes=30), None, None],
    })
    store.save_trades(sid, t)
    got = store.trades(sid)
    assert list(got.columns) == list(TRADE_COLUMNS)
    assert got.entry_fees.tolist() == [0.1, 0.1, 0.02] and got.exit_fees.tolist() == [0.4, 0.4, 0.0]
    # a missing duration is the holding time exit - entry; open trades have none
    assert got.duration.iloc[0] == pd.Timedelta(minutes=30) and got.duration.iloc[1] == pd.Timedelta(minutes=45)
    assert pd.isna(got.duration.iloc[2]) and got.status.tolist() == ["closed", "closed", "open"]
    with pytest.raises(ValueError, match="'duration'"):
        store.save_trades(sid, t.assign(duration=["soon", None, None]))


def test_save_backtest(store, config):
    idx = pd.date_range("2024-01-01", periods=500, freq="1min", tz="UTC")
    equity = pd.Series(5_000 + np.linspace(0, 620, 500), index=idx)
    trades = pd.DataFrame({
        "symbol": ["BTC/USDT"] * 3, "entry_time": idx[[10, 100, 300]], "exit_time": idx[[50, 200, 400]],
        "entry_price": [100.0, 105.0, 103.0], "exit_price": [104.0, 103.0, 110.0], "quantity": [10.0, 10.0, 10.0],
        "pnl": [40.0, -20.0, 70.0], "return_pct": [0.04, -0.019, 0.068], "commission": [2.0, 2.1, 2.1],
        "slippage": [0.5, 0.5, 0.5], "exit_reason": ["signal", "stop_loss", "signal"], "status": ["closed"] * 3,
        "duration": [pd.Timedelta(minutes=40)] * 3,
    })
    metrics = {"total_return": 0.124, "sharpe_ratio": 1.8, "max_drawdown": -0.05, "profit_factor": float("inf")}
    result = SimpleNamespace(equity=equity, trades=trades, metrics=metrics)
    sid = store.save_backtest(config.replace(kind="paper"), result)
    s = store.get_session(sid)
    assert (s["state"], s["kind"], s["config"].kind.value) == ("completed", "backtest", "backtest")
    assert s["final_equity"] == pytest.approx(5_620) and s["pnl"] == pytest.approx(620)
    assert s["total_return"] == 0.124 and s["trade_count"] == 3 and s["metrics"] == metrics
    assert s["started_at"] is not None and s["ended_at"] is not None
    assert store.equity(sid).equity.tolist() == pytest.approx(equity.tolist())
    assert store.trades(sid).exit_reason.tolist() == ["signal", "stop_loss", "signal"]
    assert store.events(sid).message.tolist() == ["backtest saved"]
    no_return = SimpleNamespace(equity=equity, trades=trades.iloc[:0], metrics={})
    s2 = store.get_session(store.save_backtest(config, no_return))
    assert s2["total_return"] == pytest.approx(620 / 5_000) and s2["trade_count"] == 0
    with pytest.raises(TypeError, match="metrics"):
        store.save_backtest(config, SimpleNamespace(equity=equity, trades=trades))


def test_bulk_equity_525600_points(store, config):
    """A year of 1-minute equity points goes in with one call and comes back exactly."""
    idx = pd.date_range("2023-01-01", periods=525_600, freq="1min", tz="UTC")
    values = 10_000 + np.cumsum(np.random.default_rng(1).normal(0, 1, len(idx)))
    sid = store.create_session(config)
    assert store.add_equity_points(sid, pd.Series(values, index=idx)) == 525_600
    eq = store.equity(sid)
    assert len(eq) == 525_600 and (eq.index == idx).all() and np.array_equal(eq.equity.to_numpy(), values)
