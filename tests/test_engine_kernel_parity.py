"""Risk engine + paper broker + portfolio, driven bar by bar as the semantics say, make the same fills
as the backtest kernel (``simulate_nb``) on random bars and signals: sizes, caps, stops, time rules."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.execution.codes import REASONS
from workbench.backtest.runner import _simulate
from workbench.config import SessionConfig, make_config
from workbench.domain import Order, Side
from workbench.execution import Bar
from workbench.engine.brokers import PaperBroker
from workbench.engine.portfolio import Portfolio
from workbench.engine.risk import RiskContext, RiskEngine

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
    """The paper loop of the semantics; returns {(bar, column): (quantity or -inf, price, reason)}."""
    risk, broker, pf = RiskEngine(config), PaperBroker(config), Portfolio(config.initial_balance)
    out: dict[tuple[int, int], tuple[float, float, str]] = {}
    times = list(index)
    for i, t in enumerate(times):
        bars = {
            c: Bar(t, *(float(arr[k][i, c]) for k in ("open", "high", "low", "close", "volume")))
            for c in range(len(SYMBOLS)) if not math.isnan(arr["open"][i, c])
        }
        pf.mark({SYMBOLS[c]: b.open for c, b in bars.items()})
        was_long = {c: pf.position(SYMBOLS[c]) is not None for c in range(len(SYMBOLS))}
        for c, b in bars.items():  # exits first
            pos = pf.position(SYMBOLS[c])
            if pos is None:
                continue
            if sell[i, c]:
                orders = [Order(f"x{i}-{c}", pos.symbol, Side.SELL, pos.quantity, created_at=t, reason="signal")]
            else:
                orders = risk.exits_due(pos, b)
            for o in orders:
                ref = o.stop_price if o.stop_price is not None else b.open
                assert risk.check(o, RiskContext(t, ref, pf, b.volume)).accepted
                f = broker.execute(o, b)
                if f is not None:
                    pf.apply_fill(f)
                    out[i, c] = (-math.inf, f.price, f.reason)
        for c, b in bars.items():  # then entries, in symbol order
            if was_long[c] or not buy[i, c]:
                continue
            q = risk.target_quantity(b.open, pf.equity)
            o = Order(f"e{i}-{c}", SYMBOLS[c], Side.BUY, q, created_at=t, reason="entry")
            d = risk.check(o, RiskContext(t, b.open, pf, b.volume))
            if not d.accepted:
                continue
            o.quantity = d.quantity
            f = broker.execute(o, b, cash=pf.cash)
            if f is not None:
                pf.apply_fill(f)
                out[i, c] = (f.quantity, f.price, f.reason)
        for c, b in bars.items():
            pf.track_high(SYMBOLS[c], b.high)
        pf.mark({SYMBOLS[c]: b.close for c, b in bars.items()})
    return out, pf


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
