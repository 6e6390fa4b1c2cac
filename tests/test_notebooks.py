"""The analyst notebooks (notebooks/0*.ipynb) stay thin, parametrized and stripped; the helpers they
call (workbench.research) work on a real SQLite store and a real paper session. The notebooks
themselves run under ``pytest --nbval-lax`` (the root conftest.py keeps them small)."""
from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench import research
from workbench.backtest.runner import run_backtest
from workbench.engine.session import Session

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
MAX_CELL_LINES = 6  # a cell calls one function; logic belongs in workbench/


def test_the_four_analyst_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_parameter_sweep.ipynb",
                                           "03_paper_session.ipynb", "04_compare_sessions.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_thin_and_parametrized(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), "outputs must be stripped"
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and code[0] is params[0], "the first code cell is the one tagged 'parameters'"
    assert "research.notebook_days(" in "".join(params[0]["source"]), "sample days come from WORKBENCH_NB_DAYS"
    for c in code[1:]:
        lines = [ln for ln in "".join(c["source"]).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(lines) <= MAX_CELL_LINES, f"cell grew logic:\n{''.join(c['source'])}"
        assert not any(ln.lstrip().startswith(("def ", "for ", "while ", "class ")) for ln in lines)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_notebook_days_reads_the_environment(monkeypatch):
    monkeypatch.delenv(research.DAYS_ENV, raising=False)
    assert research.notebook_days(14) == 14
    monkeypatch.setenv(research.DAYS_ENV, "2.5")
    assert research.notebook_days(14) == 2.5
    for bad in ("zero", "0", "-3"):
        monkeypatch.setenv(research.DAYS_ENV, bad)
        with pytest.raises(ValueError, match=r"^WORKBENCH_NB_DAYS must be a positive number of days, e\.g\. 3"):
            research.notebook_days(14)


def test_sample_config_covers_the_days():
    cfg = research.sample_config(2, params={"window": 15}, initial_balance=5000)
    bars = research.sample_bars_for(cfg)["BTC/USDT"]
    assert len(bars) == 2 * 1440 and bars.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert cfg.params["window"] == 15 and cfg.initial_balance == 5000
    with pytest.raises(ValueError, match="days must be positive"):
        research.sample_config(0)


def test_saved_backtests_compare_from_a_real_sqlite_store(store):
    cfg = research.sample_config(2, params={"entry_threshold": 0.003, "exit_threshold": -0.001})
    bars = research.sample_bars_for(cfg)
    ids = research.run_and_save(cfg, [{"window": 20}, {"window": 90}], store, bars=bars)
    assert len(set(ids)) == 2 and set(store.history(kind="backtest")["id"]) == set(ids)
    table = research.compare_sessions(store, ids, metrics=("total_return", "sharpe_ratio", "trade_count"))
    assert list(table.index) == ["momentum window=20", "momentum window=90"]
    for (name, row), w in zip(table.iterrows(), (20, 90)):
        want = run_backtest(cfg.replace(params={**cfg.params, "window": w}), bars).metrics
        for m in ("total_return", "sharpe_ratio", "trade_count"):
            assert row[m] == pytest.approx(want[m], rel=1e-9), (name, m)
    fig = research.equity_overlay(store, ids)
    assert [t.name for t in fig.data] == list(table.index)
    assert fig.data[0].y[0] == pytest.approx(store.equity(ids[0])["equity"].iloc[0] / cfg.initial_balance)
    with pytest.raises(ValueError, match="unknown metric"):
        research.compare_sessions(store, ids, metrics=("sharpe",))


def test_paper_session_watched_and_controlled_like_notebook_03(store):
    cfg = research.sample_config(1, kind="paper", params={"window": 30, "entry_threshold": 0.002,
                                                          "exit_threshold": -0.001}, risk={"stop_loss": 0.02})

    async def scenario() -> Session:
        feed = research.replay_feed(cfg, bars_per_second=2000)
        session = Session(cfg, store, feed=feed).start()
        await research.wait_until(session, bars=50, timeout=30)
        assert 50 <= session.bars_seen < len(feed)  # paced: still running
        session.pause()
        await research.wait_until(session, state="paused", timeout=10)
        session.resume_trading()
        session.tighten_stops(0.005)
        await research.wait_until(session, bars=200, timeout=30)
        session.stop(reason="test")
        await session.wait()
        with pytest.raises(TimeoutError, match="did not get there"):
            other = Session(cfg, store, feed=research.replay_feed(cfg, bars_per_second=5)).start()
            try:
                await research.wait_until(other, bars=10_000, timeout=0.3)
            finally:
                other.kill(reason="test over")
                await other.wait()
        return session

    session = asyncio.run(scenario())
    assert session.state.value == "stopped" and session.bars_seen >= 200
    messages = " | ".join(store.events(session.id)["message"])
    for text in ("pause applied", "resume applied", "tighten_stops applied", "stop applied"):
        assert text in messages
    table = research.compare_sessions(store, [session.id])
    assert table.loc[session.id, "kind"] == "paper" and not math.isnan(table.loc[session.id, "total_return"])


def test_sensitivity_figure_and_its_errors():
    table = pd.DataFrame({"sharpe_ratio": [1.0, 2.0], "total_return": [0.1, 0.2]},
                         index=pd.Index([10, 20], name="window"))
    fig = research.sensitivity_figure(table)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 and list(fig.data[0].x) == [10, 20]
    with pytest.raises(ValueError, match="not in the table"):
        research.sensitivity_figure(table, metrics=("calmar_ratio",))
