"""A/B in a backtest and ``workbench ab``: variants share one feed, each equals its own backtest,
identical variants are not told apart and a variant with a real edge is picked."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.ab import ab_backtest, make_variants, parse_variant
from workbench.backtest import run_backtest
from workbench.cli import main
from workbench.config import make_config
from workbench.data import sample_bars


def drifting_bars(days: int = 90, drift: float = 0.0005, vol: float = 0.003, seed: int = 5) -> pd.DataFrame:
    """Hourly bars whose log returns are N(drift, vol): being long has a known edge."""
    n = days * 24
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    open_ = np.r_[100.0, close[:-1]]
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.001,
                         "low": np.minimum(open_, close) * 0.999, "close": close, "volume": 1e6}, index=idx)


@pytest.fixture(scope="module")
def day_of_bars() -> dict[str, pd.DataFrame]:
    return {"BTC/USDT": sample_bars("BTC/USDT", "1m", days=2)}


def momentum(**fields):
    return make_config(**{"strategy": "momentum", "symbols": ["BTC/USDT"],
                          "sizing": {"mode": "percent_equity", "value": 0.5}, **fields})


def test_each_variant_equals_its_own_backtest_and_identical_ones_show_no_difference(day_of_bars):
    cfg = momentum(params={"window": 30, "entry_threshold": 0.002})
    res = ab_backtest(cfg, {"A": {}, "B": {}, "C": {"window": 60, "risk.stop_loss": 0.01}}, bars=day_of_bars)
    for arm in res.variants:
        own = run_backtest(arm.config, day_of_bars)
        pd.testing.assert_series_equal(res.results[arm.name].equity, own.equity)
        assert res.metrics.loc[arm.name, "sharpe_ratio"] == pytest.approx(own.metrics["sharpe_ratio"], rel=1e-12)
    assert res.variants[2].config.risk.stop_loss == 0.01 and res.variants[2].config.params["window"] == 60
    assert res.period == "5min" and list(res.equity.columns) == ["A", "B", "C"]  # 2,880 bars: judged per 5 min
    same = ab_backtest(cfg, [{}, {}], bars=day_of_bars)
    assert same.winner is None and same.verdict.text.startswith("no significant difference")


def test_a_variant_with_a_known_edge_is_picked():
    bars = {"BTC/USDT": drifting_bars()}
    cfg = momentum(params={"window": 1, "entry_threshold": -0.5, "exit_threshold": -0.9},
                   sizing={"mode": "percent_equity", "value": 0.9})
    # long all the time in a rising market vs never in vs long with a tenth of the money
    res = ab_backtest(cfg, {"long": {}, "flat": {"entry_threshold": 5.0}, "small": {"sizing.value": 0.09}},
                      bars=bars)
    assert res.period == "1D" and res.verdict.periods == 90
    assert res.winner == "long", res.verdict.text
    assert res.verdict.stats["long"]["psr"] > 0.99 and res.metrics.loc["flat", "trade_count"] == 0


def test_bad_variants_name_the_variant_and_the_field():
    cfg = momentum()
    with pytest.raises(ValueError, match="variant B: a variant cannot change 'symbols'"):
        make_variants(cfg, [{}, {"symbols": ["ETH/USDT"]}])
    with pytest.raises(ValueError, match=r"variant B \(window=-3\).*window"):
        make_variants(cfg, [{}, {"window": -3}])
    with pytest.raises(ValueError, match="'nope' is neither a param"):
        make_variants(cfg, [{}, {"nope": 1}])
    with pytest.raises(ValueError, match="at least 2 variants"):
        make_variants(cfg, [{}])
    assert parse_variant("window=30, risk.stop_loss=0.02") == {"window": 30, "risk.stop_loss": 0.02}
    assert parse_variant("") == {}


def test_cli_json_prints_each_variants_metrics_and_the_verdict(tmp_path, capsys):
    cfg = momentum(start="2024-01-01", end="2024-01-03")
    path = tmp_path / "cfg.json"
    path.write_text(cfg.to_json())
    code = main(["ab", "--config", str(path), "--variant", "", "--variant", "window=30,entry_threshold=0.002",
                 "--json", "--n-boot", "200", "--seed", "3"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["kind"] == "backtest"
    assert [v["name"] for v in doc["variants"]] == ["A", "B"]
    assert doc["variants"][1]["changes"] == {"window": 30, "entry_threshold": 0.002}
    assert {"sharpe_ratio", "total_return", "trade_count"} <= set(doc["variants"][0]["metrics"])
    v = doc["verdict"]
    assert set(v["stats"]) == {"A", "B"} and {"psr", "dsr", "min_track_record"} <= set(v["stats"]["A"])
    assert (v["winner"] is None) == v["text"].startswith("no significant difference")
    assert v["n_boot"] == 200 and len(v["comparisons"]) == 1


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(momentum().to_json())
    assert main(["ab", "--config", str(path), "--variant", "window=30"]) == 2
    assert "give --variant at least twice" in capsys.readouterr().err
    assert main(["ab", "--config", str(path), "--variant", "", "--variant", "windowx"]) == 2
    assert "--variant takes key=value" in capsys.readouterr().err
    assert main(["ab", "--config", str(path), "--variant", "", "--variant", "", "--early-stop", "50"]) == 2
    assert "--early-stop do(es) not apply to a backtest A/B" in capsys.readouterr().err


def test_variants_differing_in_stops_time_and_breaker_equal_their_own_backtests_in_every_metric_and_log():
    """Two symbols (one with missing bars), variants whose walks differ (stops, trailing, entry hours, a
    circuit breaker), run in parallel: each one's equity, every metric (the tail figures too), trade and
    order log and breaker trip equal run_backtest's."""
    btc = sample_bars("BTC/USDT", "1m", days=2)
    eth = sample_bars("ETH/USDT", "1m", days=2).iloc[::2]  # every other minute: gaps in the shared index
    bars = {"BTC/USDT": btc, "ETH/USDT": eth}
    cfg = momentum(symbols=["BTC/USDT", "ETH/USDT"], params={"window": 20, "entry_threshold": 0.001},
                   sizing={"mode": "percent_equity", "value": 0.3})
    res = ab_backtest(cfg, {"base": {}, "stops": {"risk.stop_loss": 0.002, "risk.take_profit": 0.004},
                            "trail": {"risk.trailing_stop": 0.0015, "window": 40},
                            "hours": {"time.trading_hours": {"start": "08:00", "end": "16:00"}},
                            "breaker": {"risk.circuit_breaker.max_drawdown": 0.002}}, bars=bars)
    assert res.results["breaker"].breaker is not None  # the breaker variant trips
    trades = set()
    for arm in res.variants:
        own = run_backtest(arm.config, bars)
        mine = res.results[arm.name]
        pd.testing.assert_series_equal(res.equity[arm.name], own.equity, check_names=False)
        pd.testing.assert_series_equal(mine.equity, own.equity)
        assert res.metrics.loc[arm.name].to_dict() == pytest.approx(own.metrics, rel=1e-12, nan_ok=True)
        assert set(res.metrics.columns) == set(own.metrics)
        pd.testing.assert_frame_equal(mine.trades, own.trades)
        pd.testing.assert_frame_equal(mine.orders, own.orders)
        assert mine.breaker == own.breaker
        trades.add(len(own.trades))
    assert len(trades) > 2  # the variants really walked differently


@pytest.mark.parametrize("tz", ["UTC", None, "Europe/Berlin"])
def test_returns_per_period_are_those_of_pandas_resample(tz):
    """verdict_returns picks each period's last equity from the bar times; the same as pandas' resample
    (gaps, a day without bars, NaN at a period's last bar, periods that do not divide a day)."""
    from workbench.ab import verdict_returns
    from workbench.metrics import period_returns

    idx = pd.date_range("2024-03-01 00:07", periods=6000, freq="1min", tz=tz, name="time").delete(range(2000, 3600))
    eq = pd.DataFrame(1e4 + np.random.default_rng(1).normal(0, 50, (len(idx), 2)).cumsum(axis=0), index=idx,
                      columns=["A", "B"])
    holed = eq.copy()
    holed.iloc[58::60, 0] = np.nan  # the last minute of each hour (the index starts at :07)

    def reference(frame: pd.DataFrame, period: str) -> pd.DataFrame:
        last = frame.resample(period).last().dropna(how="all").ffill().bfill()
        return pd.DataFrame({c: period_returns(last[c], 1e4) for c in last.columns}, index=last.index)

    for frame in (eq, holed):
        for period in ("1D", "1h", "5min", "7min", "2D"):
            got, used = verdict_returns(frame, 1e4, period)
            assert used == period
            pd.testing.assert_frame_equal(got, reference(frame, period), check_freq=False)


def test_variants_with_shorts_on_a_converted_market_equal_their_own_backtests():
    """A base-currency session with a market quoted in BTC (its bars converted; the trade log keeps the
    market's own prices) and variants that go short: each variant is run_backtest's own run."""
    bars = {s: sample_bars(s, "1m", days=1) for s in ("BTC/USDT", "ETH/BTC")}
    cfg = momentum(symbols=["BTC/USDT", "ETH/BTC"], base_currency="USDT",
                   params={"window": 20, "entry_threshold": 0.001})
    res = ab_backtest(cfg, {"long": {}, "both": {"direction": "both"},
                            "short": {"direction": "short", "risk.stop_loss": 0.003}}, bars=bars)
    for arm in res.variants:
        own = run_backtest(arm.config, bars)
        pd.testing.assert_series_equal(res.results[arm.name].equity, own.equity)
        pd.testing.assert_frame_equal(res.results[arm.name].trades, own.trades)
        assert res.metrics.loc[arm.name].to_dict() == pytest.approx(own.metrics, rel=1e-12, nan_ok=True)
    assert set(res.results["short"].trades["side"]) == {"short"}


@pytest.mark.slow  # a fresh interpreter loads numba and the cached kernels: ~5 s, 15 s under load
def test_a_fresh_process_runs_its_first_ab_in_threads():
    """The first A/B of a process: its threads need the metrics kernel at once (one of them got the module
    half-imported by another and failed with AttributeError _step_range_nb)."""
    import subprocess
    import sys

    code = ("from workbench.ab import ab_backtest; from workbench.config import make_config; "
            "from workbench.data import sample_bars; "
            "cfg = make_config(strategy='sma_cross', symbols=['BTC/USDT']); "
            "bars = {'BTC/USDT': sample_bars('BTC/USDT', '1m', days=1)}; "
            "res = ab_backtest(cfg, [{}, {'risk.stop_loss': 0.01}, {'fast': 5}, {'slow': 40}], bars=bars, "
            "lanes=4); print(len(res.metrics))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "4", out.stderr[-2000:]


def test_variants_with_the_same_strategy_and_params_share_their_signals(day_of_bars, monkeypatch):
    from workbench.strategies.builtin import Momentum

    calls = []
    real = Momentum.signals
    monkeypatch.setattr(Momentum, "signals", lambda self, bars: calls.append(dict(self.p)) or real(self, bars))
    cfg = momentum(params={"window": 30, "entry_threshold": 0.002})
    ab_backtest(cfg, [{}, {"risk.stop_loss": 0.01}, {"sizing.value": 0.2}, {"window": 40},
                      {"window": 40, "risk.take_profit": 0.01}], bars=day_of_bars)
    assert sorted(c["window"] for c in calls) == [30, 40]
