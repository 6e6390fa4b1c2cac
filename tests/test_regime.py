"""Market regime labels, stored with sessions and filtered on in history; presets per regime."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.metrics.regime import REGIMES, Regime, market_regime, regime_columns
from workbench.strategies import registry
from workbench.strategies.presets import PRESET_NAMES, PRESETS, preset, with_preset

START = pd.Timestamp("2024-01-01", tz="UTC")


def synthetic(drift: float, vol: float, n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """1m bars of a geometric random walk: ``drift`` and ``vol`` per bar (log returns)."""
    return walk(np.random.default_rng(seed).normal(drift, vol, n))


def walk(r: np.ndarray) -> pd.DataFrame:
    """1m bars whose closes have the log returns ``r``."""
    n = len(r)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range(START, periods=n, freq="1min", name="time")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0005,
                         "low": np.minimum(open_, close) * 0.9995, "close": close, "volume": 1.0}, index=index)


TRENDING, RANGING, VOLATILE = synthetic(0.0004, 0.0008), synthetic(0.0, 0.0008), synthetic(0.0, 0.004)


@pytest.mark.parametrize("bars, label", [(TRENDING, "trending"), (RANGING, "ranging"), (VOLATILE, "high-volatility")])
def test_labels_of_synthetic_markets(bars, label):
    got = market_regime(bars)
    assert got is not None and got.label == label
    assert got.bars == len(bars)
    assert np.isnan(got.vol_percentile)  # no reference given


def test_numbers_behind_the_label():
    trend, flat, wild = (market_regime(b) for b in (TRENDING, RANGING, VOLATILE))
    assert trend.trend_strength > 5 > 2 > flat.trend_strength
    assert trend.efficiency > flat.efficiency
    # 0.0008 per 1m bar is ~58 %/year; 0.004 ~290 %/year
    assert flat.volatility == pytest.approx(0.0008 * np.sqrt(525600), rel=0.1)
    assert wild.volatility == pytest.approx(0.004 * np.sqrt(525600), rel=0.1)
    back = Regime.from_dict(json.loads(json.dumps(trend.as_dict())))  # NaN travels as null
    assert back.as_dict() == trend.as_dict() and trend.as_dict()["vol_percentile"] is None


def test_a_calm_stretch_after_a_wild_reference_ranks_low_and_a_wild_one_high():
    calm = market_regime(RANGING, reference=VOLATILE, high_vol=10.0)
    assert calm.vol_percentile == 0.0 and calm.label == "ranging"
    wild = market_regime(VOLATILE, reference=RANGING, high_vol=10.0)
    assert wild.vol_percentile == 100.0 and wild.label == "high-volatility"


def test_several_symbols_average_and_too_few_bars_give_none():
    both = market_regime({"A": TRENDING, "B": RANGING})
    one, other = market_regime(TRENDING), market_regime(RANGING)
    assert both.trend_strength == pytest.approx((one.trend_strength + other.trend_strength) / 2)
    assert market_regime(TRENDING.iloc[:10]) is None and regime_columns(TRENDING.iloc[:10]) == {}
    with pytest.raises(TypeError, match="bars frame"):
        market_regime([TRENDING])


def test_history_filters_backtests_by_regime(store):
    sids = {}
    for label, bars in (("trending", TRENDING), ("ranging", RANGING), ("high-volatility", VOLATILE)):
        config = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"])
        sids[label] = store.save_backtest(config, run_backtest(config, {"BTC/USDT": bars}))
    history = store.history()
    assert dict(zip(history["id"], history["regime"])) == {v: k for k, v in sids.items()}
    for label, sid in sids.items():
        assert store.history(regime=label)["id"].tolist() == [sid]
        assert json.loads(store.get_session(sid)["regime_json"])["label"] == label
    with pytest.raises(ValueError, match="unknown regime 'sideways'; use one of"):
        store.history(regime="sideways")


# ---- presets ----------------------------------------------------------------------------------
def test_every_builtin_strategy_has_a_valid_preset_per_regime():
    assert PRESET_NAMES == REGIMES
    builtin = {n for n in registry.names() if registry.get(n).__module__ == "workbench.strategies.builtin"}
    assert set(PRESETS) == builtin  # (other tests register strategies of their own)
    for strategy in PRESETS:
        base = make_config(strategy=strategy)
        for name in PRESET_NAMES:
            config = with_preset(base, name)
            fields = preset(strategy, name)
            assert {k: config.params[k] for k in fields["params"]} == fields["params"]
            assert config.risk.stop_loss == fields["risk"]["stop_loss"]
    volatile = with_preset(make_config(strategy="sma_cross"), "high-volatility")
    assert volatile.sizing.value < make_config(strategy="sma_cross").sizing.value


def test_a_preset_keeps_the_configs_other_settings_and_bad_names_say_the_choices():
    config = make_config(strategy="momentum", symbols=["ETH/USDT"], risk={"max_position": 500.0})
    ranged = with_preset(config, "ranging")
    assert ranged.symbols == ["ETH/USDT"] and ranged.risk.max_position == 500.0 and ranged.risk.take_profit == 0.008
    with pytest.raises(ValueError, match=r"unknown preset 'calm' for momentum; use one of \['trending'"):
        with_preset(config, "calm")
    with pytest.raises(ValueError, match="has no built-in presets"):
        preset("nope", "trending")


def test_performance_split_by_regime_adds_up_to_the_run():
    from workbench.metrics.regime import regime_split

    day = 1440
    rng = np.random.default_rng(3)
    bars = walk(np.concatenate([rng.normal(0.0004, 0.0008, day), rng.normal(0.0, 0.0008, day),
                                rng.normal(0.0, 0.004, day)]))  # a trending, a ranging and a wild day
    config = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"])
    result = run_backtest(config, {"BTC/USDT": bars})
    split = regime_split(result.equity, result.trades, result.bars, initial=config.initial_balance)
    assert list(split.index) == list(REGIMES) and split["periods"].tolist() == [1, 1, 1]
    assert split["pnl"].sum() == pytest.approx(result.equity.iloc[-1] - config.initial_balance)
    assert split["trades"].sum() == len(result.trades)
    total = (1.0 + split["return"]).prod() - 1.0
    assert total == pytest.approx(result.equity.iloc[-1] / config.initial_balance - 1.0)
    from workbench.reports.sections import regime_table

    pd.testing.assert_frame_equal(regime_table(result), split)  # the report's section


def test_history_view_filters_by_market_and_shows_it(store):
    from workbench.ui.history import HistoryView

    config = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"])
    calm = store.save_backtest(config, run_backtest(config, {"BTC/USDT": RANGING}))
    wild = store.save_backtest(config, run_backtest(config, {"BTC/USDT": VOLATILE}))
    view = HistoryView(store)
    try:
        assert set(view.frame["id"]) == {calm, wild}
        assert "high-volatility market" in "".join(c.value for row in view.body.children for c in row.children[1:])
        view.regime.value = "ranging"
        assert list(view.frame["id"]) == [calm]
        view.compare([calm, wild])
        assert "(backtest, ranging)" in view.compare_box.children[0].value
    finally:
        view.close()


def test_wizard_preset_fills_params_and_stops_and_creates_that_config():
    from workbench.ui.wizard import REVIEW, Wizard

    wiz = Wizard(make_config(strategy="sma_cross", symbols=["ETH/USDT"]))
    wiz.preset.value = "high-volatility"
    while wiz.step < REVIEW:
        assert wiz.next(), wiz.errors
    wiz.create_button.click()
    assert wiz.config == with_preset(make_config(strategy="sma_cross", symbols=["ETH/USDT"]), "high-volatility")
    wiz.fields["strategy"].widgets[0].value = "momentum"  # another strategy starts from its own defaults
    assert wiz.preset.value == "" and wiz.params["window"].read() == 60


def test_backtest_preset_flag_and_the_flags_that_override_it(capsys):
    from workbench.cli import build_parser, config_from_args, main

    def config(*flags):
        return config_from_args(build_parser().parse_args(["backtest", *flags]))

    trending = config("--strategy", "sma_cross", "--preset", "trending")
    assert trending == with_preset(make_config(strategy="sma_cross"), "trending")
    tuned = config("--strategy", "sma_cross", "--preset", "trending", "--param", "fast=15", "--stop-loss", "0.05")
    assert tuned.params == {"fast": 15, "slow": 100} and tuned.risk.stop_loss == 0.05
    assert config("--preset", "ranging").params == preset("momentum", "ranging")["params"]  # the default strategy
    with pytest.raises(SystemExit):
        main(["backtest", "--preset", "calm"])
    assert "argument --preset: invalid choice: 'calm'" in capsys.readouterr().err  # argparse lists the choices


def test_the_report_has_a_market_regime_section():
    from workbench.reports.report import Report

    config = make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, start="2024-01-01",
                         end="2024-01-03T23:59:00")
    html = Report(config).show_regimes().to_html()
    assert "Performance by market regime (days)" in html and "win_rate" in html
    assert sum(r in html for r in REGIMES) >= 1
