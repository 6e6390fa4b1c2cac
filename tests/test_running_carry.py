"""Views of a running session rebuilt from its stored fills (the detail view's snapshot, the fidelity twin's
session trades) include the carrying costs its runner checkpoint holds (rule 16): funding and interest are
not fills, so without the checkpoint a running short's P&L left them out until the final trade log was saved."""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from tests.kit import bars_for, paper_config
from workbench.domain import TRADE_COLUMNS
from workbench.engine.feeds import ReplayFeed
from workbench.engine.handle import RemoteHandle
from workbench.engine.session import Session
from workbench.twin import _session_trades


def test_a_running_shorts_views_include_its_funding_and_interest(store) -> None:
    cfg = paper_config(direction="short", params={"fast": 10, "slow": 60},
                       margin={"leverage": 2, "funding_rate": 0.002, "borrow_rate": 0.5})
    bars = {s: df.loc[: pd.Timestamp("2024-01-01 16:30", tz="UTC")] for s, df in bars_for(cfg).items()}
    s = Session(cfg, store, feed=ReplayFeed(bars, None))
    asyncio.run(s.run())
    saved = store.trades(s.id)  # the final trade log, with its carry
    held = saved[saved.status == "open"]
    assert (saved.side == "short").all() and len(held) == 1 and len(saved) > 2
    assert held.funding.iloc[0] > 0 and (saved.funding[saved.status == "closed"] != 0).any()  # shorts receive it
    assert (saved.interest < 0).all()
    store.set_state(s.id, "running")  # as seen while it ran: views rebuild from the fills and the checkpoint
    view = RemoteHandle(s.id, store).snapshot()
    assert view.cash == pytest.approx(s.portfolio.cash, rel=1e-12)  # carry added in one sum: rounding only
    assert view.equity == pytest.approx(s.portfolio.equity, rel=1e-12)
    got = view.trades[list(TRADE_COLUMNS)].sort_values(["entry_time", "status"]).reset_index(drop=True)
    want = saved[list(TRADE_COLUMNS)].sort_values(["entry_time", "status"]).reset_index(drop=True)
    for col in ("funding", "interest", "pnl", "return_pct", "quantity", "entry_price", "exit_price"):
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-12, err_msg=col)
    short = view.positions.set_index("symbol")
    assert short.loc["BTC/USDT", "quantity"] < 0  # the open short is a position of the view
    marks = dict(s.portfolio.marks)
    twin_rows = _session_trades(store, s.id, store.get_session(s.id), marks)
    pd.testing.assert_series_equal(twin_rows.pnl.sort_values(ignore_index=True),
                                   want.pnl.sort_values(ignore_index=True), check_names=False, rtol=1e-12)
