"""The A/B verdict's statistics against independent references: the deflated Sharpe paper's worked
example, the PSR and MinTRL formulas evaluated with scipy's own moment estimators, and the bootstrap's
coverage on data whose true difference is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from workbench.ab.stats import (
    bootstrap_mean_diff,
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record_length,
    moments,
    probabilistic_sharpe,
    verdict,
)


def test_deflated_sharpe_matches_the_papers_worked_example():
    # Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio", numerical example: 100 trials whose
    # annualized Sharpe ratios have variance 1/2, the best at 2.5 annualized over 1,250 daily returns
    # with skewness -3 and kurtosis 10: SR0 ~ 0.1132 per day and DSR ~ 0.9004.
    sr, var = 2.5 / math.sqrt(250), 0.5 / 250
    assert expected_max_sharpe(100, var) == pytest.approx(0.1132, abs=1e-4)
    assert deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var) == pytest.approx(0.9004, abs=2e-4)
    assert expected_max_sharpe(1, var) == 0.0  # one trial: nothing to deflate


def reference_psr(r: np.ndarray, benchmark: float) -> float:
    """PSR as skfolio documents it, with scipy's skewness and (Pearson) kurtosis."""
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = sps.skew(r), sps.kurtosis(r, fisher=False)
    return float(sps.norm.cdf((sr - benchmark) * np.sqrt(len(r) - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)))


@pytest.mark.parametrize("seed,benchmark", [(1, 0.0), (2, 0.05), (3, -0.02)])
def test_probabilistic_sharpe_matches_a_reference_on_fixed_fat_tailed_returns(seed, benchmark):
    r = 0.001 + 0.01 * np.random.default_rng(seed).standard_t(4, size=750)
    m = moments(r)
    assert (m.skew, m.kurt) == pytest.approx((sps.skew(r), sps.kurtosis(r, fisher=False)), rel=1e-9)
    assert probabilistic_sharpe(m.sharpe, m.n, m.skew, m.kurt, benchmark) == pytest.approx(
        reference_psr(r, benchmark), rel=1e-9)


def test_min_track_record_length_is_where_psr_reaches_the_confidence():
    # normal returns, SR 0.1 per period: MinTRL = 1 + (1 + SR^2/2) (z_0.95 / SR)^2, by hand
    assert min_track_record_length(0.1) == pytest.approx(1 + 1.005 * (1.6448536269514722 / 0.1) ** 2, rel=1e-9)
    n = min_track_record_length(0.08, -0.5, 6.0, benchmark=0.02, confidence=0.9)
    assert probabilistic_sharpe(0.08, n, -0.5, 6.0, benchmark=0.02) == pytest.approx(0.9, abs=1e-3)
    assert min_track_record_length(0.01, benchmark=0.02) == math.inf  # not beating the benchmark: never


def test_bootstrap_is_seeded_and_its_interval_covers_the_true_difference():
    rng = np.random.default_rng(7)
    b = rng.normal(0, 0.01, 400)
    a = b + 0.002 + rng.normal(0, 0.005, 400)
    first = bootstrap_mean_diff(a, b, seed=11)
    assert bootstrap_mean_diff(a, b, seed=11) == first  # same seed, same interval
    diff, low, high, p = first
    assert low < diff < high and low > 0 and p < 0.05  # a true difference of 0.002: found
    # identical series: no difference at all
    assert bootstrap_mean_diff(b, b) == (0.0, 0.0, 0.0, 1.0)
    # coverage: the 90% interval of a zero-mean difference contains 0 about 90% of the time
    hits = 0
    for seed in range(120):
        x = np.random.default_rng(1000 + seed).normal(0, 1, 120)
        _, lo, hi, _ = bootstrap_mean_diff(x, np.zeros(120), n_boot=400, confidence=0.9, seed=seed,
                                           method="circular" if seed % 2 else "stationary")
        hits += lo <= 0 <= hi
    assert 0.8 <= hits / 120 <= 0.98


def test_verdict_identical_variants_show_no_difference_and_an_edge_wins():
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 0.01, 300)
    same = verdict({"A": base, "B": base.copy()})
    assert same.winner is None and same.text.startswith("no significant difference")
    assert same.comparisons[0].mean_diff == 0 and same.sure == 0.0
    edge = verdict({"A": base, "B": base + 0.004 + rng.normal(0, 0.002, 300), "C": base - 0.001})
    assert edge.winner == "B" and edge.text.startswith("winner: B")
    assert all(c.ci_low > 0 for c in edge.comparisons) and edge.sure > 0.95
    assert edge.stats["B"]["dsr"] < edge.stats["B"]["psr"]  # deflated for the 3 variants tried
    assert set(edge.to_dict()) >= {"winner", "text", "stats", "comparisons"}


def test_the_leader_is_the_variant_with_the_higher_mean_return_the_bootstrap_tests():
    rng = np.random.default_rng(9)
    steady = 0.0005 + rng.normal(0, 0.0005, 2000)  # Sharpe ~1 per period
    bold = 0.002 + rng.normal(0, 0.01, 2000)  # Sharpe ~0.2, a mean 4x higher
    v = verdict({"steady": steady, "bold": bold})
    assert v.stats["steady"]["sharpe"] > v.stats["bold"]["sharpe"]
    assert v.winner == "bold" and v.comparisons[0].a == "bold" and v.comparisons[0].ci_low > 0


@pytest.mark.parametrize("returns,message", [
    ({"A": [0.1, 0.2]}, "at least 2 variants"),
    ({"A": [0.1, 0.2, 0.3], "B": [0.1, 0.2]}, "same periods"),
    ({"A": [0.1], "B": [0.2]}, "at least 2 returns"),
])
def test_verdict_bad_input_says_what_is_wrong(returns, message):
    with pytest.raises(ValueError, match=message):
        verdict(returns)


def test_resampled_blocks_keep_the_series_autocorrelation_and_a_whole_circular_block_is_a_rotation():
    from workbench.ab.stats import resampled_means

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 400)
    # a resample made of one circular block of every period is a rotation: its mean is the series' mean
    rot = resampled_means(x[None, :], n_boot=200, block=400, method="circular", seed=1)[0]
    assert rot == pytest.approx(np.full(200, x.mean()), abs=1e-12)
    # iid periods: the resampled means' spread is the standard error, whatever the block length
    for method in ("stationary", "circular"):
        means = resampled_means(x[None, :], n_boot=4000, block=1, method=method, seed=2)[0]
        assert means.mean() == pytest.approx(x.mean(), abs=0.01)
        assert means.std() == pytest.approx(x.std() / math.sqrt(400), rel=0.1)
    # strongly autocorrelated periods (runs of 20 equal values): blocks of ~20 keep the runs, and the
    # spread of the means with them, which resampling single periods understates ~4x
    runs = np.repeat(rng.normal(0, 1, 20), 20)
    single = resampled_means(runs[None, :], n_boot=2000, block=1, seed=4)[0].std()
    for method in ("stationary", "circular"):
        blocked = resampled_means(runs[None, :], n_boot=2000, block=20, seed=4, method=method)[0].std()
        assert blocked > 2.5 * single, (method, blocked, single)
