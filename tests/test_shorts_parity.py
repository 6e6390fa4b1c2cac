"""Property-based parity with shorts and margin (docs/execution-semantics.md rules 15-16): on the random markets
of tests/test_execution_parity.py (time restrictions, events, stops, the account rules, every built-in strategy),
with a drawn direction and margin (leverage, liquidation, borrow interest, constant funding), the backtest and
the shipped session step make the same trades, sides and carrying costs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.test_execution_parity import first_difference, markets
from workbench.backtest import run_backtest
from workbench.config import SessionConfig
from workbench.engine.trader import replay

KEYS = ["symbol", "side", "entry_time", "exit_time", "exit_reason"]
NUMBERS = ["quantity", "entry_price", "exit_price", "pnl", "funding", "interest"]


def canonical(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades[KEYS + NUMBERS].copy()
    for c in ("symbol", "side", "exit_reason"):
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    for c in ("entry_time", "exit_time"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out.sort_values(["entry_time", "symbol", "side"]).reset_index(drop=True)


@st.composite
def short_markets(draw: st.DrawFn) -> tuple[SessionConfig, dict[str, pd.DataFrame]]:
    config, frames = draw(markets())
    margin = draw(st.sampled_from([None, {"leverage": 3, "maintenance": 0.2, "borrow_rate": 0.3},
                                   {"leverage": 10, "maintenance": 0.05, "funding_rate": 0.002}]))
    return config.replace(direction=draw(st.sampled_from(["short", "both"])), margin=margin), frames


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(short_markets())
def test_backtest_and_session_make_the_same_trades_with_shorts(market: tuple[SessionConfig, dict]) -> None:
    config, frames = market
    expected = canonical(run_backtest(config, bars=frames).trades)
    event(f"sides: {sorted(set(expected['side']))}, liquidated: {(expected['exit_reason'] == 'liquidation').any()}")
    got = canonical(replay(config, frames, include_open=True))
    for col in KEYS:
        assert len(got) == len(expected) and list(got[col]) == list(expected[col]), first_difference(got, expected)
    for col in NUMBERS:
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, atol=1e-9,
                                   err_msg=col)
