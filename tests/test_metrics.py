"""Metrics against hand-computed values, edge cases, and a cross-check with vectorbt."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from workbench.metrics import (
    METRIC_LABELS,
    TRADE_COLUMNS,
    compute_metrics,
    drawdown_series,
    empty_trades,
    format_metric,
    infer_periods_per_year,
    monthly_returns,
    period_returns,
)

DAY = pd.Timedelta(days=1)


def daily(values: list[float], start: str = "2024-01-01") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float)


def trade_log(rows: list[dict]) -> pd.DataFrame:
    """A trade log in the TRADE_COLUMNS schema; unspecified fields get neutral values."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    full = []
    for r in rows:
        entry = r.get("entry_time", t0)
        exit_ = r.get("exit_time", entry + pd.Timedelta(hours=2) if r.get("status", "closed") == "closed" else pd.NaT)
        full.append({
            "symbol": "BTC/USDT", "entry_time": entry, "exit_time": exit_, "entry_price": 100.0,
            "exit_price": 101.0, "quantity": 1.0, "pnl": 0.0, "return_pct": r.get("pnl", 0.0) / 100.0,
            "entry_fees": 0.1, "exit_fees": 0.1, "commission": 0.2, "slippage": 0.05,
            "duration": (exit_ - entry) if pd.notna(exit_) else pd.NaT,
            "exit_reason": "signal", "status": "closed", **r,
        })
    return pd.DataFrame(full, columns=list(TRADE_COLUMNS))


# --- hand-computed -----------------------------------------------------------------------

def test_equity_metrics_by_hand() -> None:
    eq = daily([100, 110, 99, 120])
    m = compute_metrics(eq, None, 100.0)
    rets = [0.0, 0.1, -0.1, 120 / 99 - 1]  # first period against the initial balance
    assert m["pnl"] == pytest.approx(20.0)
    assert m["final_equity"] == 120.0
    assert m["total_return"] == pytest.approx(0.2)
    assert m["max_drawdown"] == pytest.approx(0.1)  # 110 -> 99
    assert m["annualized_return"] == pytest.approx(1.2 ** (365 / 4) - 1)
    sd = statistics.stdev(rets)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(365))
    assert m["sharpe_ratio"] == pytest.approx(statistics.mean(rets) / sd * math.sqrt(365))
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in rets) / 4)
    assert m["sortino_ratio"] == pytest.approx(statistics.mean(rets) / downside * math.sqrt(365))
    assert m["calmar_ratio"] == pytest.approx(m["annualized_return"] / 0.1)


def test_drawdown_series_by_hand() -> None:
    dd = drawdown_series(daily([100, 110, 99, 120, 90]))
    assert dd.tolist() == pytest.approx([0.0, 0.0, 0.1, 0.0, 0.25])
    # the initial balance counts as the first peak when given
    assert drawdown_series(daily([95, 100]), initial_balance=100).tolist() == pytest.approx([0.05, 0.0])
    assert compute_metrics(daily([95, 100]), None, 100)["max_drawdown"] == pytest.approx(0.05)


def test_var_and_expected_shortfall_by_hand() -> None:
    # 21 returns: -0.05, -0.04, ..., 0.15; the 5 % quantile sits exactly on the 2nd smallest.
    rets = np.round(np.arange(-0.05, 0.1501, 0.01), 10)
    assert len(rets) == 21
    eq = pd.Series(100 * np.cumprod(1 + rng_shuffled(rets)),
                   index=pd.date_range("2024-01-01", periods=21, freq="h", tz="UTC"))
    m = compute_metrics(eq, None, 100.0)
    assert m["value_at_risk"] == pytest.approx(0.04)
    assert m["expected_shortfall"] == pytest.approx(0.045)  # mean of -0.05 and -0.04
    assert period_returns(eq, 100.0).sort_values().to_numpy() == pytest.approx(rets)


def rng_shuffled(values: np.ndarray) -> np.ndarray:
    return np.random.default_rng(3).permutation(values)


def test_trade_metrics_by_hand() -> None:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    trades = trade_log([
        {"pnl": 50.0, "return_pct": 0.05, "entry_time": t0, "exit_time": t0 + pd.Timedelta(hours=1)},
        {"pnl": -20.0, "return_pct": -0.02, "entry_time": t0, "exit_time": t0 + pd.Timedelta(hours=3)},
        {"pnl": 30.0, "return_pct": 0.03, "entry_time": t0, "exit_time": t0 + pd.Timedelta(hours=2)},
        {"pnl": -10.0, "return_pct": -0.01, "entry_time": t0, "exit_time": t0 + pd.Timedelta(hours=6)},
        {"pnl": 0.0, "return_pct": 0.0, "entry_time": t0, "exit_time": t0 + pd.Timedelta(hours=8)},
        {"pnl": 999.0, "return_pct": 0.5, "status": "open", "entry_time": t0, "exit_time": pd.NaT},
    ])
    eq = daily([1000, 1010, 1020, 1030, 1040, 1050, 1060, 1070, 1080, 1090])  # 10 days
    m = compute_metrics(eq, trades, 1000.0)
    assert m["trade_count"] == 5  # the open trade is not counted
    assert m["win_rate"] == pytest.approx(2 / 5)
    assert m["profit_factor"] == pytest.approx(80 / 30)
    assert m["avg_win"] == pytest.approx(40.0)
    assert m["avg_loss"] == pytest.approx(-15.0)
    assert m["risk_reward"] == pytest.approx(40 / 15)
    assert m["best_trade"] == pytest.approx(0.05)
    assert m["worst_trade"] == pytest.approx(-0.02)
    assert m["avg_trade_duration_hours"] == pytest.approx((1 + 3 + 2 + 6 + 8) / 5)
    assert m["trades_per_day"] == pytest.approx(5 / 10)


def test_exposure_by_hand() -> None:
    idx = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")
    eq = pd.Series(np.linspace(100, 110, 10), index=idx)
    trades = trade_log([
        {"entry_time": idx[2], "exit_time": idx[5]},  # bars 2, 3, 4
        {"entry_time": idx[4], "exit_time": idx[6]},  # bars 4, 5 (overlaps)
        {"entry_time": idx[8] - pd.Timedelta(minutes=30), "exit_time": pd.NaT, "status": "open"},  # 8, 9
    ])
    m = compute_metrics(eq, trades, 100.0)
    assert m["exposure"] == pytest.approx(6 / 10)
    assert m["trades_per_day"] == pytest.approx(2 / (10 / 24))
    # naive timestamps in the trade log are taken as the equity index's zone (UTC)
    naive = trades.assign(entry_time=trades["entry_time"].dt.tz_localize(None),
                          exit_time=trades["exit_time"].dt.tz_localize(None))
    assert compute_metrics(eq, naive, 100.0)["exposure"] == pytest.approx(0.6)


def test_monthly_returns_by_hand() -> None:
    idx = pd.DatetimeIndex(["2024-01-05", "2024-01-31", "2024-02-10", "2024-02-29", "2024-04-15"], tz="UTC")
    eq = pd.Series([100.0, 110.0, 90.0, 121.0, 133.1], index=idx)
    table = monthly_returns(eq, initial_balance=100.0)
    assert list(table.columns) == list(range(1, 13))
    assert table.loc[2024, 1] == pytest.approx(0.10)
    assert table.loc[2024, 2] == pytest.approx(0.10)  # 110 -> 121
    assert math.isnan(table.loc[2024, 3])  # no data in March
    assert table.loc[2024, 4] == pytest.approx(0.10)  # 121 -> 133.1
    assert monthly_returns(eq).loc[2024, 1] == pytest.approx(0.10)  # from the first point too
    two_years = monthly_returns(daily([100.0, 50.0], start="2023-12-31"))
    assert list(two_years.index) == [2023, 2024]
    assert two_years.loc[2024, 1] == pytest.approx(-0.5)


def test_periods_per_year_inference() -> None:
    minute = pd.date_range("2024-01-01", periods=100, freq="min", tz="UTC")
    assert infer_periods_per_year(minute) == pytest.approx(525_600)
    assert infer_periods_per_year(minute.delete([5, 6, 7])) == pytest.approx(525_600)  # gaps: median
    assert math.isnan(infer_periods_per_year(pd.RangeIndex(10)))
    eq = pd.Series(np.linspace(100, 120, 4), index=pd.RangeIndex(4))
    assert math.isnan(compute_metrics(eq, None, 100.0)["sharpe_ratio"])
    given = compute_metrics(eq, None, 100.0, periods_per_year=252)
    assert given["annualized_return"] == pytest.approx(1.2 ** (252 / 4) - 1)


# --- edge cases --------------------------------------------------------------------------

def test_no_trades_and_flat_equity() -> None:
    m = compute_metrics(daily([100.0] * 50), empty_trades(), 100.0)
    assert m["total_return"] == 0 and m["max_drawdown"] == 0 and m["volatility"] == 0
    assert m["trade_count"] == 0 and m["exposure"] == 0 and m["trades_per_day"] == 0
    for key in ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "win_rate", "profit_factor",
                "avg_win", "avg_loss", "risk_reward", "avg_trade_duration_hours", "best_trade"):
        assert math.isnan(m[key]), key
    assert m["value_at_risk"] == 0 and m["expected_shortfall"] == 0


def test_zero_losses_and_steady_gains_are_infinite() -> None:
    eq = daily([100, 101, 102, 103, 104])
    m = compute_metrics(eq, trade_log([{"pnl": 5.0}, {"pnl": 2.0}]), 100.0)
    assert m["profit_factor"] == float("inf")
    assert m["sortino_ratio"] == float("inf")  # no losing period
    assert m["calmar_ratio"] == float("inf")  # no drawdown
    assert math.isnan(m["risk_reward"]) and math.isnan(m["avg_loss"])
    assert m["win_rate"] == 1.0


def test_single_point_and_empty_equity() -> None:
    one = compute_metrics(daily([105.0]), None, 100.0)
    assert one["total_return"] == pytest.approx(0.05) and one["max_drawdown"] == 0
    assert math.isnan(one["volatility"]) and math.isnan(one["sharpe_ratio"])
    empty = compute_metrics(daily([]), None, 100.0)
    assert empty["final_equity"] == 100.0 and empty["pnl"] == 0
    assert math.isnan(empty["max_drawdown"]) and math.isnan(empty["exposure"])
    assert monthly_returns(daily([])).empty


@pytest.mark.parametrize("call, match", [
    (lambda: compute_metrics(daily([1, 2]), None, -5), "initial_balance"),
    (lambda: compute_metrics(daily([1, 2]), None, float("nan")), "initial_balance"),
    (lambda: compute_metrics(daily([1, float("nan")]), None, 1), "NaN"),
    (lambda: compute_metrics([1, 2], None, 1), "pandas Series"),
    (lambda: compute_metrics(daily([1, 2]), pd.DataFrame({"pnl": [1.0]}), 1), "entry_time"),
    (lambda: compute_metrics(daily([1, 2]), trade_log([{"status": "done"}]), 1), "status"),
    (lambda: compute_metrics(daily([1, 2]), None, 1, periods_per_year=0), "periods_per_year"),
    (lambda: compute_metrics(pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2024-01-02", "2024-01-01"])),
                             None, 1), "increasing"),
    (lambda: monthly_returns(pd.Series([1.0, 2.0])), "DatetimeIndex"),
])
def test_bad_input_raises_clear_error(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# --- consistency -------------------------------------------------------------------------

def test_labels_cover_every_metric_and_format() -> None:
    m = compute_metrics(daily([100, 110, 99, 120]), trade_log([{"pnl": 5.0}, {"pnl": -2.0}]), 100.0)
    assert set(METRIC_LABELS) == set(m)
    assert format_metric("max_drawdown", m["max_drawdown"]) == "10.00%"
    assert format_metric("sharpe_ratio", 1.234) == "1.23"
    assert format_metric("profit_factor", float("inf")) == "∞"
    assert format_metric("win_rate", float("nan")) == "n/a"
    assert all(isinstance(format_metric(k, v), str) for k, v in m.items())
    assert list(empty_trades().columns) == list(TRADE_COLUMNS)


def test_agrees_with_vectorbt_returns_accessor() -> None:
    import vectorbt as vbt  # noqa: F401  (registers the .vbt accessor)

    rng = np.random.default_rng(11)
    n = 5_000
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    eq = pd.Series(10_000 * np.exp(np.cumsum(rng.normal(2e-5, 1e-3, n))), index=idx)
    initial = 9_950.0
    m = compute_metrics(eq, None, initial)
    acc = period_returns(eq, initial).vbt.returns(freq="1min", year_freq="365 days")
    assert m["sharpe_ratio"] == pytest.approx(acc.sharpe_ratio(), rel=1e-9, abs=1e-9)
    assert m["sortino_ratio"] == pytest.approx(acc.sortino_ratio(), rel=1e-9, abs=1e-9)
    assert m["volatility"] == pytest.approx(acc.annualized_volatility(), rel=1e-9, abs=1e-9)
    assert m["annualized_return"] == pytest.approx(acc.annualized(), rel=1e-9, abs=1e-9)
    assert m["max_drawdown"] == pytest.approx(-acc.max_drawdown(), rel=1e-9, abs=1e-9)
    assert m["value_at_risk"] == pytest.approx(-acc.value_at_risk(), rel=1e-9, abs=1e-9)
    assert m["calmar_ratio"] == pytest.approx(acc.calmar_ratio(), rel=1e-9, abs=1e-9)
    assert m["total_return"] == pytest.approx(acc.total(), rel=1e-9, abs=1e-9)


# --- backtest results: metrics from the booking's arrays, frames on first read ------------------

def test_backtest_metrics_equal_compute_metrics_on_its_own_frames() -> None:
    """run_backtest computes metrics from row numbers, not from the trade log's times: the same
    numbers, bit for bit (two symbols, one with gaps, stops, a trade still open at the end)."""
    from workbench import make_config
    from workbench.backtest import run_backtest
    from workbench.data import sample_bars

    bars = {s: sample_bars(s, timeframe="1m", days=3) for s in ("BTC/USDT", "ETH/USDT")}
    bars["ETH/USDT"] = bars["ETH/USDT"].iloc[::3]
    cfg = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["ETH/USDT", "BTC/USDT"],
                      sizing={"mode": "percent_equity", "value": 0.3}, risk={"stop_loss": 0.01, "take_profit": 0.02})
    r = run_backtest(cfg, bars)
    assert r.metrics["trade_count"] > 100 and (r.trades["status"] == "open").sum() == 2
    again = compute_metrics(r.equity, r.trades, cfg.initial_balance)
    assert list(again) == list(r.metrics)
    assert all(again[k] == r.metrics[k] or (np.isnan(again[k]) and np.isnan(r.metrics[k])) for k in again), \
        {k: (again[k], r.metrics[k]) for k in again if again[k] != r.metrics[k]}


def test_result_frames_are_made_once_on_first_read() -> None:
    from workbench.backtest.result import BacktestResult
    from workbench.config import make_config

    made: list[str] = []

    def frame(name: str) -> object:
        def make() -> pd.DataFrame:
            made.append(name)
            return empty_trades()
        return make

    eq = daily([100.0, 101.0])
    r = BacktestResult(config=make_config(), bars={}, equity=eq, cash=eq, exposure=eq * 0,
                       trades=frame("trades"), orders=frame("orders"))
    assert made == []
    assert r.trades is r.trades and made == ["trades"]
    assert list(r.orders.columns) == list(TRADE_COLUMNS) and made == ["trades", "orders"]
    assert r.cash is eq  # values given as values stay as they are
