"""Parameter sweeps: grids, invalid combinations, parity with run_backtest, chunking, random search,
walk-forward, sensitivity and figures."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.backtest.runner import run_backtest
from workbench.backtest.sweep import sensitivity, sweep, walk_forward
from workbench.config import make_config
from workbench.data import sample_bars
from workbench.metrics.kernel import METRIC_KEYS, np_sum

GRID = {"window": [10, 30, 60], "entry_threshold": [0.001, 0.003], "exit_threshold": [0.0, 0.002]}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return sample_bars("BTC/USDT", days=10)


@pytest.fixture(scope="module")
def config():
    return make_config(strategy="momentum", symbols=["BTC/USDT"], risk={"stop_loss": 0.02})


def _params(row: pd.Series) -> dict:
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in
            ("window", "entry_threshold", "exit_threshold", "trend_window")}


def _assert_same(got: pd.Series, want: dict) -> None:
    """Every kernel metric of a sweep row equals the backtest's (the sweep ranks by those only)."""
    for k in METRIC_KEYS:
        v = want[k]
        a = float(got[k])
        if math.isnan(v):
            assert math.isnan(a), k
        else:
            assert a == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_grid_shape_and_invalid_combinations_are_skipped(bars, config):
    res = sweep(config, GRID, bars=bars, progress=False)
    # exit_threshold 0.002 > entry_threshold 0.001 is rejected for each of the 3 windows
    assert res.skipped == 3 and len(res.frame) == 9
    assert all("exit_threshold" in msg for _, msg in res.invalid)
    assert list(res.frame.columns[:4]) == ["window", "entry_threshold", "exit_threshold", "trend_window"]
    assert (res.frame["exit_threshold"] <= res.frame["entry_threshold"]).all()
    assert res.frame["trade_count"].dtype.kind == "i" and (res.frame["trade_count"] > 0).all()
    assert res.params == ["window", "entry_threshold", "exit_threshold"]


def test_rows_equal_run_backtest_metrics(bars, config):
    res = sweep(config, GRID, bars=bars, progress=False, metrics=METRIC_KEYS)
    for i in (0, 4, 8):
        row = res.frame.iloc[i]
        want = run_backtest(config.replace(params=_params(row)), bars).metrics
        _assert_same(row, want)


def test_multi_symbol_rows_equal_run_backtest(config):
    frames = {"BTC/USDT": sample_bars("BTC/USDT", days=4), "ETH/USDT": sample_bars("ETH/USDT", days=4)}
    cfg = config.replace(symbols=["BTC/USDT", "ETH/USDT"], sizing={"mode": "percent_equity", "value": 0.5})
    res = sweep(cfg, {"window": [15, 45]}, bars=frames, progress=False, metrics=METRIC_KEYS)
    assert len(res.frame) == 2
    for i in range(2):
        row = res.frame.iloc[i]
        _assert_same(row, run_backtest(cfg.replace(params=_params(row)), frames).metrics)


def test_chunking_gives_the_same_frame(bars, config):
    whole = sweep(config, GRID, bars=bars, progress=False, chunk_size=1000)
    chunked = sweep(config, GRID, bars=bars, progress=True, chunk_size=2)
    pd.testing.assert_frame_equal(whole.frame, chunked.frame)


def test_random_search_is_reproducible(bars, config):
    a = sweep(config, GRID, n_random=5, seed=7, bars=bars, progress=False)
    b = sweep(config, GRID, n_random=5, seed=7, bars=bars, progress=False)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert len(a.frame) + a.skipped == 5
    # random draws from the declared ranges when there is no grid
    c = sweep(config, None, n_random=4, seed=1, bars=bars.iloc[:3000], progress=False)
    d = sweep(config, None, n_random=4, seed=1, bars=bars.iloc[:3000], progress=False)
    pd.testing.assert_frame_equal(c.frame, d.frame)
    assert len(c.frame) + c.skipped == 4
    with pytest.raises(ValueError, match="grid"):
        sweep(config, None, bars=bars, progress=False)


def test_bad_inputs_are_clear(bars, config):
    with pytest.raises(ValueError, match="no param 'windw'"):
        sweep(config, {"windw": [1]}, bars=bars, progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        sweep(config, GRID, bars=bars, metrics=("sharp",), progress=False)
    res = sweep(config, {"exit_threshold": [0.5]}, bars=bars, progress=False)
    assert res.frame.empty and res.skipped == 1


def test_best_heatmap_and_parallel_coordinates(bars, config):
    res = sweep(config, GRID, bars=bars, progress=False)
    best = res.best("sharpe_ratio")
    assert best["sharpe_ratio"] == res.frame["sharpe_ratio"].max()
    assert res.best("max_drawdown")["max_drawdown"] == res.frame["max_drawdown"].min()
    params = res.best_params("total_return")
    assert set(params) == {"window", "entry_threshold", "exit_threshold", "trend_window"}
    assert type(params["window"]) is int and type(params["trend_window"]) is int  # not 10.0 from a mixed row
    assert type(params["entry_threshold"]) is float
    fig = res.heatmap("window", "entry_threshold", "sharpe_ratio")
    assert isinstance(fig, go.Figure)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2, 3)  # entry_threshold x window, max over exit_threshold
    sub = res.frame[(res.frame["window"] == 10) & (res.frame["entry_threshold"] == 0.003)]
    assert z[1, 0] == sub["sharpe_ratio"].max()
    pc = res.parallel_coordinates("total_return")
    assert isinstance(pc, go.Figure) and len(pc.data[0].dimensions) == 4
    with pytest.raises(ValueError, match="not a param"):
        res.heatmap("bogus", "window")


def test_walk_forward_reports_in_and_out_of_sample(bars, config):
    wf = walk_forward(config, GRID, splits=3, train_frac=0.7, metric="total_return", bars=bars)
    assert len(wf) == 3
    assert {"in_sample", "out_of_sample", "gap", "window", "train_start", "test_end"} <= set(wf.columns)
    assert (wf["train_end"] < wf["test_start"]).all()
    assert np.allclose(wf["gap"], wf["in_sample"] - wf["out_of_sample"])
    # the in-sample figure is the best of the grid on the training window
    first = wf.iloc[0]
    train = bars.loc[first["train_start"] : first["train_end"]]
    ins = sweep(config, GRID, bars=train, progress=False, metrics=("total_return",))
    assert first["in_sample"] == ins.frame["total_return"].max()


def test_sensitivity_one_param_at_a_time(bars, config):
    s = sensitivity(config, "window", [10, 20, 40], bars=bars, metrics=("total_return", "trade_count"))
    assert list(s.index) == [10, 20, 40] and list(s.columns) == ["total_return", "trade_count"]
    one = sweep(config, {"window": [20]}, bars=bars, progress=False, metrics=("total_return",))
    assert s.loc[20, "total_return"] == one.frame["total_return"].iloc[0]  # others stay at the config's
    by_threshold = sensitivity(config, "exit_threshold", [0.0, 0.5], bars=bars, metrics=("total_return",))
    assert by_threshold.index.tolist() == [0.0]


def test_np_sum_close_to_numpy():
    x = np.random.default_rng(0).standard_normal(100_003) * 1e-3
    assert np_sum(x) == pytest.approx(np.sum(x), rel=1e-12, abs=1e-15)


def test_gapped_symbols_book_like_run_backtest(config):
    """Symbols with different bars (late start, a gap): the sweep uses run_backtest's kernel inputs
    and the same booking pass (booking.replay_nb), so equity and trades agree exactly."""
    eth = sample_bars("ETH/USDT", days=4)
    frames = {"BTC/USDT": sample_bars("BTC/USDT", days=4), "ETH/USDT": eth.iloc[200:].drop(eth.index[1000:1100])}
    cfg = config.replace(symbols=["BTC/USDT", "ETH/USDT"], sizing={"mode": "percent_equity", "value": 0.5})
    res = sweep(cfg, {"window": [15, 45]}, bars=frames, progress=False, metrics=METRIC_KEYS)
    assert len(res.frame) == 2
    for i in range(2):
        row = res.frame.iloc[i]
        want = run_backtest(cfg.replace(params=_params(row)), frames).metrics
        assert want["trade_count"] > 0
        _assert_same(row, want)
        for k in ("final_equity", "max_drawdown", "trade_count", "exposure"):
            assert float(row[k]) == want[k], k


def test_kth_matches_numpy_partition_on_hard_inputs():
    """The quantile's selection (sampled bracket, else quickselect) against np.partition."""
    from workbench.metrics.kernel import _kth

    rng = np.random.default_rng(7)
    n = 30_000
    cases = [
        rng.normal(0, 1e-4, n),
        np.where(rng.random(n) < 0.7, 0.0, rng.normal(0, 1e-3, n)),  # mostly flat bars
        np.sort(rng.normal(size=n)),  # sorted: the strided sample sees the tails only
        np.zeros(n),
        rng.integers(-2, 3, n).astype(float),  # few distinct values: brackets full of ties
        rng.normal(size=500),  # small: plain quickselect
    ]
    for x in cases:
        for k in (0, int((len(x) - 1) * 0.05), len(x) // 2, len(x) - 1):
            buf = np.empty(len(x))
            before = x.copy()
            want = np.sort(x)
            assert _kth(x, k, buf) == (want[k], want[min(k + 1, len(x) - 1)])
            assert np.array_equal(x, before)  # input untouched
