"""The A/B comparison view: a finished backtest A/B, and a paper A/B followed live from the store."""
from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from tests.kit import paper_config, until
from workbench.ab import ab_backtest, ab_paper
from workbench.data import sample_bars
from workbench.store import Store
from workbench.ui.ab import ABView, same_bars, verdict_html
from workbench.ui.history import HistoryView

FEW_BARS = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T02:59:00Z"}


def test_view_of_a_backtest_ab_overlays_equity_and_shows_metrics_and_verdict():
    cfg = paper_config(kind="backtest")
    bars = {"BTC/USDT": sample_bars("BTC/USDT", "1m", days=1)}
    res = ab_backtest(cfg, {"base": {}, "slow": {"slow": 40}}, bars=bars, n_boot=200)
    view = ABView(result=res)
    assert view.done and [t.name for t in view.figure.data] == ["base", "slow"]
    assert "Sharpe" in view.table.value and "Deflated Sharpe" in view.table.value and ">slow<" in view.table.value
    assert res.verdict.text.split(":")[0] in view.verdict.value and "all ended" in view.status.value


def test_view_follows_a_running_paper_ab_until_every_variant_ends(store: Store):
    cfg = paper_config(**FEW_BARS)

    async def scenario() -> ABView:
        task = asyncio.ensure_future(ab_paper(cfg, {"A": {}, "B": {"fast": 3}}, store, speed=60 * 120,
                                              poll_interval=0.05, label="live", n_boot=200))
        await until(lambda: len(store.list_sessions()) == 2, timeout=20)
        view = ABView(store, label="live", interval=0.05, n_boot=200)
        assert not view.done and view.ticker.running and "running" in view.status.value
        await task
        await until(lambda: view.done, timeout=20)
        return view

    view = asyncio.run(scenario())
    assert [t.name for t in view.figure.data] == ["A", "B"] and len(view.figure.data[0].x) == 180
    assert "all ended" in view.status.value and not view.ticker.running
    assert "Total return" in view.table.value or "total" in view.table.value.lower()
    ids = {"A": view.session_ids["A"], "B": view.session_ids["B"]}
    assert "sure:" in verdict_html(store, ids, n_boot=200)
    history = HistoryView(store)  # the history's compare section shows the same verdict
    history.compare(list(ids.values()))
    assert "wb-ab-verdict" in history.compare_box.children[0].value


def test_same_bars_allows_a_lagging_session_and_refuses_different_bars():
    idx = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC")
    lagging = pd.DataFrame({"A": [1.0, 2, 3, 4], "B": [1.0, 2, float("nan"), float("nan")]}, index=idx)
    shifted = pd.DataFrame({"A": [1.0, 2, 3, float("nan")], "B": [float("nan"), 2, 3, 4]}, index=idx)
    holed = pd.DataFrame({"A": [1.0, 2, 3, 4], "B": [1.0, float("nan"), 3, 4]}, index=idx)
    assert same_bars(lagging) and not same_bars(shifted) and not same_bars(holed)


def test_view_without_an_ab_says_what_it_needs(store: Store):
    with pytest.raises(ValueError, match="needs result=ABResult"):
        ABView(store)
    with pytest.raises(ValueError, match="found 0 session"):
        ABView(store, label="nope")
