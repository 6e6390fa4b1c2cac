"""Tail risk over a day (workbench.metrics.tail), checked against empyrical and by hand."""
from __future__ import annotations

import math
from statistics import NormalDist

import empyrical
import numpy as np
import pandas as pd
import pytest

from workbench.metrics import METRIC_LABELS, compute_metrics, empty_trades
from workbench.metrics.tail import (
    TAIL_KEYS,
    cornish_fisher_var_es,
    historical_var_es,
    horizon_returns,
    tail_metrics,
    tail_risk,
)


def minute_curve(days: int, seed: int, flat_share: float = 0.0) -> pd.Series:
    """An equity curve of 1-minute bars; ``flat_share`` of the bars change nothing (out of the market)."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    r = rng.standard_t(4, n) * 0.001
    r[rng.random(n) < flat_share] = 0.0
    idx = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC")
    return pd.Series(10_000 * np.cumprod(1 + r), index=idx)


@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_historical_var_and_es_agree_with_empyrical(confidence):
    r = np.random.default_rng(3).standard_t(3, 5_000) * 0.02
    var, es = historical_var_es(r, confidence)
    assert var == pytest.approx(-empyrical.value_at_risk(r, cutoff=1 - confidence), abs=1e-12)
    assert es == pytest.approx(-empyrical.conditional_value_at_risk(r, cutoff=1 - confidence), abs=1e-12)


def test_horizon_returns_are_the_overlapping_one_day_windows_from_the_initial_balance():
    idx = pd.date_range("2024-01-01", periods=5, freq="12h", tz="UTC")  # 2 bars a day
    eq = np.array([110.0, 99.0, 99.0, 120.0, 60.0])
    r = horizon_returns(eq, 100.0, 730.0)  # 730 periods a year = 12 h
    assert r == pytest.approx([99 / 100 - 1, 99 / 110 - 1, 120 / 99 - 1, 60 / 99 - 1])
    assert len(horizon_returns(eq[:1], 100.0, 730.0)) == 0  # shorter than a day: no window
    assert len(horizon_returns(eq, 100.0, 52.0)) == 0  # weekly bars are coarser than a day
    assert len(idx) == len(eq)


def test_a_mostly_flat_strategy_has_per_bar_var_zero_and_a_daily_var_a_person_can_read():
    eq = minute_curve(20, seed=1, flat_share=0.97)
    m = compute_metrics(eq, empty_trades(), 10_000)
    assert m["value_at_risk"] == 0.0  # true for one bar, and useless
    assert 0.005 < m["value_at_risk_1d"] < 0.2
    assert m["expected_shortfall_1d"] > m["value_at_risk_1d"]
    daily = eq.to_numpy()
    windows = np.concatenate(([10_000.0], daily))
    ref = windows[1440:] / windows[:-1440] - 1
    assert m["value_at_risk_1d"] == pytest.approx(-empyrical.value_at_risk(ref, cutoff=0.05), abs=1e-9)
    assert m["expected_shortfall_1d"] == pytest.approx(-empyrical.conditional_value_at_risk(ref, cutoff=0.05),
                                                       abs=1e-9)


def test_cornish_fisher_is_the_normal_figure_for_symmetric_mesokurtic_returns_and_grows_with_a_fat_left_tail():
    z = NormalDist().inv_cdf(0.05)
    r = np.array([-1.0, 1.0] * 50) * 0.01  # no skew, kurtosis -2
    mean, sd = 0.0, float(np.std(r, ddof=1))
    var, _ = cornish_fisher_var_es(r)
    k = -2.0
    zc = z + (z**3 - 3 * z) * k / 24
    assert var == pytest.approx(-(mean + sd * zc), abs=1e-12)  # by hand
    normal = np.random.default_rng(0).standard_normal(200_000) * 0.01
    var_n, es_n = cornish_fisher_var_es(normal)
    assert var_n == pytest.approx(-z * 0.01, rel=0.02)
    phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    assert es_n == pytest.approx(0.01 * phi / 0.05, rel=0.02)  # the normal ES, phi(z) / alpha
    crashes = normal.copy()
    crashes[::500] -= 0.05
    assert cornish_fisher_var_es(crashes)[0] > var_n


def test_metrics_say_their_horizon_and_confidence_and_keep_the_per_bar_figures():
    assert list(METRIC_LABELS)[-len(TAIL_KEYS):] == list(TAIL_KEYS)
    assert "1 day" in METRIC_LABELS["value_at_risk_1d"][0] and "95 %" in METRIC_LABELS["value_at_risk_1d"][0]
    assert "per bar" in METRIC_LABELS["value_at_risk"][0]
    eq = minute_curve(3, seed=2)
    table = tail_risk(eq, 10_000, horizon="4h", confidence=0.99)
    assert table.attrs["horizon"] == "0 days 04:00:00" and table.attrs["confidence"] == 0.99
    assert table.columns.name == "99% over 0 days 04:00:00"
    assert table.loc["VaR", "historical"] == pytest.approx(
        historical_var_es(horizon_returns(eq.to_numpy(), 10_000, 525_600.0, pd.Timedelta("4h")), 0.99)[0])
    daily = tail_risk(eq, 10_000)
    assert daily.loc["VaR", "historical"] == pytest.approx(tail_metrics(eq.to_numpy(), 10_000, 525_600.0)[
        "value_at_risk_1d"])


@pytest.mark.parametrize("bad, message", [(dict(confidence=1.0), "confidence must be"),
                                          (dict(confidence=0.3), "confidence must be"),
                                          (dict(horizon="-1D"), "horizon must be")])
def test_bad_horizon_or_confidence_says_what_to_give(bad, message):
    with pytest.raises(ValueError, match=message):
        tail_risk(minute_curve(2, seed=4), 10_000, **bad)


def test_short_curves_give_nan_not_an_error():
    eq = minute_curve(1, seed=5).iloc[:600]
    m = compute_metrics(eq, empty_trades(), 10_000)
    assert all(math.isnan(m[k]) for k in TAIL_KEYS)
