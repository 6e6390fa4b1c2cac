"""The walk skips the bars where held longs only watch their stops (fills_nb's next_stop_event_nb): its
fills equal those of the walk that visits every held bar, which a holding limit too long to act forces."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.backtest import run_backtest
from workbench.config import make_config
from workbench.data import sample_bars


@pytest.fixture(scope="module")
def bars() -> dict[str, pd.DataFrame]:
    eth = sample_bars("ETH/USDT", "1m", days=3)
    return {"BTC/USDT": sample_bars("BTC/USDT", "1m", days=3), "ETH/USDT": eth.iloc[::3]}  # ETH with gaps


@pytest.mark.parametrize("symbols", [["BTC/USDT"], ["BTC/USDT", "ETH/USDT"]])
@pytest.mark.parametrize("risk", [{"stop_loss": 0.002}, {"take_profit": 0.002},
                                  {"stop_loss": 0.001, "take_profit": 0.003, "trailing_stop": 0.0015}])
def test_skipping_to_the_next_stop_or_signal_gives_the_fills_of_a_walk_over_every_bar(bars, symbols, risk):
    fields = {"strategy": "momentum", "params": {"window": 20, "entry_threshold": 0.001}, "symbols": symbols,
              "sizing": {"mode": "percent_equity", "value": 0.3}}
    skipping = run_backtest(make_config(**fields, risk=risk), bars)
    every_bar = run_backtest(make_config(**fields, risk={**risk, "max_holding_minutes": 10**7}), bars)
    pd.testing.assert_frame_equal(skipping.orders, every_bar.orders)
    pd.testing.assert_series_equal(skipping.equity, every_bar.equity)
    reasons = set(skipping.orders["reason"])
    assert reasons & {"stop_loss", "take_profit", "trailing_stop"}, reasons  # the stops did act
