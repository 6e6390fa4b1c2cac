"""Leg allocations suggested by PyPortfolioOpt on the legs' returns: a suggestion, never applied silently."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.kit import bars_for
from tests.test_legs import LEGS, legs_config
from workbench.backtest.allocate import suggest_allocations, weights_from_returns


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """Three legs' daily returns: calm and star uncorrelated with the same volatility, wild 3x as volatile;
    star has four times the mean return."""
    rng = np.random.default_rng(3)
    return pd.DataFrame({"calm": rng.normal(0.001, 0.01, 400), "wild": rng.normal(0.001, 0.03, 400),
                         "star": rng.normal(0.004, 0.01, 400)})


def test_hrp_on_uncorrelated_legs_is_close_to_inverse_variance(synthetic: pd.DataFrame) -> None:
    weights, expected = weights_from_returns(synthetic, "hrp")
    inv = 1 / synthetic.var()
    np.testing.assert_allclose(pd.Series(weights)[inv.index], inv / inv.sum(), atol=0.03)  # ~ 9/19, 1/19, 9/19
    assert sum(weights.values()) == pytest.approx(1, abs=1e-4) and expected["annual_volatility"] > 0


def test_max_sharpe_favours_the_leg_with_the_best_ratio(synthetic: pd.DataFrame) -> None:
    weights, expected = weights_from_returns(synthetic, "max_sharpe")
    assert max(weights, key=weights.__getitem__) == "star" and weights["wild"] < weights["calm"]
    assert expected["sharpe_ratio"] > weights_from_returns(synthetic, "min_volatility")[1]["sharpe_ratio"]


def test_bad_requests_say_what_to_do(synthetic: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown allocation method 'kelly'; use one of hrp, max_sharpe"):
        weights_from_returns(synthetic, "kelly")
    with pytest.raises(ValueError, match="need at least 5 periods .* use a shorter freq"):
        weights_from_returns(synthetic.iloc[:3], "hrp")
    with pytest.raises(ValueError, match="at least two legs"):
        suggest_allocations(legs_config(legs=LEGS[:1]))
    from workbench.backtest.sweep import sweep

    with pytest.raises(ValueError, match="this config has legs: sweep one leg as its own config"):
        sweep(legs_config(), {"fast": [3, 4]})


def test_a_suggestion_on_the_legs_backtests_is_accepted_explicitly() -> None:
    config = legs_config(kind="backtest")
    suggestion = suggest_allocations(config, bars_for(config, days=2), method="hrp", freq="1h")
    assert suggestion.returns is not None and list(suggestion.returns.columns) == ["trend", "revert"]
    assert len(suggestion.returns) >= 40
    assert suggestion.current == {"trend": 0.6, "revert": 0.4}
    assert sum(suggestion.allocations.values()) <= 1.0 and min(suggestion.allocations.values()) > 0
    assert [leg.allocation for leg in config.legs] == [0.6, 0.4]  # nothing applied silently
    accepted = suggestion.accept()
    assert {leg.name: leg.allocation for leg in accepted.legs} == suggestion.allocations
    assert list(suggestion.frame().columns) == ["current", "suggested"]


def test_the_cli_prints_a_suggestion_and_changes_nothing(tmp_path, capsys) -> None:
    import json

    from workbench.cli import main

    path = tmp_path / "legs.json"
    path.write_text(legs_config(kind="backtest", start="2024-01-01", end="2024-01-03").to_json())
    db = tmp_path / "store.db"
    argv = ["backtest", "--db", str(db), "--config", str(path), "--suggest-allocations", "hrp",
            "--allocation-freq", "1h", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "hrp" and set(out["allocations"]) == {"trend", "revert"}
    assert out["current"] == {"trend": 0.6, "revert": 0.4} and not db.exists()  # no backtest saved
    assert main([*argv[:-4], "max_sharpe", "--allocation-freq", "1h"]) == 2  # both legs lose: says so, one line
    assert "try method='hrp'" in capsys.readouterr().err
