"""The kernel's and the sweep's fast paths give what a walk over every bar gives.

``kernel.fills_nb`` jumps over runs of bars where no signal can act, ``booking.book_nb`` values
bars without orders in bulk (equity only, for the sweep), ``sweep_kernel.metrics_nb`` sums and
selects in fused passes, and the sweep reuses its signal buffers across chunks. Each is checked
against an independent path: the paper engine driven bar by bar (its own implementation of
docs/execution-semantics.md), ``booking.book_nb``'s full per-bar booking, NumPy, and
``run_backtest``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine_kernel_parity import SYMBOLS, random_market, run_engine

from tests.kit import dense_walk as _simulate
from workbench.backtest.booking import book_nb
from workbench.backtest.runner import run_backtest, walk
from workbench.backtest.sweep import sweep
from workbench.backtest.sweep_kernel import METRIC_KEYS, _kth, np_sum
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.execution import simulate as kernel
from workbench.execution.codes import REASONS

# No stops and no holding limit: held positions are jumped over too, not only flat stretches.
SPARSE_CONFIGS = {
    "percent_equity_no_stops": dict(
        sizing={"mode": "percent_equity", "value": 0.45}, commission={"taker": 0.001, "fixed": 0.25},
        slippage={"model": "fixed", "bps": 3}, risk={"portfolio_limit": 9000},
    ),
    "fixed_amount_stops": dict(
        sizing={"mode": "fixed_amount", "value": 3000}, commission={"taker": 0.001},
        risk={"stop_loss": 0.01, "trailing_stop": 0.008, "max_holding_minutes": 90},
    ),
}


def sparse_market(seed: int, n: int = 2500):
    """random_market's bars (the second symbol has gaps) with rare signals: long quiet runs."""
    index, arr, _, _ = random_market(seed, n)
    rng = np.random.default_rng(seed + 100)
    m = len(SYMBOLS)
    buy = rng.random((n, m)) < 0.01
    sell = (rng.random((n, m)) < 0.006) & ~buy
    return index, arr, buy, sell


@pytest.mark.parametrize("name", list(SPARSE_CONFIGS))
@pytest.mark.parametrize("seed", [3, 4])
def test_jumping_over_quiet_bars_matches_the_bar_by_bar_engine(name, seed):
    config = make_config(kind="paper", symbols=SYMBOLS, initial_balance=10_000, **SPARSE_CONFIGS[name])
    index, arr, buy, sell = sparse_market(seed)
    qty, price, _, reason, call_seq, _ = _simulate(config, index, arr, buy, sell)
    expected = {
        (i, c): (qty[i, c], price[i, c], REASONS[reason[i, c]]) for i, c in zip(*np.nonzero(~np.isnan(qty)))
    }
    got, _ = run_engine(config, index, arr, buy, sell)
    assert len(expected) > 20 and got.keys() == expected.keys()
    for key, (q, p, r) in expected.items():
        gq, gp, gr = got[key]
        assert gr == r, key
        assert gq == q if math.isinf(q) else gq == pytest.approx(q, rel=1e-9), key
        assert gp == pytest.approx(p, rel=1e-9), key
    # layout_nb's layout of fills_nb: each bar's orders first in call_seq, then the rest in order
    o_idx, o_col = kernel.fills_nb(
        index.as_unit("ns").asi8, arr["open"], arr["high"], arr["low"], arr["close"], arr["volume"], buy, sell,
        np.ones(len(index), dtype=bool), np.zeros(len(index), dtype=bool), kernel.kernel_params(config),
    )[:2]
    sells_first = sorted(expected, key=lambda key: (key[0], 0 if math.isinf(qty[key]) else 1, key[1]))
    assert list(zip(o_idx.tolist(), o_col.tolist())) == [(int(i), int(c)) for i, c in sells_first]
    assert (np.sort(call_seq, axis=1) == np.arange(len(SYMBOLS))).all()


def test_marks_carried_over_a_jump_value_the_held_symbol_at_its_last_close():
    """Symbol 0 is held and has no bar when symbol 1 enters (percent of equity): the equity used
    for sizing values symbol 0 at its last close, which lies inside the jumped-over run."""
    n = 12
    times = np.arange(n, dtype=np.int64) * 60_000_000_000
    open_ = np.column_stack([np.linspace(100, 111, n), np.full(n, 50.0)])
    close = open_ + 0.5
    open_[8, 0] = close[8, 0] = np.nan  # symbol 0 misses bar 8, where symbol 1 enters
    high, low, volume = np.fmax(open_, close) + 1, np.fmin(open_, close) - 1, np.full((n, 2), 1e6)
    buy = np.zeros((n, 2), dtype=bool)
    sell = np.zeros((n, 2), dtype=bool)
    buy[1, 0] = buy[8, 1] = True
    params = kernel.kernel_params(make_config(strategy="sma_cross", symbols=["BTC/USDT", "ETH/USDT"],
                                              sizing={"mode": "percent_equity", "value": 0.2}, initial_balance=10_000,
                                              commission={"taker": 0.0, "fixed": 0.0}, slippage={"bps": 0}))
    o_idx, o_col, o_qty, _, _, _, _, _ = kernel.fills_nb(
        times, open_, high, low, close, volume, buy, sell, np.ones(n, dtype=bool), np.zeros(n, dtype=bool), params
    )
    assert list(o_idx) == [1, 8] and list(o_col) == [0, 1]
    q0 = 0.2 * 10_000.0 / open_[1, 0]
    cash = 10_000.0 - q0 * open_[1, 0]
    assert o_qty[1] == pytest.approx(0.2 * (cash + q0 * close[7, 0]) / 50.0, rel=1e-12)  # not at bar 1's open


@pytest.mark.parametrize("m", [1, 2])
def test_equity_only_booking_equals_the_full_replay(m):
    index, arr, buy, sell = sparse_market(5, 3000)
    arr = {k: v[:, :m].copy() for k, v in arr.items()}
    config = make_config(symbols=SYMBOLS[:m], initial_balance=10_000, sizing={"mode": "fixed_amount", "value": 2000},
                         commission={"taker": 0.001, "fixed": 0.1})
    fills, _ = walk(config, index, arr, buy[:, :m].copy(), sell[:, :m].copy())
    close = np.where(np.isnan(arr["close"]), 100.0, arr["close"])
    n = len(index)
    cash, asset, full_value = np.empty(n), np.empty(n), np.empty(n)
    full = book_nb(fills.idx, fills.col, fills.qty, fills.price, close, 10_000.0, 0.001, 0.1, cash, asset, full_value)
    assert len(full[0]) > 10  # orders
    value, none = np.full(n, np.nan), np.empty(0)
    records = book_nb(fills.idx, fills.col, fills.qty, fills.price, close, 10_000.0, 0.001, 0.1, none, none, value)
    assert np.array_equal(value, full_value)  # bit for bit
    assert np.array_equal(full_value, cash + asset)
    assert all(np.array_equal(a, b) for a, b in zip(records, full, strict=True))


def test_fused_sums_and_tied_quantiles_match_numpy():
    rng = np.random.default_rng(11)
    x = np.where(rng.random(200_001) < 0.95, 0.0, rng.normal(0, 1e-3, 200_001))  # mostly flat bars
    mean = np.sum(x) / len(x)
    assert np_sum(x) == pytest.approx(np.sum(x), rel=1e-12, abs=1e-18)
    assert np_sum(x, 1, mean) == pytest.approx(np.sum((x - mean) ** 2), rel=1e-12)
    assert np_sum(x, 2, 0.0) == pytest.approx(np.sum(np.minimum(x, 0.0) ** 2), rel=1e-12)
    want = np.sort(x)
    for k in (0, int(len(x) * 0.01), int(len(x) * 0.05), len(x) // 2, int(len(x) * 0.99), len(x) - 1):
        assert _kth(x, k, np.empty(len(x))) == (want[k], want[min(k + 1, len(x) - 1)]), k


def test_sweep_without_stops_equals_run_backtest():
    """The benchmark's shape: fixed quantity, no stops, so held positions are jumped over too."""
    bars = sample_bars("BTC/USDT", days=6)
    config = make_config(strategy="momentum", symbols=["BTC/USDT"], initial_balance=100_000,
                         sizing={"mode": "fixed_quantity", "value": 0.1}, commission={"taker": 0.001})
    grid = {"window": [10, 120], "entry_threshold": [0.001, 0.004], "exit_threshold": [-0.002, 0.0]}
    res = sweep(config, grid, bars=bars, progress=False, metrics=METRIC_KEYS, chunk_size=3)
    assert len(res.frame) == 8
    for _, row in res.frame.iterrows():
        params = {k: row[k].item() for k in ("window", "entry_threshold", "exit_threshold", "trend_window")}
        want = run_backtest(config.replace(params=params), bars).metrics
        assert want["trade_count"] > 0
        for k in ("final_equity", "trade_count", "exposure", "max_drawdown"):
            assert float(row[k]) == want[k], k
        for k in METRIC_KEYS:  # the sweep's metrics: the kernel's (not the tail ones over a day)
            v = want[k]
            if math.isnan(v):
                assert math.isnan(float(row[k])), k
            else:
                assert float(row[k]) == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_reused_signal_buffers_are_cleared_for_gapped_symbols():
    """A symbol with gaps leaves rows of the signal arrays unwritten: chunks that reuse the
    buffers must not see the previous chunk's signals there."""
    eth = sample_bars("ETH/USDT", days=3)
    frames = {"BTC/USDT": sample_bars("BTC/USDT", days=3), "ETH/USDT": eth.drop(eth.index[500:1500])}
    config = make_config(strategy="momentum", symbols=["BTC/USDT", "ETH/USDT"],
                         sizing={"mode": "percent_equity", "value": 0.4})
    grid = {"window": [5, 15, 30, 60], "entry_threshold": [0.0005, 0.002]}
    one = sweep(config, grid, bars=frames, progress=False, metrics=METRIC_KEYS, chunk_size=1)
    whole = sweep(config, grid, bars=frames, progress=False, metrics=METRIC_KEYS, chunk_size=100)
    assert len(one.frame) == 8 and (one.frame["trade_count"] > 0).all()
    assert one.frame.equals(whole.frame)
