"""Sample data for perpetuals: ``BTC/USDT:USDT`` (ccxt's swap symbol) trades on the spot pair's price path
with a constant funding fallback, so backtests, paper sessions and the wizard work on a perpetual offline."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import WORKBENCH
from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import BarsError, sample_bars
from workbench.data.sample import SAMPLE_FUNDING_RATE, sample_funding

PERP = "BTC/USDT:USDT"


def test_a_perpetual_has_its_spot_pairs_bars_and_a_constant_funding() -> None:
    pd.testing.assert_frame_equal(sample_bars(PERP, "5m", days=2), sample_bars("BTC/USDT", "5m", days=2))
    funding = sample_funding(PERP, "2024-01-01", "2024-01-02")
    assert list(funding.index.hour) == [0, 8, 16, 0] and (funding == SAMPLE_FUNDING_RATE).all()
    with pytest.raises(BarsError, match=r"no sample data for 'BTC/USDT:BTC'.*their perpetuals.*'BTC/USDT:USDT'"):
        sample_bars("BTC/USDT:BTC")  # an inverse contract: not in the sample
    with pytest.raises(BarsError, match="spot pair, which pays no funding"):
        sample_funding("BTC/USDT", "2024-01-01", "2024-01-02")


def config(kind: str, end: str = "2024-01-01T06:00:00Z"):
    return make_config(kind=kind, strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=[PERP],
                       direction="both", margin={"leverage": 3, "funding_rate": 0.0001},
                       sizing={"mode": "percent_equity", "value": 0.5}, start="2024-01-01",
                       end=end)


def cli(*args: str, home: Path) -> dict:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    proc = subprocess.run([WORKBENCH, *args, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_backtest_and_paper_on_a_perpetual_from_the_cli_with_the_sample_data(tmp_path: Path) -> None:
    for kind in ("backtest", "paper"):
        (tmp_path / f"{kind}.json").write_text(config(kind).to_json())
    bt = cli("backtest", "--config", str(tmp_path / "backtest.json"), home=tmp_path)
    paper = cli("run", "--config", str(tmp_path / "paper.json"), home=tmp_path)
    spot = run_backtest(config("backtest").replace(symbols=["BTC/USDT"]))  # the same path, so the same trades
    assert bt["trade_count"] == paper["trade_count"] == len(spot.trades) > 5 and paper["state"] == "completed"
    assert bt["metrics"]["total_return"] == pytest.approx(spot.metrics["total_return"], rel=1e-9)
    assert paper["metrics"]["total_return"] == pytest.approx(bt["metrics"]["total_return"], rel=1e-9)


def test_the_wizard_makes_a_perpetual_backtest_that_runs_on_the_sample_data() -> None:
    from workbench.ui.wizard import Wizard

    w = Wizard(config("backtest", end="2024-01-01T12:00:00Z"), launch=False)
    cfg = w.validate()
    assert cfg is not None and cfg.data.source == "sample" and cfg.symbols == [PERP], w.errors
    trades = run_backtest(cfg, funding=sample_funding(PERP, "2024-01-01", "2024-01-01T12:00:00Z")).trades
    assert len(trades) > 5 and set(trades.side) == {"long", "short"}
    held = trades[(trades.entry_time < "2024-01-01T08:00Z") & (trades.exit_time >= "2024-01-01T08:00Z")]
    assert len(held) == 1 and held.funding.iloc[0] != 0  # the position held over 08:00 paid or got funding
