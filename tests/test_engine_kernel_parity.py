"""The shipped bar-by-bar step (:class:`workbench.engine.trader.Trader` with the paper broker, no store)
makes the same fills as the backtest kernel (``fills_nb``) on random bars and signals: sizes, caps,
stops, time rules."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.kit import dense_walk as _simulate
from workbench.config import SessionConfig, make_config
from workbench.domain import Fill, Order, Side
from workbench.engine.brokers import PaperBroker
from workbench.engine.trader import Trader
from workbench.execution import Bar
from workbench.execution.codes import REASONS

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def random_market(seed: int, n: int = 800):
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-05 20:00", periods=n, freq="min", tz="UTC")
    m = len(SYMBOLS)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, (n, m)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.001, (n, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.003, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.003, (n, m))))
    volume = rng.uniform(5, 200, (n, m))
    arr = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    gaps = rng.random(n) < 0.05  # the second symbol misses some bars
    for a in arr.values():
        a[gaps, 1] = np.nan
    buy = rng.random((n, m)) < 0.06
    sell = (rng.random((n, m)) < 0.04) & ~buy
    return index, arr, buy, sell


def run_engine(config: SessionConfig, index: pd.DatetimeIndex, arr: dict, buy: np.ndarray, sell: np.ndarray):
    """The shipped :class:`Trader` step with the paper broker over the bars, its signals taken from ``buy``/
    ``sell`` (already shifted: row i acts at bar i); returns {(bar, column): (quantity or -inf, price, reason)}
    and the portfolio."""
    trader = Trader(config, PaperBroker(config))
    trader.signals = lambda bars, t_ns: None  # signals come from the arrays, set before each step
    out: dict[tuple[int, int], tuple[float, float, str]] = {}
    column = {s: c for c, s in enumerate(SYMBOLS)}
    i = 0

    def on_fill(fill: Fill, order: Order) -> None:
        out[i, column[fill.symbol]] = (-math.inf if fill.side is Side.SELL else fill.quantity, fill.price, fill.reason)

    trader.on_fill = on_fill
    values = np.stack([arr[k] for k in ("open", "high", "low", "close", "volume")], axis=-1)
    for i, t in enumerate(index.to_pydatetime()):
        bars = {s: Bar(t, *map(float, values[i, c])) for c, s in enumerate(SYMBOLS)
                if not math.isnan(values[i, c, 0])}
        trader.pending.update({s: (bool(buy[i, c]), bool(sell[i, c])) for c, s in enumerate(SYMBOLS)})
        trader.step(bars)
    return out, trader.portfolio


CONFIGS = {
    "percent_equity_all_stops": dict(
        sizing={"mode": "percent_equity", "value": 0.6}, commission={"taker": 0.001, "fixed": 0.5},
        slippage={"model": "fixed", "bps": 5},
        risk={"stop_loss": 0.01, "take_profit": 0.012, "trailing_stop": 0.006, "max_holding_minutes": 45},
    ),
    "volume_slippage_and_caps": dict(
        sizing={"mode": "fixed_amount", "value": 4000}, commission={"taker": 0.00075},
        slippage={"model": "volume", "bps": 2, "impact": 0.05},
        volume={"min_bar_volume": 20, "max_share": 0.5, "on_excess": "cap"},
        risk={"max_position": 2500, "portfolio_limit": 3500, "stop_loss": 0.008, "trailing_stop": 0.01},
    ),
    "skip_fixed_quantity_time_rules": dict(
        sizing={"mode": "fixed_quantity", "value": 30}, commission={"taker": 0.002},
        volume={"max_share": 0.25, "on_excess": "skip"},
        time={"timezone": "Europe/Berlin", "trading_hours": {"start": "22:00", "end": "06:00"},
              "blackouts": [{"start": "23:30", "end": "00:15"}], "weekdays": [4, 5]},
        risk={"take_profit": 0.02, "max_holding_minutes": 20},
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_engine_components_reproduce_the_kernel(name, seed):
    config = make_config(kind="paper", symbols=SYMBOLS, initial_balance=10_000, **CONFIGS[name])
    index, arr, buy, sell = random_market(seed)
    qty, price, _, reason, _, _ = _simulate(config, index, arr, buy, sell)
    expected = {
        (i, c): (qty[i, c], price[i, c], REASONS[reason[i, c]])
        for i, c in zip(*np.nonzero(~np.isnan(qty)))
    }
    got, pf = run_engine(config, index, arr, buy, sell)
    assert len(expected) > 20 and got.keys() == expected.keys()
    reasons = set()
    for key, (q, p, r) in expected.items():
        gq, gp, gr = got[key]
        assert gr == r, key
        assert gq == q if math.isinf(q) else gq == pytest.approx(q, rel=1e-9), key
        assert gp == pytest.approx(p, rel=1e-9), key
        reasons.add(r)
    assert len(reasons) >= 3  # entries, signals and at least one kind of automatic exit


@pytest.mark.parametrize("seed", [4, 9, 13])  # 9 and 13: a stop on a bar with a held signal (the old bug)
def test_a_halted_breaker_holds_exit_signals_while_stops_and_holding_time_still_run(seed):
    """Rule 10: after the breaker trips to HALTED, a pending exit signal is held (not sent, not rejected)
    and the position still leaves by its stop or holding time, in the step as in the kernel."""
    config = make_config(kind="paper", symbols=SYMBOLS, initial_balance=10_000, sizing={"mode": "percent_equity",
                         "value": 0.9}, commission={"taker": 0.001}, risk={"stop_loss": 0.02, "max_holding_minutes": 30,
                         "circuit_breaker": {"max_drawdown": 0.01, "action": "halted"}})
    index, arr, buy, sell = random_market(seed)
    qty, price, _, reason, _, trip = _simulate(config, index, arr, buy, sell)
    expected = {(i, c): (qty[i, c], price[i, c], REASONS[reason[i, c]]) for i, c in zip(*np.nonzero(~np.isnan(qty)))}
    got, pf = run_engine(config, index, arr, buy, sell)
    assert trip[0] >= 0 and got.keys() == expected.keys()
    for key, (_, p, r) in expected.items():
        assert got[key][2] == r and got[key][1] == pytest.approx(p, rel=1e-9), key
    held = 0  # exit signals of a held position after the trip, up to the bar it left by a stop or holding time
    for (i, c), (_, _, r) in got.items():
        if r in ("stop_loss", "time_limit") and i > trip[0]:
            entry = max(j for (j, cc), v in got.items() if cc == c and v[2] == "entry" and j < i)
            held += int(sell[max(entry, trip[0]) + 1:i + 1, c].sum())
    assert held >= 1
    assert not [t for t in pf.trades if t["exit_reason"] == "signal" and t["exit_time"] > index[trip[0]]]
