"""Built-in strategies: live-loop parity (last row over lookback bars == full history), sensible
signal counts on realistic bars, indicator behaviour, and parameter validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.strategies import Strategy, catalog, create, get, names
from workbench.strategies.builtin import _window_mean_std, _window_sum

BUILTINS = ("sma_cross", "pump_detection", "momentum", "mean_reversion")
PUMP_LEN = 8


def make_bars(n: int = 20_000, seed: int = 7, pumps: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """Seeded 1-minute random-walk bars with clustered volatility, lognormal volume and
    ``pumps`` pump-and-dump episodes (volume x10, +0.6 % a bar, then a dump). Returns the bars
    and the bar positions where the pumps start."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    vol = 0.001 * np.exp(0.5 * np.sin(t / 700.0))
    r = rng.standard_normal(n) * vol
    volume = rng.lognormal(3.0, 0.4, n)
    starts = np.linspace(1_000, n - 1_000, pumps).astype(int) + rng.integers(-200, 200, pumps)
    for s in starts:
        r[s : s + PUMP_LEN] += 0.006
        volume[s : s + PUMP_LEN] *= 10
        r[s + PUMP_LEN : s + PUMP_LEN + 15] -= 0.004
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 5e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 5e-4, n)))
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=idx)
    return bars, np.sort(starts)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars()[0]


# Non-default parameter sets exercise other windows and the optional branches.
ALT_PARAMS = {
    "sma_cross": [{"fast": 5, "slow": 50}],
    "pump_detection": [{"min_factors": 2, "volume_window": 30, "breakout_window": 15, "exit_window": 40},
                       {"min_factors": 1, "accel_window": 3, "min_return": 0.004}],
    "momentum": [{"window": 15, "entry_threshold": 0.002, "exit_threshold": -0.001, "trend_window": 120}],
    "mean_reversion": [{"window": 200, "entry_z": 1.5, "exit_z": 0.5}, {"window": 7, "entry_z": 1.0}],
}


def _cases() -> list[tuple[str, dict]]:
    """The built-in strategies (not ones other test modules register at collection time)."""
    builtin = [n for n in names() if get(n).__module__.startswith("workbench.")]
    return [(n, {}) for n in builtin] + [(n, p) for n, ps in ALT_PARAMS.items() for p in ps]


@pytest.mark.parametrize("name, params", _cases())
def test_last_row_over_lookback_equals_full_history(bars: pd.DataFrame, name: str, params: dict) -> None:
    """The live loop's view (only the last lookback() bars, or a few more) decides exactly like
    the vectorized backtest at many positions, including every bar where a signal fires."""
    strat = create(name, params)
    lb = strat.lookback()
    full_e, full_x = strat.signals(bars)
    rng = np.random.default_rng(1)
    n = len(bars)
    fired = np.flatnonzero((full_e | full_x).to_numpy()) + 1  # "end" positions after a signal bar
    fired = fired[fired >= lb]
    ends = np.unique(np.r_[rng.integers(lb, n + 1, 250), rng.choice(fired, min(len(fired), 250), replace=False), n])
    for end in ends:
        for extra in (0, int(rng.integers(1, 300))):
            window = bars.iloc[max(0, end - lb - extra) : end]
            e, x = strat.signals(window)
            assert e.iloc[-1] == full_e.iloc[end - 1], (name, params, end, extra, "entry")
            assert x.iloc[-1] == full_x.iloc[end - 1], (name, params, end, extra, "exit")


@pytest.mark.parametrize("name, params", _cases())
def test_signals_shape_and_warm_up(bars: pd.DataFrame, name: str, params: dict) -> None:
    strat = create(name, params)
    for frame in (bars, bars.iloc[:0], bars.iloc[:1], bars.iloc[: strat.lookback() // 2]):
        e, x = strat.signals(frame)
        for s in (e, x):
            assert s.dtype == bool and s.index.equals(frame.index) and not s.isna().any()
    e, x = strat.signals(bars.iloc[:1])
    assert not e.any() and not x.any()  # no indicator is defined on one bar


def _onsets(s: pd.Series) -> np.ndarray:
    v = s.to_numpy()
    return np.flatnonzero(v & ~np.r_[False, v[:-1]])


@pytest.mark.parametrize("name", BUILTINS)
def test_sensible_signal_counts(bars: pd.DataFrame, name: str) -> None:
    e, x = create(name).signals(bars)
    assert 5 <= len(_onsets(e)) <= len(bars) // 20, len(_onsets(e))
    assert x.sum() >= len(_onsets(e)) - 1  # every entry but perhaps the last can be exited
    assert e.mean() < 0.25
    assert not (e & x).any()


def test_pump_detection_finds_the_pumps() -> None:
    bars, starts = make_bars()
    onsets = _onsets(create("pump_detection").signals(bars)[0])
    near = [any(s <= o <= s + PUMP_LEN for s in starts) for o in onsets]
    found = [any(s <= o <= s + PUMP_LEN for o in onsets) for s in starts]
    assert np.mean(near) >= 0.9, "most entries are at injected pumps"
    assert np.mean(found) >= 0.8, "most injected pumps are detected"


def test_pump_factors_on_a_handmade_frame() -> None:
    n = 100
    close = np.full(n, 100.0)
    close[90:] = [101.0, 102.5, 104.5, 104.0, 103.5, 103.0, 101.0, 100.0, 100.0, 100.0]
    volume = np.full(n, 10.0)
    volume[90:93] = 50.0
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": volume}, index=idx)
    strat = create("pump_detection", {"volume_window": 20, "accel_window": 2, "min_return": 0.02,
                                      "breakout_window": 10, "exit_window": 5})
    e, x = strat.signals(bars)
    # bars 91-92: volume x5, +2.5 % / +3.5 % over 2 bars and rising, above the prior 10-bar high
    assert e.iloc[91] and e.iloc[92]
    assert not e.iloc[90]  # +1 % over 2 bars is below min_return
    assert not e.iloc[93]  # no breakout, no volume spike
    assert x.iloc[95] and x.iloc[96]  # close falls under its 5-bar mean
    assert not x.iloc[:90].any() and not e.iloc[:90].any()  # flat market: nothing
    two = create("pump_detection", {**strat.p, "min_factors": 2}).signals(bars)[0]
    one = create("pump_detection", {**strat.p, "min_factors": 1}).signals(bars)[0]
    assert (e <= two).all() and (two <= one).all() and one.sum() > e.sum()


def test_momentum_is_rate_of_change(bars: pd.DataFrame) -> None:
    strat = create("momentum", {"window": 30, "entry_threshold": 0.004, "exit_threshold": -0.002})
    e, x = strat.signals(bars)
    roc = bars["close"].pct_change(30, fill_method=None)
    pd.testing.assert_series_equal(e, (roc > 0.004).rename(None), check_names=False)
    pd.testing.assert_series_equal(x, (roc < -0.002).rename(None), check_names=False)
    filtered, _ = create("momentum", {**strat.p, "trend_window": 240}).signals(bars)
    assert (filtered <= e).all() and filtered.sum() < e.sum()
    sma = bars["close"].rolling(240).mean()
    clear = (bars["close"] - sma).abs() > 1e-9 * sma  # away from float ties
    assert (filtered[clear] == (e & (bars["close"] > sma))[clear]).all()


def test_mean_reversion_is_z_score(bars: pd.DataFrame) -> None:
    e, x = create("mean_reversion", {"window": 50, "entry_z": 2.0, "exit_z": 0.0}).signals(bars)
    c = bars["close"]
    z = (c - c.rolling(50).mean()) / c.rolling(50).std()
    clear_e, clear_x = (z + 2.0).abs() > 1e-6, z.abs() > 1e-6
    assert (e[clear_e] == (z < -2.0)[clear_e]).all()
    assert (x[clear_x] == (z > 0.0)[clear_x]).all()
    flat = bars.assign(close=100.0)
    fe, fx = create("mean_reversion").signals(flat)
    assert not fe.any() and not fx.any()  # zero variance: no z-score, no signal


def tie_bars(n: int = 1_200, w: int = 4) -> pd.DataFrame:
    """Adversarial bars: every other close equals the mean of the w-bar window it ends, so
    "close vs its rolling mean" decisions sit exactly on the threshold."""
    rng = np.random.default_rng(0)
    close = np.empty(n)
    close[:w] = 100 + rng.normal(0, 1, w)
    for t in range(w, n):
        close[t] = close[t - w + 1 : t].mean() if t % 2 else close[t - 1] * np.exp(rng.normal(0, 0.01))
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=idx)


@pytest.mark.parametrize("name, params", [
    ("mean_reversion", {"window": 4, "entry_z": 0.5, "exit_z": 0.0}),
    ("pump_detection", {"exit_window": 4}),
    ("momentum", {"trend_window": 4, "entry_threshold": -0.5, "exit_threshold": -0.5}),
])
def test_parity_holds_on_exact_ties(name: str, params: dict) -> None:
    bars = tie_bars()
    close = bars["close"]
    naive = close.rolling(4).mean().to_numpy()
    fresh = [close.iloc[e - 4 : e].rolling(4).mean().iloc[-1] for e in range(4, len(bars) + 1)]
    flips = np.sum((close.to_numpy()[3:] > fresh) != (close.to_numpy()[3:] > naive[3:]))
    assert flips > 10, "the data must be adversarial: pandas' online rolling mean flips decisions here"
    strat = create(name, params)
    lb = strat.lookback()
    full_e, full_x = strat.signals(bars)
    assert full_e.any() or full_x.any()
    for end in range(lb, len(bars) + 1):
        e, x = strat.signals(bars.iloc[end - lb : end])
        assert (e.iloc[-1], x.iloc[-1]) == (full_e.iloc[end - 1], full_x.iloc[end - 1]), end


def test_window_sums_do_not_depend_on_where_the_frame_starts() -> None:
    rng = np.random.default_rng(2)
    x = 30_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, 5_000)))
    for w in (2, 17, 200):
        s, (m, sd) = _window_sum(x, w), _window_mean_std(x, w)
        windows = np.lib.stride_tricks.sliding_window_view(x, w)
        np.testing.assert_allclose(s[w - 1 :], windows.sum(axis=1), rtol=1e-12)
        np.testing.assert_allclose(m[w - 1 :], windows.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(sd[w - 1 :], windows.std(axis=1, ddof=1), rtol=1e-7)
        assert np.isnan(s[: w - 1]).all()
        for start in rng.integers(0, 5_000 - w, 50):
            tail = x[start:]
            assert _window_sum(tail, w)[-1] == s[-1]  # bit-identical
            assert _window_mean_std(tail, w)[1][-1] == sd[-1]


# --- parameters ----------------------------------------------------------------------------

def test_catalog_describes_every_builtin() -> None:
    entries = {c["name"]: c for c in catalog()}
    assert set(BUILTINS) <= set(entries)
    assert entries["pump_detection"]["title"] == "Pump Detection Strategy v2"
    for name in BUILTINS:
        cls = get(name)
        assert issubclass(cls, Strategy) and cls.title and len(cls.description) > 30
        for p in cls.params:
            assert p.description and p.low is not None and p.high is not None
            assert p.low <= p.default <= p.high
        assert cls().p == cls.defaults()


def test_momentum_grid_of_ten_by_ten_by_ten_is_valid() -> None:
    combos = [
        {"window": w, "entry_threshold": et, "exit_threshold": xt}
        for w in range(10, 110, 10)
        for et in np.linspace(0.001, 0.01, 10)
        for xt in np.linspace(-0.01, 0.0, 10)
    ]
    assert len(combos) == 1000
    assert all(create("momentum", c).lookback() == c["window"] + 1 for c in combos)


@pytest.mark.parametrize("name, params, match", [
    ("momentum", {"windw": 10}, "no param 'windw'"),
    ("momentum", {"window": 0}, "'window' must be between"),
    ("momentum", {"window": "ten"}, "'window' must be int"),
    ("momentum", {"window": 2.5}, "'window' must be int"),
    ("momentum", {"entry_threshold": 0.01, "exit_threshold": 0.02}, "'exit_threshold'.*<= 'entry_threshold'"),
    ("momentum", {"trend_window": 1}, "'trend_window' must be 0"),
    ("mean_reversion", {"entry_z": 1.0, "exit_z": 1.0}, "'exit_z'.*smaller than 'entry_z'"),
    ("mean_reversion", {"entry_z": 50}, "'entry_z' must be between"),
    ("mean_reversion", {"window": 2}, "'window' must be between"),
    ("pump_detection", {"min_factors": 4}, "'min_factors' must be between"),
    ("pump_detection", {"volume_mult": 0.5}, "'volume_mult' must be between"),
    ("sma_cross", {"fast": 30, "slow": 30}, "'fast'.*smaller than 'slow'"),
])
def test_bad_params_are_rejected_clearly(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create(name, params)


def test_params_from_text_are_coerced() -> None:
    s = create("momentum", {"window": "20", "entry_threshold": "0.003"})
    assert s.p["window"] == 20 and s.p["entry_threshold"] == 0.003
    assert s.lookback() == 21


# --- the live loop's fast path: last_signal ----------------------------------------------------

def _window(bars: pd.DataFrame, end: int, size: int):
    from workbench.strategies import BarWindow

    part = bars.iloc[max(0, end - size):end]
    return BarWindow(part.index.as_unit("ns").asi8, part.to_numpy(dtype=float))


@pytest.mark.parametrize("name, params", _cases())
def test_last_signal_equals_the_full_history_row_at_every_bar(bars: pd.DataFrame, name: str, params: dict) -> None:
    """The bar-by-bar loop's ``last_signal`` over the last lookback() bars (no frame) decides exactly
    like ``signals`` over the whole history, at every bar: warm-up, signal bars and all."""
    strat = create(name, params)
    lb = strat.lookback()
    full_e, full_x = (s.to_numpy() for s in strat.signals(bars))
    n = 6_000
    got = np.array([strat.last_signal(_window(bars, end, lb)) for end in range(1, n + 1)])
    assert (got[:, 0] == full_e[:n]).all() and (got[:, 1] == full_x[:n]).all()
    assert got[:, 0].any() or name not in BUILTINS  # (other tests may register strategies of their own)
    # a longer window than needed changes nothing
    for end in range(lb, n, 97):
        assert strat.last_signal(_window(bars, end, lb + 37)) == (full_e[end - 1], full_x[end - 1])


@pytest.mark.parametrize("name, params", [
    ("mean_reversion", {"window": 4, "entry_z": 0.5, "exit_z": 0.0}),
    ("pump_detection", {"exit_window": 4}),
    ("momentum", {"trend_window": 4, "entry_threshold": -0.5, "exit_threshold": -0.5}),
    ("sma_cross", {"fast": 2, "slow": 4}),
])
def test_last_signal_holds_on_exact_ties(name: str, params: dict) -> None:
    bars = tie_bars()
    strat = create(name, params)
    full_e, full_x = (s.to_numpy() for s in strat.signals(bars))
    got = np.array([strat.last_signal(_window(bars, end, strat.lookback())) for end in range(1, len(bars) + 1)])
    assert (got[:, 0] == full_e).all() and (got[:, 1] == full_x).all()


def test_user_strategies_without_a_fast_path_use_signals_over_the_window(bars: pd.DataFrame) -> None:
    """A strategy that only writes ``signals`` (the documented minimum) works in the live loop:
    ``last_signal`` falls back to the last row of ``signals`` over the window as a frame."""
    seen = []

    class Breakout(Strategy):
        name = "test_breakout"

        def lookback(self) -> int:
            return 10

        def signals(self, frame: pd.DataFrame):
            seen.append(frame)
            hi = frame["high"].shift(1).rolling(9).max()
            return frame["close"] > hi, frame["close"] < frame["close"].shift(1)

    strat = Breakout()
    full_e, full_x = strat.signals(bars)
    for end in (1, 5, 10, 500, 4_321):
        assert strat.last_signal(_window(bars, end, 10)) == (full_e.iloc[end - 1], full_x.iloc[end - 1])
    last = seen[-1]
    assert last.index.equals(bars.index[4_311:4_321]) and list(last.columns) == list(bars.columns)
    assert strat.last_signal(_window(bars, 0, 10)) == (False, False)


def test_window_sum_rowwise_and_column_loop_are_bit_identical() -> None:
    from workbench.strategies import indicators

    rng = np.random.default_rng(3)
    x = 30_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, 3_000)))
    for w in (2, 17, 200):
        full_sum, (full_mean, full_sd) = _window_sum(x, w), _window_mean_std(x, w)
        for tail in (1, 2, 5, 400):  # 400 x 200 > the row-wise limit: the column loop
            assert np.array_equal(_window_sum(x, w, tail), full_sum[-tail:], equal_nan=True)
            m, sd = _window_mean_std(x, w, tail)
            assert np.array_equal(sd, full_sd[-tail:]) and np.array_equal(m, full_mean[-tail:])
        vol = rng.lognormal(3, 0.4, 3_000)
        for fn in (indicators.prior_median, indicators.prior_max):
            full = fn(vol, w)
            assert np.isnan(full[:w]).all() and not np.isnan(full[w:]).any()
            for tail in (1, 3):
                assert np.array_equal(fn(vol, w, tail), full[-tail:])


def test_window_sums_add_each_window_oldest_to_newest_across_blocks() -> None:
    """The one window-sum kernel gives, for every row, what ``np.cumsum`` gives along that row's window
    (the documented order), whether the input is contiguous or a strided bar-buffer column, and for
    more rows than one block (a row's order must not depend on where blocks start)."""
    from workbench.strategies.indicators import _BLOCK, window_sums_nb

    rng = np.random.default_rng(11)
    x = 30_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, 2 * _BLOCK + 300)))
    strided = np.zeros((len(x), 5))
    strided[:, 3] = x
    for w in (1, 3, 31):
        m = len(x) - w + 1
        want = np.cumsum(np.lib.stride_tricks.sliding_window_view(x, w), axis=1)[:, -1]
        assert np.array_equal(window_sums_nb(x, 0, m, w), want)
        assert np.array_equal(window_sums_nb(strided[:, 3], 0, m, w), want)
        assert np.array_equal(window_sums_nb(x, m - 2, 2, w), want[-2:])
