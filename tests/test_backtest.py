"""Backtest runner: fills, sizing caps, stops, time rules and shared cash against hand computation,
and a cross-check of the whole run against a plain Python loop of docs/execution-semantics.md."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import workbench
from workbench import make_config
from workbench.backtest import BacktestResult, run_backtest
from workbench.backtest.figures import MAX_POINTS, downsample
from workbench.data import sample_bars
from workbench.strategies.base import Param, Strategy
from workbench.strategies.registry import register

SCRIPTS: dict[str, tuple | dict] = {}


@register
class Scripted(Strategy):
    """Signals at fixed bar positions, from SCRIPTS[script]."""

    name = "test_scripted"
    params = (Param("script", str, "none"),)

    def lookback(self) -> int:
        return 1

    def signals(self, bars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        script = SCRIPTS.get(self.p["script"], ([], []))
        if isinstance(script, dict):  # per symbol, keyed by the first open
            script = script[float(bars["open"].iloc[0])]
        ent, ex = script
        e = pd.Series(False, index=bars.index)
        x = pd.Series(False, index=bars.index)
        e.iloc[ent], x.iloc[ex] = True, True
        return e, x


def frame(open_, high=None, low=None, close=None, volume=1e9, start="2024-01-01", freq="1min") -> pd.DataFrame:
    o = np.asarray(open_, dtype=float)
    c = np.asarray(close if close is not None else o, dtype=float)
    h = np.asarray(high if high is not None else np.maximum(o, c), dtype=float)
    lo = np.asarray(low if low is not None else np.minimum(o, c), dtype=float)
    idx = pd.date_range(start, periods=len(o), freq=freq, tz="UTC", name="time")
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": np.broadcast_to(volume, len(o)) * 1.0},
                        index=idx)


def run(bars, entries, exits=(), symbols=("BTC/USDT",), **cfg) -> BacktestResult:
    key = f"s{len(SCRIPTS)}"
    SCRIPTS[key] = entries if isinstance(entries, dict) else (list(entries), list(exits))
    cfg.setdefault("commission", {"taker": 0.001, "fixed": 0.0})
    cfg.setdefault("slippage", {"bps": 0.0})
    cfg.setdefault("sizing", {"mode": "fixed_amount", "value": 1000.0})
    config = make_config(strategy="test_scripted", params={"script": key}, symbols=list(symbols), **cfg)
    data = bars if isinstance(bars, dict) else {symbols[0]: bars}
    return run_backtest(config, data)


FLAT = [100.0] * 8


# ---- fills, fees, sizing -------------------------------------------------------------------
def test_entry_fills_next_open_with_slippage_and_fees():
    bars = frame([100, 101, 102, 103, 104, 105], close=[100.5, 101.5, 102.5, 103.5, 104.5, 105.5])
    r = run(bars, [1], [3], slippage={"bps": 20}, commission={"taker": 0.002, "fixed": 1.5})
    buy, sell = r.orders.iloc[0], r.orders.iloc[1]
    assert buy.time == bars.index[2] and buy.side == "buy"
    fill = 102 * (1 + 0.002)
    q = 1000 / 102
    assert buy.price == pytest.approx(fill, rel=1e-12)
    assert buy.quantity == pytest.approx(q, rel=1e-12)
    assert buy.fees == pytest.approx(q * fill * 0.002 + 1.5, rel=1e-12)
    assert buy.slippage == pytest.approx(q * 102 * 0.002, rel=1e-12)
    assert sell.time == bars.index[4] and sell.price == pytest.approx(104 * (1 - 0.002), rel=1e-12)
    t = r.trades.iloc[0]
    exit_fee = q * 104 * 0.998 * 0.002 + 1.5
    assert t.pnl == pytest.approx(q * (104 * 0.998 - fill) - buy.fees - exit_fee, rel=1e-9)
    assert t.commission == pytest.approx(buy.fees + exit_fee, rel=1e-9)
    assert t.slippage == pytest.approx(q * (102 * 0.002 + 104 * 0.002), rel=1e-9)
    assert t.exit_reason == "signal" and t.status == "closed"
    assert t.duration == pd.Timedelta(minutes=2)
    assert r.equity.iloc[-1] == pytest.approx(10_000 + t.pnl, rel=1e-12)
    assert r.cash.iloc[2] == pytest.approx(10_000 - q * fill - buy.fees, rel=1e-12)


def test_conflicting_and_repeated_signals_are_ignored():
    r = run(frame(FLAT), [1, 2, 3], [1, 5])  # bar 1 both -> nothing; 2 enters; 3 while long ignored
    assert list(r.orders.time) == [r.equity.index[3], r.equity.index[6]]


@pytest.mark.parametrize(
    "sizing, risk, expected_qty",
    [
        ({"mode": "fixed_quantity", "value": 3.0}, {}, 3.0),
        ({"mode": "fixed_amount", "value": 2500.0}, {}, 2500.0 / 80),
        ({"mode": "percent_equity", "value": 0.5}, {}, 0.5 * 10_000 / 80),
        ({"mode": "fixed_amount", "value": 5000.0}, {"max_position": 1200.0}, 1200.0 / 80),
        ({"mode": "fixed_quantity", "value": 100.0}, {"max_position": 800.0}, 10.0),
        ({"mode": "percent_equity", "value": 1.0}, {}, 10_000 / (80 * 1.001)),  # cash-capped, fees included
    ],
)
def test_sizing_modes_and_caps(sizing, risk, expected_qty):
    r = run(frame([90, 85, 80, 82, 84]), [1], [], sizing=sizing, risk=risk)
    assert r.orders.quantity.iloc[0] == pytest.approx(expected_qty, rel=1e-9)


def test_percent_equity_uses_equity_at_the_fill_open():
    bars = frame([100, 100, 100, 120, 120, 150, 150])
    r = run(bars, [1, 4], [2], sizing={"mode": "percent_equity", "value": 0.5}, commission={"taker": 0.0})
    q1 = 0.5 * 10_000 / 100
    cash = 10_000 + q1 * (120 - 100)
    assert r.orders.quantity.iloc[2] == pytest.approx(0.5 * cash / 150, rel=1e-12)


# ---- stops ---------------------------------------------------------------------------------
def stop_bars(bar3: tuple[float, float, float], entry_bar_high: float = 101.0) -> pd.DataFrame:
    o = [100, 100, 100, bar3[0], 100, 100]
    h = [100, 100, entry_bar_high, bar3[1], 100, 100]
    lo = [100, 100, 90, bar3[2], 100, 100]  # the entry bar's low is never a stop: checks start after it
    return frame(o, high=h, low=lo, close=o)


@pytest.mark.parametrize(
    "risk, bar3, reason, ref",
    [
        ({"stop_loss": 0.05}, (99, 99.5, 94), "stop_loss", 100 * 1.001 * 0.95),
        ({"stop_loss": 0.05}, (93, 93, 92), "stop_loss", 93),  # gap below: the open
        ({"take_profit": 0.05}, (101, 108, 100), "take_profit", 100 * 1.001 * 1.05),
        ({"take_profit": 0.05}, (109, 110, 108), "take_profit", 109),  # gap above: the open
        ({"stop_loss": 0.05, "take_profit": 0.05}, (100, 108, 94), "stop_loss", 100 * 1.001 * 0.95),
        ({"stop_loss": 0.05, "take_profit": 0.05}, (109, 109, 94), "take_profit", 109),  # open beyond TP first
        ({"trailing_stop": 0.05}, (107, 107.5, 104), "trailing_stop", 112 * 0.95),  # peak = entry bar high
        ({"trailing_stop": 0.05}, (105, 107.5, 104), "trailing_stop", 105),  # open below the trailing level
        ({"trailing_stop": 0.05, "stop_loss": 0.02}, (108, 108, 97), "trailing_stop", 112 * 0.95),  # higher level
        ({"trailing_stop": 0.2, "stop_loss": 0.02}, (99, 100, 97), "stop_loss", 100 * 1.001 * 0.98),
    ],
)
def test_stop_exits(risk, bar3, reason, ref):
    bars = stop_bars(bar3, entry_bar_high=112 if "trailing_stop" in risk else 101)  # trailing peak 112
    r = run(bars, [1], [], slippage={"bps": 10}, risk=risk)
    t = r.trades.iloc[0]
    assert t.entry_price == pytest.approx(100 * 1.001, rel=1e-12)
    assert t.exit_time == bars.index[3] and t.exit_reason == reason
    assert t.exit_price == pytest.approx(ref * (1 - 0.001), rel=1e-12)


def test_signal_exit_at_open_beats_a_stop_on_the_same_bar():
    bars = stop_bars((99, 99.5, 90))
    r = run(bars, [1], [2], risk={"stop_loss": 0.05})
    t = r.trades.iloc[0]
    assert t.exit_reason == "signal" and t.exit_price == pytest.approx(99, rel=1e-12)


def test_holding_time_limit_sells_at_the_open():
    r = run(frame([100, 100, 100, 101, 102, 103, 104]), [1], [], risk={"max_holding_minutes": 3})
    t = r.trades.iloc[0]
    assert t.exit_reason == "time_limit"
    assert t.exit_time - t.entry_time == pd.Timedelta(minutes=3) and t.exit_price == 103


# ---- volume and time rules -----------------------------------------------------------------
def test_min_volume_drops_the_signal_without_retry():
    bars = frame(FLAT, volume=[100, 100, 5, 100, 100, 100, 100, 100])
    r = run(bars, [1], [], volume={"min_bar_volume": 10})
    assert r.orders.empty and r.trades.empty
    assert len(run(bars, [1], [], volume={"min_bar_volume": 5}).orders) == 1


@pytest.mark.parametrize("on_excess, expected", [("cap", 0.25 * 30), ("skip", None)])
def test_max_share_of_bar_volume(on_excess, expected):
    r = run(frame(FLAT, volume=30.0), [1], [], volume={"max_share": 0.25, "on_excess": on_excess})
    if expected is None:
        assert r.orders.empty
    else:
        assert r.orders.quantity.iloc[0] == pytest.approx(expected, rel=1e-12)


def test_volume_impact_slippage():
    r = run(frame(FLAT, volume=100.0), [1], [3], sizing={"mode": "fixed_quantity", "value": 10.0},
            slippage={"model": "volume", "bps": 10, "impact": 0.1})
    s = 0.001 + 0.1 * 10 / 100
    assert list(r.orders.price) == pytest.approx([100 * (1 + s), 100 * (1 - s)], rel=1e-12)


def test_blackout_and_trading_hours_block_entries_not_exits():
    bars = frame([100.0] * 14, start="2024-01-01 09:55", freq="1min")
    blocked = run(bars, [1], [], time={"timezone": "Europe/Berlin", "blackouts": [{"start": "10:57", "end": "11:00"}]})
    assert blocked.orders.empty  # bar 2 opens 09:57 UTC = 10:57 Berlin
    ok = run(bars, [1], [6], time={"timezone": "Europe/Berlin", "blackouts": [{"start": "10:58", "end": "11:00"}]})
    assert len(ok.orders) == 2
    hours = run(bars, [1, 4], [2, 11], time={"trading_hours": {"start": "10:00", "end": "10:05"}})
    assert list(hours.orders.time) == [bars.index[5], bars.index[12]]  # entry at 09:57 blocked; exit at 10:07 ok


# ---- several symbols -------------------------------------------------------------------------
def test_two_symbols_share_cash_and_sell_before_buying():
    a, b = frame([100.0] * 6), frame([50.0] * 6)
    r = run({"BTC/USDT": a, "ETH/USDT": b}, [1], [], symbols=("BTC/USDT", "ETH/USDT"),
            sizing={"mode": "fixed_amount", "value": 7000.0})
    btc, eth = r.orders.iloc[0], r.orders.iloc[1]
    assert (btc.symbol, eth.symbol) == ("BTC/USDT", "ETH/USDT")  # config order
    assert btc.quantity == pytest.approx(70.0)
    left = 10_000 - 7000 * 1.001
    assert eth.quantity == pytest.approx(left / 1.001 / 50, rel=1e-9)
    assert r.cash.iloc[-1] == pytest.approx(0.0, abs=1e-6)


def test_sell_proceeds_fund_a_buy_on_the_same_bar():
    a, b = frame([100.0] * 6), frame([50.0] * 6)
    # BTC is all in from bar 1 and sells at bar 2's open; ETH (listed first) buys at the same open
    scripts = {100.0: ([0], [1]), 50.0: ([1], [])}
    r = run({"BTC/USDT": a, "ETH/USDT": b}, scripts, symbols=("ETH/USDT", "BTC/USDT"),
            commission={"taker": 0.0}, sizing={"mode": "percent_equity", "value": 1.0})
    eth = r.orders[r.orders.symbol == "ETH/USDT"].iloc[0]
    assert eth.time == a.index[2] and eth.quantity == pytest.approx(10_000 / 50, rel=1e-12)


# ---- result, metrics, figures, bad input -----------------------------------------------------
def test_metrics_stats_and_figures():
    r = run(frame(np.linspace(100, 120, 30)), [1, 10], [5, 20])
    for key in ("sharpe_ratio", "max_drawdown", "value_at_risk", "expected_shortfall", "calmar_ratio",
                "profit_factor", "win_rate", "total_return", "exposure"):
        assert key in r.metrics
    assert r.metrics["trade_count"] == 2
    assert r.stats()["Trades"] == 2
    eq = r.equity_figure()
    assert len(eq.data) == 2
    pf = r.price_figure("BTC/USDT")
    markers = {t.name: len(t.x) for t in pf.data if getattr(t, "mode", None) == "markers"}
    assert markers == {"entry": 2, "exit": 2}


def test_downsample_keeps_extremes():
    s = pd.Series(np.sin(np.arange(100_000) / 500.0), index=pd.RangeIndex(100_000))
    s.iloc[12_345] = 9.0
    d = downsample(s)
    assert len(d) <= MAX_POINTS and d.max() == 9.0 and d.index[0] == 0 and d.index[-1] == 99_999


def test_module_is_callable_and_rejects_bad_input():
    bars = frame(FLAT)
    SCRIPTS["m"] = ([1], [3])
    cfg = make_config(strategy="test_scripted", params={"script": "m"})
    assert isinstance(workbench.backtest(cfg, {"BTC/USDT": bars}), BacktestResult)
    with pytest.raises(ValueError, match="no bars for BTC/USDT"):
        run_backtest(cfg, {"ETH/USDT": bars})
    with pytest.raises(TypeError, match="SessionConfig"):
        run_backtest({"strategy": "sma_cross"}, {"BTC/USDT": bars})


# ---- cross-check against a plain loop ------------------------------------------------------
def random_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.002, n))  # gaps
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.003, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.003, n)))
    return frame(open_, high, low, close, volume=rng.uniform(5e3, 1e4, n))  # never caps a fill


def loop_backtest(bars, entries, exits, cash, sizing, value, taker, fixed, s, sl=None, tp=None, ts=None):
    """docs/execution-semantics.md for one symbol, written plainly. Returns (final equity, trades)."""
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    qty = entry = peak = 0.0
    trades = 0
    for i in range(1, len(o)):
        was_long = qty > 0
        if was_long:
            px = None
            if exits[i - 1] and not entries[i - 1]:
                px = o[i]
            else:
                lvl = max(entry * (1 - sl) if sl else -math.inf, peak * (1 - ts) if ts else -math.inf)
                tpl = entry * (1 + tp) if tp else math.inf
                if o[i] <= lvl or o[i] >= tpl:
                    px = o[i]
                elif lo[i] <= lvl:
                    px = lvl
                elif h[i] >= tpl:
                    px = tpl
            if px is not None:
                fill = px * (1 - s)
                cash += qty * fill - (qty * fill * taker + fixed)
                qty, trades = 0.0, trades + 1
        if not was_long and entries[i - 1] and not exits[i - 1]:
            q = {"fixed_amount": value / o[i], "percent_equity": value * cash / o[i], "fixed_quantity": value}[sizing]
            fill = o[i] * (1 + s)
            if q * fill * (1 + taker) + fixed > cash:
                q = (cash - fixed) / (1 + taker) / fill
            if q > 1e-12:
                cash -= q * fill * (1 + taker) + fixed
                qty, entry, peak = q, fill, h[i]
        if qty > 0:
            peak = max(peak, h[i])
    return cash + qty * c[-1], trades + (qty > 0)


@pytest.mark.parametrize(
    "sizing, value, risk",
    [
        ("fixed_amount", 3000.0, {}),
        ("percent_equity", 0.9, {}),
        ("fixed_quantity", 40.0, {"stop_loss": 0.006, "take_profit": 0.01}),
        ("percent_equity", 0.7, {"stop_loss": 0.008, "take_profit": 0.012, "trailing_stop": 0.005}),
    ],
)
def test_matches_a_plain_python_loop(sizing, value, risk):
    bars = random_bars(3000, seed=len(risk) + int(value))
    rng = np.random.default_rng(7)
    e, x = rng.random(len(bars)) < 0.05, rng.random(len(bars)) < 0.05
    r = run(bars, np.flatnonzero(e), np.flatnonzero(x), sizing={"mode": sizing, "value": value},
            commission={"taker": 0.001, "fixed": 0.5}, slippage={"bps": 3}, risk=risk)
    final, n_trades = loop_backtest(bars, e, x, 10_000.0, sizing, value, 0.001, 0.5, 3e-4,
                                    risk.get("stop_loss"), risk.get("take_profit"), risk.get("trailing_stop"))
    assert len(r.trades) == n_trades > 20
    assert r.equity.iloc[-1] == pytest.approx(final, rel=1e-9)


@pytest.mark.slow
def test_agrees_with_vectorbt_from_signals_on_plain_configs():
    import vectorbt as vbt

    bars = random_bars(3000, seed=3)
    rng = np.random.default_rng(11)
    e, x = rng.random(len(bars)) < 0.05, rng.random(len(bars)) < 0.05
    r = run(bars, np.flatnonzero(e), np.flatnonzero(x), commission={"taker": 0.001, "fixed": 0.5},
            slippage={"bps": 3}, sizing={"mode": "fixed_amount", "value": 4000.0})
    shift = lambda a: np.r_[False, a[:-1]]  # noqa: E731
    pf = vbt.Portfolio.from_signals(
        bars["close"], shift(e), shift(x), price=bars["open"], size=4000.0, size_type="value", fees=0.001,
        fixed_fees=0.5, slippage=3e-4, init_cash=10_000.0, direction="longonly",
    )
    assert len(pf.orders.records) == len(r.orders)
    assert r.equity.iloc[-1] == pytest.approx(pf.final_value(), rel=1e-12)


# ---- the vectorbt portfolio, built lazily, agrees with the result ---------------------------
def assert_close(a, b, tol=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b))), np.max(np.abs(a - b))


@pytest.mark.parametrize(
    "sizing", [{"mode": "fixed_amount", "value": 3000.0}, {"mode": "percent_equity", "value": 0.6}]
)
def test_lazy_vectorbt_portfolio_agrees_with_the_result(sizing):
    from workbench.backtest.result import FillLookup, orders_frame, trades_frame
    from workbench.execution.simulate import Fills

    a = random_bars(1500, seed=21)
    b = random_bars(1400, seed=22).iloc[60:]  # starts later: back-filled close, then missing bars
    b = b.drop(b.index[300:340])
    b[["open", "high", "low", "close"]] *= 0.37
    rng = np.random.default_rng(5)
    scripts = {}
    for df in (a, b):
        e, x = rng.random(len(df)) < 0.06, rng.random(len(df)) < 0.04
        scripts[float(df["open"].iloc[0])] = (np.flatnonzero(e), np.flatnonzero(x))
    r = run({"BTC/USDT": a, "ETH/USDT": b}, scripts, symbols=("ETH/USDT", "BTC/USDT"), sizing=sizing,
            commission={"taker": 0.0015, "fixed": 0.4}, slippage={"bps": 4},
            risk={"stop_loss": 0.006, "take_profit": 0.009, "trailing_stop": 0.008})
    assert "portfolio" not in r.__dict__  # not built by run_backtest
    pf = r.portfolio
    assert r.portfolio is pf  # built once
    assert len(r.trades) > 40
    assert set(r.trades.exit_reason.dropna()) >= {"signal", "stop_loss", "take_profit", "trailing_stop"}
    assert_close(r.equity, pf.value())
    assert_close(r.cash, pf.cash())
    assert_close(r.exposure, pf.asset_value())
    index, symbols = r.equity.index, ["ETH/USDT", "BTC/USDT"]
    codes = {"entry": 1, "signal": 2, "stop_loss": 3, "take_profit": 4, "trailing_stop": 5, "time_limit": 6}
    rows, cols = index.get_indexer(r.orders.time), np.array([symbols.index(s) for s in r.orders.symbol])
    reasons = np.array([codes[x] for x in r.orders.reason], dtype=np.int8)
    ref = r.orders.reference_price.to_numpy()
    lookup = FillLookup(Fills(rows, cols, r.orders.quantity.to_numpy(), r.orders.price.to_numpy(), ref, reasons), 2)
    vbt_orders = orders_frame(pf.orders.records, index, symbols, lookup)
    vbt_trades = trades_frame(pf.exit_trades.records, index, symbols, lookup)
    assert len(vbt_orders) == len(r.orders) and len(vbt_trades) == len(r.trades)
    for got, want in ((r.orders, vbt_orders), (r.trades, vbt_trades)):
        for col in got.columns:
            if got[col].dtype.kind == "f":
                assert_close(got[col], want[col])
            else:
                pd.testing.assert_series_equal(got[col], want[col])
    assert r.metrics["trade_count"] == int((pf.exit_trades.records["status"] == 1).sum())


def test_bars_in_canonical_form_are_used_as_given():
    from workbench.data import validate_bars

    bars = validate_bars(frame(FLAT))  # nanosecond UTC index named time, float64 OHLCV
    r = run(bars, [1], [3])
    assert r.bars["BTC/USDT"] is bars
    messy = bars.rename(columns=str.upper).iloc[::-1]
    r2 = run(messy, [1], [3])
    assert r2.bars["BTC/USDT"] is not messy and r2.bars["BTC/USDT"].index.is_monotonic_increasing
    pd.testing.assert_series_equal(r2.equity, r.equity)


def test_close_for_valuation_is_forward_then_back_filled_like_pandas():
    from workbench.backtest.runner import _fill_close

    rng = np.random.default_rng(3)
    close = rng.uniform(1, 2, (50, 3))
    close[rng.random(close.shape) < 0.3] = np.nan
    close[:7, 1] = np.nan  # a symbol starting late
    want = pd.DataFrame(close).ffill().bfill().to_numpy()
    np.testing.assert_array_equal(_fill_close(close), want)


def test_kernel_inputs_place_each_symbols_bars_on_the_union_index():
    from workbench.backtest.runner import _fill_close, kernel_inputs
    from workbench.strategies import create

    a = frame([100.0, 101, 102, 103, 104, 105])
    b = frame([10.0, 11, 12, 13], start="2024-01-01 00:02").drop(pd.Timestamp("2024-01-01 00:03", tz="UTC"))
    config = make_config(strategy="test_scripted", symbols=["BTC/USDT", "ETH/USDT"])
    inputs = kernel_inputs(config, {"ETH/USDT": b, "BTC/USDT": a})
    assert inputs.symbols == ["BTC/USDT", "ETH/USDT"] and inputs.index.equals(a.index)
    assert list(inputs.rows[0]) == list(range(6)) and list(inputs.rows[1]) == [2, 4, 5]
    np.testing.assert_array_equal(inputs.arr["open"][:, 1], [np.nan, np.nan, 10, np.nan, 12, 13])
    np.testing.assert_array_equal(inputs.arr["close"][:, 0], a["close"].to_numpy())
    np.testing.assert_array_equal(inputs.close_filled(), _fill_close(inputs.arr["close"]))
    np.testing.assert_array_equal(inputs.times, a.index.as_unit("ns").asi8)
    SCRIPTS["kernel_inputs"] = ([0], [2])  # shifted one bar within each symbol's own bars
    buy, sell = inputs.signals(create("test_scripted", {"script": "kernel_inputs"}))
    np.testing.assert_array_equal(buy, [[0, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(sell, [[0, 0], [0, 0], [0, 0], [1, 0], [0, 0], [0, 0]])
    same = kernel_inputs(config, {"BTC/USDT": a, "ETH/USDT": a})  # no gaps: every symbol on every row
    assert same.index is a.index and all(r == slice(None) for r in same.rows)


def test_kernel_params_follow_the_config():
    from workbench.execution.codes import HALTED, REDUCING, SIZING_MODES
    from workbench.execution.simulate import kernel_params

    risk = {"stop_loss": 0.02, "max_holding_minutes": 90, "concentration_limit": 0.3, "max_orders_per_minute": 4,
            "circuit_breaker": {"max_drawdown": 0.1, "action": "reducing"}}
    config = make_config(strategy="test_scripted", risk=risk,
                         volume={"on_excess": "skip"}, sizing={"mode": "fixed_quantity", "value": 2.0},
                         initial_balance=5000)
    p = kernel_params(config)
    assert (p.init_cash, p.sizing_mode, p.sizing_value) == (5000.0, SIZING_MODES.index("fixed_quantity"), 2.0)
    assert p.skip_excess is True and p.sl == 0.02 and math.isnan(p.tp) and math.isnan(p.trail)
    assert p.max_hold_ns == 90 * 60 * 10**9 and p.concentration == 0.3 and p.max_orders_per_minute == 4
    assert p.max_drawdown == 0.1 and math.isnan(p.max_daily_loss) and p.breaker_action == REDUCING
    plain = kernel_params(make_config(strategy="test_scripted"))
    assert plain.max_hold_ns == -1 and plain.concentration == math.inf and plain.max_orders_per_minute == 0
    assert plain.max_rejections == 0 and plain.breaker_action == HALTED


def test_backtests_apply_the_session_risk_rules():
    """Concentration caps entries, the order rate rejects them, and a breach trips the breaker, which
    stops new entries for the rest of the run (semantics rule 10), as in sessions."""
    bars = sample_bars("BTC/USDT", days=3)
    plain = make_config(strategy="sma_cross", symbols=["BTC/USDT"], params={"fast": 3, "slow": 8})
    base = run_backtest(plain, bars={"BTC/USDT": bars})
    assert base.breaker is None and len(base.trades) > 20
    capped = run_backtest(plain.replace(risk={"concentration_limit": 0.25}), bars={"BTC/USDT": bars})
    first = capped.trades.iloc[0]
    assert first["entry_price"] * first["quantity"] <= 0.25 * plain.initial_balance * (1 + 1e-9)
    halted = run_backtest(plain.replace(risk={"circuit_breaker": {"max_drawdown": 0.002}}), bars={"BTC/USDT": bars})
    trip = halted.breaker
    assert trip is not None and trip["reason"] == "drawdown" and trip["state"] == "halted"
    assert (halted.trades["entry_time"] <= trip["time"]).all()  # no entry after the trip
    assert len(halted.trades) < len(base.trades)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_backtest(plain.replace(risk={"max_orders_per_minute": 1}), bars={"BTC/USDT": bars})  # no warning
